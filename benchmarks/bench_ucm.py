"""Time our UCM against higra's hierarchies on the same boundary map, one core.

For every image: ``boundary_map``, our ``ucm2_from_edges``, and higra's
``watershed_hierarchy_by_area`` + ``saliency`` and ``mean_pb_hierarchy`` + ``saliency``
on the same edge weights.  higra is timed twice: "core" (hierarchy + saliency on a
graph and weight array built beforehand, the most favourable view of it) and "full"
(``ucm2_higra``: graph, weights, hierarchy, saliency and conversion to the ucm2 layout,
the same work as ``ucm2_from_edges``).  Ratios are higra core time / our time.

Examples::

    python benchmarks/bench_ucm.py --camvid ../shared/data/camvid/val --out camvid.json
    python benchmarks/bench_ucm.py --synthetic 100 --out synthetic.json
    python benchmarks/bench_ucm.py path/to/jpegs --limit 50 --out mine.json
"""

from __future__ import annotations

import os

for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TBB_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import importlib.metadata  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import higra as hg  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.ucm import algorithm as ucm  # noqa: E402
from pipeline.core.fileio import read_image  # noqa: E402

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def pin_one_core():
    cv2.setNumThreads(1)
    hg.set_num_threads(1)
    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return cpu
    return None


def synthetic_image(rng, width=500, height=375):
    """A random but structured RGB image: shaded background, filled shapes, lines, noise."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    a = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(a) * xx + np.sin(a) * yy) / np.hypot(width, height) + 0.5
    img = (c0 * (1 - ramp[..., None]) + c1 * ramp[..., None]).clip(0, 255).astype(np.uint8)
    for _ in range(rng.integers(8, 20)):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        kind = rng.integers(0, 4)
        cx, cy = int(rng.integers(0, width)), int(rng.integers(0, height))
        if kind == 0:
            w, h = int(rng.integers(20, 200)), int(rng.integers(20, 150))
            cv2.rectangle(img, (cx, cy), (cx + w, cy + h), colour, -1)
        elif kind == 1:
            cv2.circle(img, (cx, cy), int(rng.integers(10, 80)), colour, -1, lineType=cv2.LINE_AA)
        elif kind == 2:
            axes = (int(rng.integers(10, 120)), int(rng.integers(10, 80)))
            cv2.ellipse(img, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, colour, -1, lineType=cv2.LINE_AA)
        else:
            pts = np.stack([rng.integers(0, width, 5), rng.integers(0, height, 5)], 1).astype(np.int32)
            cv2.fillPoly(img, [pts], colour, lineType=cv2.LINE_AA)
    for _ in range(rng.integers(2, 6)):
        p, q = rng.integers(0, [width, height], 2), rng.integers(0, [width, height], 2)
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        cv2.line(img, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), colour, int(rng.integers(1, 5)), cv2.LINE_AA)
    noise = rng.normal(0, rng.uniform(2, 8), img.shape)
    img = (img.astype(np.float32) + noise).clip(0, 255).astype(np.uint8)
    return cv2.GaussianBlur(img, (3, 3), 0.7)


def folder_images(folder, limit):
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SystemExit(f"no images in {folder}")
    for path in files[:limit]:
        yield path.name, read_image(path)


def synthetic_images(n, seed):
    rng = np.random.default_rng(seed)
    for i in range(n):
        yield f"synthetic_{i:04d}", synthetic_image(rng)


def higra_inputs(edge_h, edge_v):
    H, W = edge_h.shape[0], edge_v.shape[1]
    graph = hg.get_4_adjacency_graph((H, W))
    src, dst = graph.edge_list()
    horizontal = dst == src + 1
    ys, xs = np.divmod(src, W)
    weights = np.empty(src.size, np.float64)
    weights[horizontal] = edge_h[ys[horizontal], xs[horizontal]]
    weights[~horizontal] = edge_v[ys[~horizontal], xs[~horizontal]]
    return graph, weights, (H, W)


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, 1e3 * (time.perf_counter() - t0)


def measure(img, scales):
    row = {}
    (eh, ev), row["boundary_map"] = timed(ucm.boundary_map, img, scales)
    _, row["ours_ucm2_from_edges"] = timed(ucm.ucm2_from_edges, eh, ev)
    row["ours_total"] = row["boundary_map"] + row["ours_ucm2_from_edges"]
    row["superpixels"] = int(ucm.superpixels(eh, ev).max() + 1)
    graph, weights, shape = higra_inputs(eh, ev)

    def area():
        tree, alt = hg.watershed_hierarchy_by_area(graph, weights)
        return hg.saliency(tree, alt)

    def mean_pb():
        tree, alt = hg.mean_pb_hierarchy(graph, weights, shape=shape)
        return hg.saliency(tree, alt)

    _, row["higra_area_core"] = timed(area)
    _, row["higra_mean_pb_core"] = timed(mean_pb)
    _, row["higra_area_full"] = timed(ucm.ucm2_higra, eh, ev, "area")
    _, row["higra_mean_pb_full"] = timed(ucm.ucm2_higra, eh, ev, "mean_pb")
    return row


METHODS = [
    "boundary_map",
    "ours_ucm2_from_edges",
    "ours_total",
    "higra_area_core",
    "higra_area_full",
    "higra_mean_pb_core",
    "higra_mean_pb_full",
]


def summarise(rows):
    out = {}
    for m in METHODS:
        v = np.array([r[m] for r in rows])
        out[m] = {"median_ms": float(np.median(v)), "p90_ms": float(np.percentile(v, 90)), "mean_ms": float(v.mean())}
    ours = np.array([r["ours_ucm2_from_edges"] for r in rows])
    for m in ("higra_area_core", "higra_mean_pb_core"):
        ratio = np.array([r[m] for r in rows]) / ours
        out[f"ratio_{m}_over_ours"] = {"median": float(np.median(ratio)), "p90": float(np.percentile(ratio, 90))}
    out["superpixels_median"] = float(np.median([r["superpixels"] for r in rows]))
    return out


def run_dataset(name, images, scales):
    rows = []
    for i, (image_id, img) in enumerate(images):
        if i == 0:
            measure(img, scales)  # JIT compile / warm caches, not counted
        row = measure(img, scales)
        row["id"], row["shape"] = image_id, list(img.shape[:2])
        rows.append(row)
        print(f"\r{name}: {i + 1} images", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    summary = summarise(rows)
    print(f"\n{name}: {len(rows)} images, median shape {np.median([r['shape'] for r in rows], 0).astype(int).tolist()}, "
          f"{summary['superpixels_median']:.0f} superpixels (median)")
    print(f"  {'method':22s} {'median ms':>10s} {'p90 ms':>10s}")
    for m in METHODS:
        print(f"  {m:22s} {summary[m]['median_ms']:10.1f} {summary[m]['p90_ms']:10.1f}")
    for m in ("higra_area_core", "higra_mean_pb_core"):
        r = summary[f"ratio_{m}_over_ours"]
        print(f"  {m} / ours_ucm2_from_edges: median x{r['median']:.1f}, p90 x{r['p90']:.1f}")
    return {"summary": summary, "images": rows}


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", nargs="?", help="a folder of images")
    ap.add_argument("--camvid", metavar="DIR", help="a folder of CamVid PNGs (e.g. ../shared/data/camvid/val)")
    ap.add_argument("--synthetic", type=int, default=0, metavar="N", help="N random structured 500x375 images")
    ap.add_argument("--limit", type=int, default=None, help="at most this many images per folder")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scales", type=float, nargs="+", default=[1.0, 2.0, 4.0])
    ap.add_argument("--out", required=True, help="JSON results path")
    args = ap.parse_args(argv)
    if not (args.folder or args.camvid or args.synthetic):
        ap.error("give a folder, --camvid DIR and/or --synthetic N")

    cpu = pin_one_core()
    result = {
        "machine": {"cpu": cpu_model(), "logical_cpus": os.cpu_count(), "pinned_cpu": cpu,
                    "python": platform.python_version(), "higra": importlib.metadata.version("higra"),
                    "numpy": np.__version__},
        "scales": args.scales,
        "datasets": {},
    }
    scales = tuple(args.scales)
    if args.folder:
        result["datasets"]["folder"] = run_dataset(args.folder, folder_images(args.folder, args.limit), scales)
    if args.camvid:
        result["datasets"]["camvid"] = run_dataset("camvid", folder_images(args.camvid, args.limit), scales)
    if args.synthetic:
        result["datasets"]["synthetic"] = run_dataset("synthetic", synthetic_images(args.synthetic, args.seed), scales)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()

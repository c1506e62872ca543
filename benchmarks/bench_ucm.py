"""Time our UCM against higra's hierarchies, boundary map counted on both sides, one core.

Default mode, per image and per repeat (the order of the methods after the boundary map is
shuffled per repeat, so drift in the machine's load hits every method alike):

=========================  =====================================================================
column                     what the time includes
=========================  =====================================================================
``boundary_map``           ours: ``boundary_map(image, scales)``: RGB -> Lab, Gaussian smoothing
                           at each scale, gradient on pixel edges, P99 normalisation
``ours_ws_merge``          ours: ``ucm2_from_edges(eh, ev)``: quantisation, watershed, region
                           adjacency, greedy mean-boundary merging, painting the (2H+1, 2W+1)
                           float32 ucm2
``ours_total``             ``boundary_map`` + ``ours_ws_merge`` of the same repeat
``higra_area_core``        ``hg.watershed_hierarchy_by_area`` + ``hg.saliency`` on a graph and a
                           weight array built beforehand (untimed): higra's most favourable view
``higra_mean_pb_core``     ``hg.mean_pb_hierarchy`` + ``hg.saliency``, same prebuilt inputs
``higra_area_full``        ``ucm2_higra(eh, ev, "area")``: graph + weights + hierarchy + saliency
                           + conversion to the ucm2 layout (the same job as ``ours_ws_merge``)
``higra_mean_pb_full``     ``ucm2_higra(eh, ev, "mean_pb")``, likewise
``bm_plus_higra_*``        ``boundary_map`` + the higra column of the same repeat: the fair
                           totals to set against ``ours_total``
=========================  =====================================================================

Each column is the per-image median over ``--repeats``; the summary gives the median and p90
over images of those.  Ratios are per image (higra column / ours column, both per-image
medians), summarised by their median and p90 over images; the ratio of the medians is given
beside it.  ``ratio_total_*`` counts the boundary map on both sides; ``ratio_hierarchy_only_*``
leaves it out of both (higra core / ``ours_ws_merge``).

``--sizes`` mode: our UCM only, on CamVid-like photos resized by ``--factors`` per side
(cv2.INTER_AREA down, INTER_CUBIC up), interleaved (every repeat visits every size, in a
rotated order): ms per megapixel of ``boundary_map``, ``ours_ws_merge`` and the total, and the
growth of the per-Mpx cost from the smallest to the largest size.  Peak memory: in a fresh
process per size, the peak resident set (VmHWM, reset through /proc/self/clear_refs) minus the
resident set just before the call, per pixel -- numba's allocations included, unlike
tracemalloc.

Examples::

    python benchmarks/bench_ucm.py --quick --camvid ../shared/data/camvid/val --out /tmp/q.json
    python benchmarks/bench_ucm.py --camvid ../shared/data/camvid/val --synthetic 60 \\
        --out benchmarks/results/bench_ucm_v3.json
    python benchmarks/bench_ucm.py --sizes --camvid ../shared/data/camvid/val \\
        --out benchmarks/results/bench_ucm_sizes_v3.json
    python benchmarks/bench_ucm.py path/to/jpegs --limit 50 --out mine.json
"""

from __future__ import annotations

import os

for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TBB_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import datetime  # noqa: E402
import importlib.metadata  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import higra as hg  # noqa: E402
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from pipeline.ucm import algorithm as ucm  # noqa: E402
from pipeline.core.fileio import read_image  # noqa: E402
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import cpu_model, git_commit, load_average  # noqa: E402

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}

INCLUDES = {
    "boundary_map": "ours: boundary_map (Lab, Gaussian per scale, edge gradients, P99 normalisation)",
    "ours_ws_merge": "ours: ucm2_from_edges (quantise, watershed, adjacency, mean-boundary merging, paint ucm2)",
    "ours_total": "ours: boundary_map + ucm2_from_edges, same repeat",
    "higra_area_core": "higra: watershed_hierarchy_by_area + saliency, graph and weights prebuilt (not timed)",
    "higra_mean_pb_core": "higra: mean_pb_hierarchy + saliency, graph and weights prebuilt (not timed)",
    "higra_area_full": "higra: ucm2_higra 'area' = graph + weights + hierarchy + saliency + ucm2 layout",
    "higra_mean_pb_full": "higra: ucm2_higra 'mean_pb' = graph + weights + hierarchy + saliency + ucm2 layout",
    "bm_plus_higra_area_core": "boundary_map + higra_area_core, same repeat (fair total)",
    "bm_plus_higra_mean_pb_core": "boundary_map + higra_mean_pb_core, same repeat (fair total)",
    "bm_plus_higra_area_full": "boundary_map + higra_area_full, same repeat (fair total, same output as ours)",
    "bm_plus_higra_mean_pb_full": "boundary_map + higra_mean_pb_full, same repeat (fair total, same output as ours)",
}
METHODS = list(INCLUDES)
HIGRA = ("higra_area_core", "higra_mean_pb_core", "higra_area_full", "higra_mean_pb_full")


# ----------------------------------------------------------------------------- machine

def pin_one_core():
    cv2.setNumThreads(1)
    hg.set_num_threads(1)
    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return cpu
    return None


def machine(pinned):
    return {"cpu": cpu_model(), "logical_cpus": os.cpu_count(), "pinned_cpu": pinned,
            "python": platform.python_version(), "higra": importlib.metadata.version("higra"),
            "numba": importlib.metadata.version("numba"), "numpy": np.__version__, "opencv": cv2.__version__,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "repo": str(REPO), "git_commit": git_commit(),
            "source_note": os.environ.get("BENCH_SOURCE"),  # e.g. which commit a snapshot without .git holds
            "load_start": load_average()}


# ----------------------------------------------------------------------------- images

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


def folder_files(folder, limit=None):
    """The folder's images in name order; with ``limit``, that many evenly spaced over the list."""
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SystemExit(f"no images in {folder}")
    if limit is not None and limit < len(files):
        files = [files[int(i)] for i in np.linspace(0, len(files) - 1, max(limit, 1)).round().astype(int)]
    return files


def folder_images(folder, limit):
    for path in folder_files(folder, limit):
        yield path.name, read_image(path)


def synthetic_images(n, seed):
    rng = np.random.default_rng(seed)
    for i in range(n):
        yield f"synthetic_{i:04d}", synthetic_image(rng)


# ----------------------------------------------------------------------------- default mode

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


def measure_once(img, scales, rng):
    """One repeat: the boundary map first (the others need it), then the rest in a random order."""
    row = {}
    (eh, ev), row["boundary_map"] = timed(ucm.boundary_map, img, scales)
    graph, weights, shape = higra_inputs(eh, ev)  # not timed: higra's "core" view

    def area():
        tree, alt = hg.watershed_hierarchy_by_area(graph, weights)
        return hg.saliency(tree, alt)

    def mean_pb():
        tree, alt = hg.mean_pb_hierarchy(graph, weights, shape=shape)
        return hg.saliency(tree, alt)

    jobs = {"ours_ws_merge": lambda: ucm.ucm2_from_edges(eh, ev),
            "higra_area_core": area, "higra_mean_pb_core": mean_pb,
            "higra_area_full": lambda: ucm.ucm2_higra(eh, ev, "area"),
            "higra_mean_pb_full": lambda: ucm.ucm2_higra(eh, ev, "mean_pb")}
    for name in rng.permutation(list(jobs)):
        _, row[name] = timed(jobs[name])
    row["ours_total"] = row["boundary_map"] + row["ours_ws_merge"]
    for m in HIGRA:
        row[f"bm_plus_{m}"] = row["boundary_map"] + row[m]
    return row, (eh, ev)


def measure(img, scales, repeats, rng):
    reps = []
    for _ in range(repeats):
        row, edges = measure_once(img, scales, rng)
        reps.append(row)
    out = {m: float(np.median([r[m] for r in reps])) for m in METHODS}
    out["repeats_ms"] = {m: [round(r[m], 2) for r in reps] for m in METHODS}
    out["superpixels"] = int(ucm.superpixels(*edges).max() + 1)
    return out


def ratio_pairs():
    """(name, numerator column, denominator column)."""
    pairs = []
    for m in HIGRA:
        pairs.append((f"ratio_total_{m}", f"bm_plus_{m}", "ours_total"))
    for m in ("higra_area_core", "higra_mean_pb_core"):
        pairs.append((f"ratio_hierarchy_only_{m}", m, "ours_ws_merge"))
    return pairs


def summarise(rows):
    out = {"columns": {}, "ratios": {}}
    for m in METHODS:
        v = np.array([r[m] for r in rows])
        out["columns"][m] = {"includes": INCLUDES[m], "median_ms": round(float(np.median(v)), 2),
                             "p90_ms": round(float(np.percentile(v, 90)), 2), "mean_ms": round(float(v.mean()), 2)}
    for name, num, den in ratio_pairs():
        r = np.array([x[num] / x[den] for x in rows])
        out["ratios"][name] = {"numerator": num, "denominator": den,
                               "median_of_per_image_ratios": round(float(np.median(r)), 2),
                               "p90_of_per_image_ratios": round(float(np.percentile(r, 90)), 2),
                               "ratio_of_medians": round(out["columns"][num]["median_ms"]
                                                         / out["columns"][den]["median_ms"], 2)}
    out["superpixels_median"] = float(np.median([r["superpixels"] for r in rows]))
    return out


def run_dataset(name, images, scales, repeats, seed):
    rng = np.random.default_rng(seed)
    rows = []
    load_before = load_average()
    for i, (image_id, img) in enumerate(images):
        if i == 0:
            measure_once(img, scales, rng)  # JIT cache load / warm-up, not counted
        row = measure(img, scales, repeats, rng)
        row["id"], row["shape"] = image_id, list(img.shape[:2])
        rows.append(row)
        print(f"\r{name}: {i + 1} images", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    s = summarise(rows)
    s.update(images=len(rows), repeats=repeats, load_before=load_before, load_after=load_average(),
             median_shape_hw=np.median([r["shape"] for r in rows], 0).astype(int).tolist())
    print(f"\n{name}: {len(rows)} images, median shape (H, W) {s['median_shape_hw']}, {repeats} repeats each, "
          f"{s['superpixels_median']:.0f} superpixels (median); load {s['load_before']['loadavg_1_5_15']} -> "
          f"{s['load_after']['loadavg_1_5_15']}")
    print(f"  {'column':28s} {'median ms':>9s} {'p90 ms':>8s}  includes")
    for m in METHODS:
        c = s["columns"][m]
        print(f"  {m:28s} {c['median_ms']:9.1f} {c['p90_ms']:8.1f}  {c['includes']}")
    for name_, r in s["ratios"].items():
        print(f"  {name_:40s} per-image median x{r['median_of_per_image_ratios']:.2f} "
              f"(p90 x{r['p90_of_per_image_ratios']:.2f}), ratio of medians x{r['ratio_of_medians']:.2f}")
    return {"summary": s, "images": rows}


def markdown_table(datasets):
    c = lambda s, m: f"{s['columns'][m]['median_ms']:.1f} / {s['columns'][m]['p90_ms']:.1f}"  # noqa: E731
    r = lambda s, n: f"{s['ratios'][n]['median_of_per_image_ratios']:.1f}x"  # noqa: E731
    lines = ["| images | ours: boundary map | ours: watershed + merging | **ours total** | "
             "higra area: hierarchy + saliency | higra mean_pb: hierarchy + saliency | "
             "boundary map + higra area | boundary map + higra mean_pb | total ratio area / ours | "
             "total ratio mean_pb / ours |", "|" + "---|" * 10]
    for name, d in datasets.items():
        s = d["summary"]
        lines.append(f"| {name}, {s['images']} images {s['median_shape_hw'][1]}x{s['median_shape_hw'][0]} | "
                     f"{c(s, 'boundary_map')} | {c(s, 'ours_ws_merge')} | **{c(s, 'ours_total')}** | "
                     f"{c(s, 'higra_area_core')} | {c(s, 'higra_mean_pb_core')} | "
                     f"{c(s, 'bm_plus_higra_area_core')} | {c(s, 'bm_plus_higra_mean_pb_core')} | "
                     f"{r(s, 'ratio_total_higra_area_core')} | {r(s, 'ratio_total_higra_mean_pb_core')} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- --sizes mode

def resized(img, factor):
    h, w = img.shape[:2]
    size = (max(8, int(round(w * factor))), max(8, int(round(h * factor))))
    interp = cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC
    return cv2.resize(img, size, interpolation=interp)


_MEM_PROBE = r"""
import os, sys, json, re
for v in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TBB_NUM_THREADS"):
    os.environ[v] = "1"
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[2])
import cv2
cv2.setNumThreads(1)
from bench_ucm import resized
from pipeline.ucm import algorithm as ucm
from pipeline.core.fileio import read_image
scales = tuple(json.loads(sys.argv[5]))
def kb(key):
    return int(re.search(key + r":\s+(\d+)", open("/proc/self/status").read()).group(1))
def reset():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
img = resized(read_image(sys.argv[3]), float(sys.argv[4]))
ucm.ucm2_from_edges(*ucm.boundary_map(img[:32, :32].copy(), scales))  # JIT cache load
reset(); r0 = kb("VmRSS")
eh, ev = ucm.boundary_map(img, scales)
bm_peak = kb("VmHWM") - r0
reset(); r1 = kb("VmRSS")
u = ucm.ucm2_from_edges(eh, ev)
ws_peak = kb("VmHWM") - r1
print(json.dumps({"pixels": int(img.shape[0] * img.shape[1]), "bm_peak_kb": bm_peak,
                  "ws_peak_kb": ws_peak, "total_peak_kb": max(bm_peak, ws_peak + (r1 - r0))}))
"""


def peak_memory(path, factor, scales):
    """Peak resident-set growth (KB) of boundary_map and ucm2_from_edges in a fresh process, or None."""
    if not Path("/proc/self/clear_refs").exists():
        return None
    try:
        out = subprocess.run([sys.executable, "-c", _MEM_PROBE, str(REPO), str(Path(__file__).resolve().parent),
                              str(path), str(factor), json.dumps(list(scales))],
                             capture_output=True, text=True, timeout=600, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as e:
        print(f"memory probe failed at x{factor}: {e}", file=sys.stderr)
        return None


def run_sizes(files, factors, scales, repeats, memory):
    photos = [(p.name, read_image(p)) for p in files]
    work = [(name, f, resized(img, f)) for name, img in photos for f in factors]
    ucm.ucm2_from_edges(*ucm.boundary_map(work[0][2], scales))  # JIT cache load, not counted
    times = {(name, f): {"boundary_map": [], "ours_ws_merge": [], "ours_total": []} for name, f, _ in work}
    load_before = load_average()
    for rep in range(repeats):
        k = rep % len(factors)
        order = factors[k:] + factors[:k]  # rotate: each size runs early and late in some repeat
        for f in order:
            for name, g, img in work:
                if g != f:
                    continue
                (eh, ev), t_bm = timed(ucm.boundary_map, img, scales)
                _, t_ws = timed(ucm.ucm2_from_edges, eh, ev)
                t = times[(name, f)]
                t["boundary_map"].append(t_bm)
                t["ours_ws_merge"].append(t_ws)
                t["ours_total"].append(t_bm + t_ws)
        print(f"\rsizes: repeat {rep + 1}/{repeats}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    rows = []
    for f in factors:
        imgs = [(name, img) for name, g, img in work if g == f]
        h, w = imgs[0][1].shape[:2]
        mpx = h * w / 1e6
        row = {"factor": f, "height": h, "width": w, "mpx": round(mpx, 4), "photos": len(imgs), "repeats": repeats}
        for m in ("boundary_map", "ours_ws_merge", "ours_total"):
            per_photo = [float(np.median(times[(name, f)][m])) for name, _ in imgs]  # median over repeats
            ms = float(np.median(per_photo))
            row[f"{m}_ms"] = round(ms, 2)
            row[f"{m}_ms_per_mpx"] = round(ms / mpx, 1)
        row["superpixels_per_mpx"] = round(float(np.median(
            [ucm.superpixels(*ucm.boundary_map(img, scales)).max() + 1 for _, img in imgs])) / mpx, 0)
        if memory:  # first photo only: one fresh process per size
            mems = [peak_memory(p, f, scales) for p in files[:1]]
            mems = [m for m in mems if m]
            if mems:
                for key in ("bm_peak_kb", "ws_peak_kb", "total_peak_kb"):
                    row[key.replace("_kb", "_bytes_per_pixel")] = round(
                        float(np.median([1024 * m[key] / m["pixels"] for m in mems])), 1)
        rows.append(row)
    first, last = rows[0], rows[-1]
    growth = {m: round(last[f"{m}_ms_per_mpx"] / first[f"{m}_ms_per_mpx"], 2)
              for m in ("boundary_map", "ours_ws_merge", "ours_total")}
    res = {"photos": [p.name for p in files], "factors": factors, "repeats": repeats, "rows": rows,
           "growth_per_mpx_cost_smallest_to_largest": growth,
           "from_to_mpx": [first["mpx"], last["mpx"]], "load_before": load_before, "load_after": load_average(),
           "includes": {"boundary_map_ms": INCLUDES["boundary_map"], "ours_ws_merge_ms": INCLUDES["ours_ws_merge"],
                        "ours_total_ms": INCLUDES["ours_total"],
                        "ms_per_mpx": "median over photos of the per-photo median over repeats, / megapixels",
                        "peak_bytes_per_pixel": "first photo only, fresh process per size: VmHWM (reset via "
                                                "/proc/self/clear_refs) minus VmRSS just before the call, / pixels; "
                                                "total = max over the two calls, counting the edge maps kept "
                                                "between them; the input image is not counted"}}
    print(f"\nsizes: {len(files)} photos x {len(factors)} sizes, {repeats} repeats, load "
          f"{load_before['loadavg_1_5_15']} -> {res['load_after']['loadavg_1_5_15']}")
    print(f"  {'factor':>6s} {'size':>10s} {'Mpx':>6s} {'bm ms/Mpx':>10s} {'ws ms/Mpx':>10s} {'tot ms/Mpx':>10s}"
          f" {'tot ms':>8s} {'sp/Mpx':>8s} {'peak B/px':>9s}")
    for r in rows:
        print(f"  {r['factor']:6.2f} {r['width']:>5d}x{r['height']:<4d} {r['mpx']:6.3f} "
              f"{r['boundary_map_ms_per_mpx']:10.1f} {r['ours_ws_merge_ms_per_mpx']:10.1f} "
              f"{r['ours_total_ms_per_mpx']:10.1f} {r['ours_total_ms']:8.1f} {r['superpixels_per_mpx']:8.0f} "
              f"{r.get('total_peak_bytes_per_pixel', float('nan')):9.1f}")
    print(f"  growth of ms/Mpx from {first['mpx']} to {last['mpx']} Mpx: {growth}")
    return res


# ----------------------------------------------------------------------------- main

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", nargs="?", help="a folder of images")
    ap.add_argument("--camvid", metavar="DIR", help="a folder of CamVid PNGs (e.g. ../shared/data/camvid/val)")
    ap.add_argument("--synthetic", type=int, default=0, metavar="N", help="N random structured 500x375 images")
    ap.add_argument("--limit", type=int, default=None, help="at most this many images per folder, evenly spaced "
                    "over its sorted list")
    ap.add_argument("--repeats", type=int, default=None,
                    help="repeats per image (default 3; quick 1) / per size in --sizes (default 5; quick 2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scales", type=float, nargs="+", default=[1.0, 2.0, 4.0])
    ap.add_argument("--sizes", action="store_true", help="cost per megapixel against image size (ours only)")
    ap.add_argument("--factors", type=float, nargs="+", default=[0.5, 0.68, 1.0, 1.5, 2.0, 3.0, 4.0, 4.6, 5.33],
                    help="--sizes: resize factors per side (default: 0.043 .. 4.9 Mpx for 480x360)")
    ap.add_argument("--size-photos", type=int, default=3, help="--sizes: photos, evenly spaced in the folder")
    ap.add_argument("--no-memory", action="store_true", help="--sizes: skip the peak-memory probes")
    ap.add_argument("--quick", action="store_true", help="smoke run: 5 images, 1 repeat (sizes: 1 photo, "
                                                         "factors 0.5 1 2, 2 repeats)")
    ap.add_argument("--out", required=True, help="JSON results path")
    args = ap.parse_args(argv)
    folder = args.folder or args.camvid
    if args.sizes and not folder:
        ap.error("--sizes needs a folder of photos (positional or --camvid)")
    if not (folder or args.synthetic):
        ap.error("give a folder, --camvid DIR and/or --synthetic N")
    if args.quick:
        args.limit = min(args.limit or 5, 5)
        args.synthetic = min(args.synthetic, 5)

    cpu = pin_one_core()
    t0 = time.perf_counter()
    result = {"machine": machine(cpu), "scales": args.scales, "quick": args.quick,
              "command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:]))}
    scales = tuple(args.scales)
    if args.sizes:
        repeats = args.repeats or (2 if args.quick else 5)
        factors = [0.5, 1.0, 2.0] if args.quick else list(args.factors)
        files = folder_files(folder, 1 if args.quick else max(1, args.size_photos))
        result["sizes"] = run_sizes(files, factors, scales, repeats, memory=not args.no_memory)
    else:
        repeats = args.repeats or (1 if args.quick else 3)
        result["includes"] = INCLUDES
        result["datasets"] = {}
        if args.folder:
            result["datasets"]["folder"] = run_dataset(args.folder, folder_images(args.folder, args.limit), scales,
                                                       repeats, args.seed)
        if args.camvid:
            result["datasets"]["camvid"] = run_dataset("camvid", folder_images(args.camvid, args.limit), scales,
                                                       repeats, args.seed)
        if args.synthetic:
            result["datasets"]["synthetic"] = run_dataset("synthetic", synthetic_images(args.synthetic, args.seed),
                                                          scales, repeats, args.seed)
        result["table"] = markdown_table(result["datasets"])
        print("\n" + result["table"])
    result["machine"]["load_end"] = load_average()
    result["seconds"] = round(time.perf_counter() - t0, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\n{result['seconds']} s; wrote {out}")


if __name__ == "__main__":
    main()

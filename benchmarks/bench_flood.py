"""Box-label kernels, old against new: ``pipeline.labels.ucm_rules`` at a git revision (or a
file) against the working tree, on the same UCMs and boxes, one core.

What is timed: one ``ucm_box_masks(ucm2, boxes, ...)`` call per image (buffer sizing, the
work arrays, both floods and the rule for every box of the image, painting the bitsets);
the UCMs are computed beforehand (``pipeline.ucm.algorithm.ucm2``, untimed).  Every
configuration is compiled and warmed up on both modules before timing (numba compilation
and cache loading excluded).  Old and new run back to back on each image, the order
alternating from image to image and from repeat to repeat, so drift in the machine's load
hits both alike; a repeat's boxes/s is all boxes over the summed call times of all images.
Reported per configuration: boxes/s of every repeat, the median over repeats for old and
new, ``ratio_new_over_old`` (ratio of the medians, > 1: new is faster) and the median of
the per-repeat ratios (paired: the steadier figure on a shared machine).  Before timing,
the outputs (confident and uncertain bitsets, per-box info) of both modules are compared
on every image: ``identical`` says whether they matched to the byte.

The old module comes from ``--old-rev`` (default ``390136c``, the last commit before the
flood kernels were merged, so the run can be repeated after this change is committed) or
``--old PATH``.

Inputs: CamVid validation photos (``--camvid``: a SegNet-layout folder; boxes are the
bounding boxes of the connected components of each object class in ``valannot``, at least
``--min-area`` pixels) and synthetic images (``pipeline.sources.synthetic.render_sample``,
their object boxes).

Examples::

    python benchmarks/bench_flood.py                                  # 390136c against the working tree
    python benchmarks/bench_flood.py --old-rev HEAD --repeats 15
    python benchmarks/bench_flood.py --old /tmp/ucm_rules_old.py --quick --out /tmp/flood.json
"""

from __future__ import annotations

import os

for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import datetime  # noqa: E402
import glob  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.labels import ucm_rules as new_rules  # noqa: E402

MODULE = "pipeline/labels/ucm_rules.py"
#: name -> ucm_box_masks keyword arguments (thresholds, alpha, rule, margin, span, band)
CONFIGS = {
    "enclosed_default": dict(thresholds=(0.25, 0.5, 0.75), alpha=0.25, rule="enclosed", margin=0.1, span=0.82,
                             band=0.75),
    "paper": dict(thresholds=(0.25, 0.5, 0.75), alpha=0.3, rule="paper", margin=0.1, span=0.0, band=None),
}


def load_module(path: Path, name: str):
    """Import a copy of ucm_rules.py from ``path`` under its own module name."""
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # importable by name: numba's cache rebuilds the kernels' environment from it
    spec.loader.exec_module(mod)
    return mod


def old_module(rev: str | None, path: str | None):
    """The old ucm_rules: ``path`` as given, or ``git show <rev>:pipeline/labels/ucm_rules.py``
    written under benchmarks/out/ (git-ignored; a stable path keeps numba's cache)."""
    if path:
        return load_module(Path(path), "ucm_rules_old"), {"old_file": str(path)}
    sha = subprocess.run(["git", "rev-parse", rev], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()
    text = subprocess.run(["git", "show", f"{sha}:{MODULE}"], cwd=ROOT, check=True, capture_output=True,
                          text=True).stdout
    out = ROOT / "benchmarks" / "out" / f"ucm_rules_{sha[:12]}.py"
    out.parent.mkdir(parents=True, exist_ok=True)
    if not out.exists() or out.read_text() != text:
        out.write_text(text)
    return load_module(out, f"ucm_rules_{sha[:12]}"), {"old_rev": rev, "old_sha": sha}


def _component_boxes(class_map: np.ndarray, min_area: int) -> np.ndarray:
    """Bounding boxes (x0, y0, x1, y1, class) of the connected components of each class >= 1."""
    import cv2

    out = []
    for c in np.unique(class_map):
        if c == 0 or c == 255:
            continue
        n, _, stats, _ = cv2.connectedComponentsWithStats((class_map == c).astype(np.uint8), connectivity=4)
        for x, y, w, h, area in stats[1:]:
            if area >= min_area:
                out.append((x, y, x + w, y + h, int(c) % 63 + 1))
    return np.array(out, np.int64).reshape(-1, 5)


def camvid_inputs(folder, n: int, min_area: int):
    """(name, ucm2, boxes) of the first ``n`` CamVid validation photos."""
    from PIL import Image

    from pipeline.ucm.algorithm import ucm2

    photos = sorted(glob.glob(str(Path(folder) / "val" / "*.png")))[:n]
    for p in photos:
        image = np.array(Image.open(p).convert("RGB"))
        cls = np.array(Image.open(Path(folder) / "valannot" / Path(p).name))
        yield Path(p).stem, ucm2(image), _component_boxes(cls, min_area)


def synthetic_inputs(n: int, seed: int = 0, height: int = 240, width: int = 320):
    """(name, ucm2, boxes) of ``n`` synthetic images with their object boxes."""
    from pipeline.sources.synthetic import render_sample
    from pipeline.ucm.algorithm import ucm2

    for k in range(n):
        s = render_sample(seed, k, height, width)
        boxes = np.array([(*b, c) for c, b in s.objects], np.int64).reshape(-1, 5)
        yield f"synthetic_{k}", ucm2(s.image), boxes


def run(mod, inputs, cfg) -> list:
    return [mod.ucm_box_masks(u, b, np.uint64, **cfg) for _, u, b in inputs]


def same(a, b) -> bool:
    return all(all(x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes() for x, y in zip(p, q))
               for p, q in zip(a, b))


def time_paired(mods, inputs, cfg, r: int) -> list[float]:
    """Seconds of each module over all images, run back to back per image, the order
    alternating with the image and the repeat ``r``."""
    total = [0.0] * len(mods)
    for k, (_, u, b) in enumerate(inputs):
        order = range(len(mods)) if (r + k) % 2 == 0 else reversed(range(len(mods)))
        for j in order:
            t = time.perf_counter()
            mods[j].ucm_box_masks(u, b, np.uint64, **cfg)
            total[j] += time.perf_counter() - t
    return total


def pin_one_cpu():
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[-1]})
        return cpus[-1]
    return None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old-rev", default="390136c", help="git revision holding the old ucm_rules.py")
    ap.add_argument("--old", help="path of an old ucm_rules.py (instead of --old-rev)")
    ap.add_argument("--camvid", default=str(ROOT.parent / "shared" / "data" / "camvid"))
    ap.add_argument("--images", type=int, default=24, help="CamVid validation photos (0: none)")
    ap.add_argument("--synthetic", type=int, default=24, help="synthetic 320x240 images")
    ap.add_argument("--min-area", type=int, default=64, help="smallest CamVid component that gets a box (pixels)")
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--quick", action="store_true", help="4 + 4 images, 5 repeats")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_flood.json"))
    a = ap.parse_args(argv)
    if a.quick:
        a.images, a.synthetic, a.repeats = min(a.images, 4), min(a.synthetic, 4), 5
    cpu = pin_one_cpu()
    old, origin = old_module(a.old_rev, a.old)
    inputs = []
    if a.images and Path(a.camvid, "val").is_dir():
        inputs += list(camvid_inputs(a.camvid, a.images, a.min_area))
    inputs += list(synthetic_inputs(a.synthetic))
    inputs = [x for x in inputs if len(x[2])]
    nboxes = sum(len(b) for _, _, b in inputs)
    print(f"{len(inputs)} images, {nboxes} boxes; old: {origin}", flush=True)

    results = {}
    for name, cfg in CONFIGS.items():
        identical = same(run(old, inputs, cfg), run(new_rules, inputs, cfg))  # also the warm-up
        rates = {"old": [], "new": []}
        for r in range(a.repeats):
            t_old, t_new = time_paired((old, new_rules), inputs, cfg, r)
            rates["old"].append(nboxes / t_old)
            rates["new"].append(nboxes / t_new)
        med = {k: statistics.median(v) for k, v in rates.items()}
        results[name] = {
            "params": {k: v for k, v in cfg.items()},
            "identical": identical,
            "boxes_per_s_old": [round(v, 1) for v in rates["old"]],
            "boxes_per_s_new": [round(v, 1) for v in rates["new"]],
            "median_boxes_per_s_old": round(med["old"], 1),
            "median_boxes_per_s_new": round(med["new"], 1),
            "ratio_new_over_old": round(med["new"] / med["old"], 4),
            "median_of_per_repeat_ratios": round(statistics.median(
                n / o for n, o in zip(rates["new"], rates["old"])), 4),
        }
        print(f"{name}: identical={identical} old {med['old']:.0f} boxes/s, new {med['new']:.0f} boxes/s, "
              f"new/old {med['new'] / med['old']:.3f}", flush=True)

    doc = {
        "what": "ucm_box_masks per image (all its boxes), summed over the images; old and new back to back "
                "per image, order alternating per image and repeat; numba compilation excluded (warm-up first); "
                "UCMs untimed; one pinned CPU",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **origin,
        "new": MODULE + " (working tree)",
        "repeats": a.repeats,
        "inputs": {"camvid_images": sum(1 for n, _, _ in inputs if not n.startswith("synthetic_")),
                   "synthetic_images": sum(1 for n, _, _ in inputs if n.startswith("synthetic_")),
                   "boxes": nboxes, "min_area": a.min_area,
                   "box_area_median": float(np.median(np.concatenate(
                       [(b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) for _, _, b in inputs])))},
        "configs": results,
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "numba": numba.__version__, "numpy": np.__version__, "pinned_cpu": cpu,
                    "cpus": os.cpu_count()},
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {a.out}")
    return 0 if all(r["identical"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

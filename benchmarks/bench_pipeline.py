"""Measure the pipeline's speed, size and quality targets, as figures and ratios from one run.

Sections (all on data generated or indexed into ``--work``; nothing in the repository is written
except the ``--out`` JSON):

1. **labels throughput** -- synthetic dataset at 500x375, UCMs computed in memory
   (``pipeline.ucm.algorithm.ucm2``), then ``pipeline.labels.strategies.box_soft_labels`` over every box on one
   pinned core, JIT warmed up first: strategies ``ucm_enclosed`` and ``ucm_paper`` (the labels
   section's knobs -- span, band, alpha, thresholds, margin -- with the rule replaced) and
   ``raw_box``, passes interleaved.  Target >= 2000 boxes/s.
2. **shards** -- the real labels stage (``run_labels``, every image in the box subset) writes
   label shards of those images; mean stored bytes per label map
   (``dataset.id.get_storage_size()``, target <= 40 KB) and label maps read per second by one
   process through ``ShardReader.label`` (OS file cache warm, a fresh reader per pass so every
   map is opened and decoded, median of several passes, target >= 2000/s); re-reads through one
   reader (served decoded from HDF5's per-dataset chunk cache) and the reader's memory growth
   are reported beside it.
3. **parallel speed-up** -- wall time of ``run_ucm`` and ``run_labels`` with workers=1 vs 2 on
   the same inputs (fresh output folders, warmed up, interleaved, median of 3) -> ratio of the
   medians (target >= 1.7x).
4. **label quality** -- the synthetic default dataset (``params.yaml`` ``synthetic`` section,
   split like ``mixseg split``) and, with ``--camvid``, CamVid (its ``val/`` folder as the train
   split, every image in the box subset): ``score_strategies`` for ucm+enclosed, ucm+paper and
   raw_box -> mIoU, foreground precision/recall, box pixels ignored, ms/box.
5. **ucm vs GrabCut, same run** (needs ``--camvid``) -- per CamVid ``val`` photo, one pinned core,
   interleaved (the order of the two alternates per photo and repeat):

   * ucm: ``ucm.ucm2(image)`` (boundary map + watershed + merging + uint8 quantisation) followed by
     ``pipeline.labels.ucm_rules.ucm_box_masks`` (the ``labels`` section's rule, margin, span, band,
     thresholds, alpha) over the photo's boxes;
   * GrabCut: ``pipeline.labels.grabcut.grabcut_box_masks`` (5 iterations, context 0.5) over the
     same boxes.

   Neither includes reading the photo, deriving the boxes, or painting the per-box masks into a
   label map.  Boxes: bounding boxes of the 8-connected components >= 150 px of car, pedestrian,
   bicyclist (``valannot``).  Medians per photo (photos with boxes) and per box, ratio
   GrabCut / ucm, and totals over every photo (the ucm side pays for box-less photos too).

Every speed is the median of its repeats (``*_best`` fields keep the best, for comparison with
older results); the JSON records the CPU model (``lscpu``), the date and the load average
(``uptime``) at the start and the end.

Examples::

    python benchmarks/bench_pipeline.py --quick
    python benchmarks/bench_pipeline.py --camvid ../shared/data/camvid --out benchmarks/out/pipeline.json
    python benchmarks/bench_pipeline.py --camvid ../shared/data/camvid --sections 5 --out /tmp/gc.json

UCM timing against higra lives in ``benchmarks/bench_ucm.py``.
"""

from __future__ import annotations

import os

# one thread per process, before numba / OpenCV / BLAS are imported (the stage's workers do the same)
for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TBB_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import contextlib  # noqa: E402
import datetime  # noqa: E402
import importlib.metadata  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import h5py  # noqa: E402
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pipeline  # noqa: E402
from pipeline.sources import synthetic  # noqa: E402
from pipeline.ucm import algorithm as ucm  # noqa: E402
from pipeline.core.fileio import read_image, write_json  # noqa: E402
from pipeline.core.index import load_annotations, load_images, write_index  # noqa: E402
from pipeline.labels.stage import run_labels  # noqa: E402
from pipeline.labels.quality import score_strategies  # noqa: E402
from pipeline.core.shards import ShardReader, UcmReader, bitset_dtype  # noqa: E402
from pipeline.sources import load_source  # noqa: E402
from pipeline.split import split_ids  # noqa: E402
from pipeline.ucm.stage import run_ucm  # noqa: E402
from pipeline.labels.ucm_rules import ucm_box_masks  # noqa: E402
from pipeline.labels.grabcut import grabcut_box_masks  # noqa: E402
from pipeline.sources.camvid import CAMVID_IDS, component_boxes  # noqa: E402
from pipeline.core.fileio import read_label_png  # noqa: E402

# --- The typed-config / strategy API (commit d40ef0e, "WIP typed config"): every use of it in this
# --- script and in bench_loader.py goes through the names below, so a further change of that API
# --- is fixed here.  Sections 1-4 use it; section 5 calls ucm_box_masks / grabcut_box_masks only.
import dataclasses  # noqa: E402
from pipeline.core.config import SourceConfig, build, load_config, record  # noqa: E402
from pipeline.labels.strategies import box_soft_labels  # noqa: E402


def with_workers(cfg, n):
    """A copy of a section config (UcmConfig, LabelsConfig) with ``workers`` = n."""
    return dataclasses.replace(cfg, workers=int(n))


def box_strategy(labels_cfg, name):
    """The resolved BoxStrategy ``name`` (suffixes allowed) with the labels section's knobs."""
    return labels_cfg.box_strategy(name)


def soft_labels(strategy, ucm2, boxes, num_classes, shape):
    """One image's labels by a resolved strategy, UCM in memory."""
    return box_soft_labels(boxes, num_classes, strategy, shape, {"ucm2": ucm2} if ucm2 is not None else {})


def source_config(kind, root, **extra):
    return build(SourceConfig, {"kind": kind, "root": str(root), **extra}, "source")


def cpu_model():
    """``lscpu``'s "Model name" (falls back to /proc/cpuinfo, then platform)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def load_average():
    """``uptime``'s line and the 1 / 5 / 15 min load averages."""
    try:
        line = subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        line = None
    la = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"uptime": line, "loadavg_1_5_15": [round(v, 2) for v in la] if la else None}

TARGETS = {"boxes_per_s": 2000.0, "stored_bytes_per_map": 40 * 1024, "maps_read_per_s": 2000.0, "speedup": 1.7}
VARIANTS = ("ucm_enclosed", "ucm_paper", "raw_box")  # box strategy names (suffixes: rule)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def one_core():
    """Pin this process to one CPU for single-core timings; restore the old set afterwards.

    Only used around in-process work: joblib workers started inside would inherit the pin.
    """
    if not hasattr(os, "sched_setaffinity"):
        yield None
        return
    old = os.sched_getaffinity(0)
    cpu = min(old)
    os.sched_setaffinity(0, {cpu})
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, old)


_RSS_PROBE = """
import os, sys, json
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from pipeline.core.shards import ShardReader
def rss():
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
r = ShardReader(sys.argv[1], split="train")
r.label(r.ids[0])
before = rss()
for i in r.ids:
    r.label(i)
print(json.dumps(rss() - before))
"""


def reader_rss_growth(label_dir):
    """Resident-memory growth of a fresh process over one pass of ShardReader.label (bytes, Linux).

    Run in its own interpreter: in this long-lived process freed heap from earlier sections
    would absorb the growth and hide it.
    """
    if not Path("/proc/self/statm").exists():
        return None
    try:
        out = subprocess.run([sys.executable, "-c", _RSS_PROBE, str(label_dir), str(REPO)], capture_output=True,
                             text=True, timeout=600, check=True)
        return int(json.loads(out.stdout.strip().splitlines()[-1]))
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def git_commit():
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10)
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "") if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info():
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "versions": {"mixseg": pipeline.__version__, "numpy": np.__version__, "numba": version("numba"),
                     "h5py": h5py.__version__, "hdf5": h5py.version.hdf5_version, "joblib": version("joblib"),
                     "opencv": cv2.__version__, "scipy": version("scipy")},
        "git_commit": git_commit(),
        "repo": str(REPO),
        "source_note": os.environ.get("BENCH_SOURCE"),  # e.g. which commit a snapshot without .git holds
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "load_start": load_average(),
    }


# ----------------------------------------------------------------------------- data

def build_index(source_params, index_dir, limit=None):
    """Index a source like the ``source`` stage (optionally only its first ``limit`` items);
    ``source_params`` is the ``source`` section as a dict."""
    dataset = load_source(source_config(**source_params))
    if limit is not None:
        dataset.items = sorted(dataset.items, key=lambda it: it.id)[:limit]
    summary = write_index(dataset, index_dir, n_jobs=2, progress=False)
    return Path(index_dir) / "images.json", Path(index_dir) / "annotations.json", summary


def write_split(path, images_json, annotations_json, ratio=None, seed=0, all_box=False):
    """``data/split.json`` as ``mixseg split`` writes it (ratio) or with every training image a box image."""
    train = [r["id"] for r in load_images(images_json) if r["split"] == "train"]
    _, ann = load_annotations(annotations_json)
    with_mask = {i for i in train if ann[i]["mask"] is not None}
    counts = {"pixel": 0, "box": len(train), "image": 0} if all_box else None
    assignment = split_ids(train, with_mask, ratio=ratio or (1, 5, 10), counts=counts, seed=seed)
    counts = {k: sum(v == k for v in assignment.values()) for k in ("pixel", "box", "image")}
    write_json(path, {"format": "mixseg-split", "version": 1, "seed": seed, "counts": counts,
                      "assignment": dict(sorted(assignment.items()))})
    return counts


def fresh(path):
    path = Path(path)
    if path.exists():
        shutil.rmtree(path)
    return path


# ----------------------------------------------------------------------------- section 1

def labels_throughput(images_json, annotations_json, labels_cfg, scales, repeats, min_seconds):
    """boxes/s of box_soft_labels on one core, UCMs already in memory: median of at least
    ``repeats`` passes over every image per variant, more until ``min_seconds`` are spent per
    variant; the variants' passes are interleaved (round robin).  Best kept as ``*_best``."""
    records = [r for r in load_images(images_json) if r["split"] == "train"]
    classes, ann = load_annotations(annotations_json)
    n_cls = len(classes)
    variants = {name: box_strategy(labels_cfg, name) for name in VARIANTS}
    with one_core() as cpu:
        ucm_ms = []
        ucms = {}
        for k, r in enumerate(records):
            img = read_image(r["path"])
            if k == 0:
                ucm.ucm2(img, scales=tuple(scales))  # JIT / cache load, not timed
            t0 = time.perf_counter()
            ucms[r["id"]] = ucm.ucm2(img, scales=tuple(scales))
            ucm_ms.append(1e3 * (time.perf_counter() - t0))
        work = [(ucms[r["id"]], np.asarray(ann[r["id"]]["boxes"], np.int64).reshape(-1, 5), (r["height"], r["width"]))
                for r in records]
        n_boxes = sum(len(b) for _, b, _ in work)
        out = {"images": len(work), "boxes": n_boxes, "pinned_cpu": cpu,
               "image_size": [records[0]["height"], records[0]["width"]],
               "ucm2_ms_per_image_median": round(float(np.median(ucm_ms)), 2),
               "strategies": {name: record(s) for name, s in variants.items()}, "variants": {}}

        def one_pass(s):
            t0 = time.perf_counter()
            for u, boxes, shape in work:
                soft_labels(s, u if s.needs == "ucm" else None, boxes, n_cls, shape)
            return time.perf_counter() - t0

        u, boxes, shape = next(w for w in work if len(w[1]))
        for s in variants.values():
            for _ in range(3):  # warm-up: numba compile / cache load, allocator
                soft_labels(s, u if s.needs == "ucm" else None, boxes, n_cls, shape)
        times = {name: [] for name in variants}

        def wanted(t):
            return len(t) < repeats or (sum(t) < min_seconds and len(t) < 200)

        while any(wanted(t) for t in times.values()):  # round robin over the variants still short of passes
            for name, s in variants.items():
                if wanted(times[name]):
                    times[name].append(one_pass(s))
        for name, t in times.items():
            best, med = min(t), float(np.median(t))
            out["variants"][name] = {
                "passes": len(t), "seconds_median": round(med, 4), "seconds_best": round(best, 4),
                "boxes_per_s": round(n_boxes / med, 1), "ms_per_box": round(1e3 * med / n_boxes, 4),
                "ms_per_image": round(1e3 * med / len(work), 3),
                "boxes_per_s_best": round(n_boxes / best, 1),
                "target_met": n_boxes / med >= TARGETS["boxes_per_s"]}
    return out


# ----------------------------------------------------------------------------- section 2

def shard_sizes_and_reads(images_json, annotations_json, split_json, ucm_dir, out_dir, labels_cfg, passes,
                          min_seconds):
    p = with_workers(labels_cfg, 1)
    t0 = time.perf_counter()
    summary = run_labels(images_json, annotations_json, split_json, ucm_dir, out_dir, p, progress=False)
    write_s = time.perf_counter() - t0
    stored, truth_stored, raw = [], [], []
    shards = sorted(Path(out_dir).glob("labels-train-*.h5"))
    for path in shards:
        with h5py.File(path, "r") as f:
            for name, ds in f["label"].items():
                stored.append(ds.id.get_storage_size())
                raw.append(ds.size * ds.dtype.itemsize)
            for name, ds in f["truth"].items():
                truth_stored.append(ds.id.get_storage_size())
    file_bytes = sum(p.stat().st_size for p in shards)
    # Two views of ShardReader.label, both with the OS file cache warm:
    # * first touch: each pass opens a fresh ShardReader (constructor not timed) and reads every
    #   map once -- dataset open + deflate decode, what one training epoch pays per map;
    # * re-read: the same reader again; ShardReader keeps every h5py dataset open, so HDF5's
    #   per-dataset chunk cache (1 MiB default) serves the already-decoded map.
    with one_core() as cpu:
        warm = ShardReader(out_dir, split="train")
        ids = list(warm.ids)
        for i in ids:  # warm the OS file cache
            warm.label(i)
        cached = []
        while len(cached) < passes or (sum(cached) < min_seconds and len(cached) < 200):
            t0 = time.perf_counter()
            for i in ids:
                warm.label(i)
            cached.append(time.perf_counter() - t0)
        warm.close()
        first, opens = [], []
        while len(first) < passes or (sum(first) < min_seconds and len(first) < 200):
            t0 = time.perf_counter()
            reader = ShardReader(out_dir, split="train")
            t1 = time.perf_counter()
            for i in ids:
                reader.label(i)
            first.append(time.perf_counter() - t1)
            opens.append(t1 - t0)
            reader.close()
    best, med = min(first), float(np.median(first))
    rss_growth = reader_rss_growth(out_dir)
    mean_stored = float(np.mean(stored))
    return {
        "summary": summary, "shards": len(shards), "labels_stage_seconds_workers1": round(write_s, 3),
        "label_maps": len(stored), "bitset_dtype": str(bitset_dtype(len(load_annotations(annotations_json)[0]))),
        "stored_bytes_per_map_mean": round(mean_stored, 1),
        "stored_bytes_per_map_median": float(np.median(stored)),
        "stored_bytes_per_map_max": int(np.max(stored)),
        "truth_stored_bytes_per_map_mean": round(float(np.mean(truth_stored)), 1) if truth_stored else None,
        "raw_bytes_per_map": round(float(np.mean(raw)), 1),
        "compression_ratio": round(float(np.mean(raw)) / mean_stored, 1),
        "shard_file_bytes_per_image": round(file_bytes / max(len(ids), 1), 1),
        "read": {"ids": len(ids), "passes": len(first), "pinned_cpu": cpu,
                 "seconds_median": round(med, 4), "seconds_best": round(best, 4),
                 "maps_per_s_median": round(len(ids) / med, 1),
                 "maps_per_s_best": round(len(ids) / best, 1),
                 "ms_per_map_median": round(1e3 * med / len(ids), 4),
                 "reader_open_ms_median": round(1e3 * float(np.median(opens)), 2)},
        "reread_same_reader": {"passes": len(cached),
                               "maps_per_s_median": round(len(ids) / float(np.median(cached)), 1),
                               "maps_per_s_best": round(len(ids) / min(cached), 1),
                               "rss_growth_bytes_one_pass_fresh_process": rss_growth,
                               "rss_growth_bytes_per_map": (None if rss_growth is None
                                                            else round(rss_growth / max(len(ids) - 1, 1), 1))},
        "target_met": {"stored": mean_stored <= TARGETS["stored_bytes_per_map"],
                       "read": len(ids) / med >= TARGETS["maps_read_per_s"]},
    }


# ----------------------------------------------------------------------------- section 3

def speedup(images_json, annotations_json, split_json, work, ucm_params, lab, reps):
    """Wall time of run_ucm / run_labels with 1 and 2 workers, interleaved; speed-up = ratio of the
    medians over ``reps`` (best of each kept as ``best_*``)."""
    res = {}
    ucm_dir = work / "ucm_warm"

    def t_ucm(w, out):
        t0 = time.perf_counter()
        run_ucm(images_json, fresh(out), with_workers(ucm_params, w), progress=False)
        return time.perf_counter() - t0

    def t_labels(w, out):
        t0 = time.perf_counter()
        run_labels(images_json, annotations_json, split_json, ucm_dir, fresh(out), with_workers(lab, w),
                   progress=False)
        return time.perf_counter() - t0

    for stage, fn in (("ucm", t_ucm), ("labels", t_labels)):
        for w in (2, 1):  # warm-up: loky workers started, numba caches loaded in them and here
            fn(w, work / "ucm_warm" if stage == "ucm" else work / f"labels_warm_w{w}")
        times = {1: [], 2: []}
        for rep in range(reps):
            for w in ((1, 2) if rep % 2 == 0 else (2, 1)):
                out = work / f"{stage}_w{w}_r{rep}"
                times[w].append(fn(w, out))
                shutil.rmtree(out, ignore_errors=True)
        med1, med2 = float(np.median(times[1])), float(np.median(times[2]))
        res[stage] = {"seconds_workers1": [round(t, 3) for t in times[1]],
                      "seconds_workers2": [round(t, 3) for t in times[2]],
                      "median_workers1": round(med1, 3), "median_workers2": round(med2, 3),
                      "speedup": round(med1 / med2, 3),
                      "best_workers1": round(min(times[1]), 3), "best_workers2": round(min(times[2]), 3),
                      "speedup_of_best": round(min(times[1]) / min(times[2]), 3),
                      "target_met": med1 / med2 >= TARGETS["speedup"]}
    res["note"] = (f"{os.cpu_count()} logical CPUs on a shared machine: the speed-up is noisy "
                   "(other load on either core skews one run); ratio of the medians of %d interleaved "
                   "runs each (wall time of the whole stage call, pool start-up included)." % reps)
    return res


# ----------------------------------------------------------------------------- section 4

def quality(name, images_json, annotations_json, split_json, ucm_dir, labels_cfg):
    images = {r["id"]: r for r in load_images(images_json)}
    classes, ann = load_annotations(annotations_json)
    assignment = json.loads(Path(split_json).read_text())["assignment"]
    box_ids = sorted(i for i, k in assignment.items() if k == "box")
    items = [(images[i], ann[i]) for i in box_ids if ann[i]["mask"] is not None]
    ucms = UcmReader(ucm_dir)
    res = {"images": len(items), "boxes": sum(len(a["boxes"]) for _, a in items), "classes": classes}
    scored = score_strategies(items, classes, [box_strategy(labels_cfg, v) for v in VARIANTS], ucms,
                              progress=False)
    res.update({v: scored[v] for v in VARIANTS})
    ucms.close()
    raw = res["raw_box"]["miou"]
    for rule in ("enclosed", "paper"):
        m = res[f"ucm_{rule}"]["miou"]
        res[f"delta_ucm_{rule}_minus_raw_box"] = None if m is None or raw is None else round(m - raw, 2)
    log(f"quality {name}: " + ", ".join(f"{v} {res[v]['miou']}" for v in ("ucm_enclosed", "ucm_paper", "raw_box")))
    return res


# ----------------------------------------------------------------------------- section 5

CAMVID_THINGS = ("car", "pedestrian", "bicyclist")
CAMVID_MIN_AREA = 150


def ucm_rule_params(labels_section):
    """The ucm rule's settings straight from params.yaml's ``labels`` section (defaults as the stage).

    A plain dict (``record(cfg.labels)``), so that section 5 depends on nothing of the strategy
    API but the low-level ``ucm_box_masks``.
    """
    p = dict(labels_section or {})
    band = p.get("band")
    return {"rule": str(p.get("rule", "enclosed")), "margin": float(p.get("margin", 0.1)),
            "span": float(p.get("span", 0.0)), "band": None if band is None else float(band),
            "thresholds": [float(t) for t in p.get("thresholds", (0.25, 0.5, 0.75))],
            "alpha": float(p.get("alpha", 0.30))}


def camvid_photos(root, folder="val", limit=None):
    """(id, RGB image, (M, 5) boxes) of a CamVid folder; boxes as README / the camvid source define them."""
    root = Path(root)
    ids = [CAMVID_IDS[name] for name in CAMVID_THINGS]
    files = sorted((root / folder).glob("*.png"))[:limit]
    if not files:
        raise SystemExit(f"no PNG photos in {root / folder}")
    out = []
    for path in files:
        classes = read_label_png(root / f"{folder}annot" / path.name)
        boxes = np.asarray(component_boxes(classes, ids, CAMVID_MIN_AREA), np.int64).reshape(-1, 5)
        out.append((path.stem, read_image(path), np.ascontiguousarray(boxes)))
    return out


def ucm_vs_grabcut(camvid_root, rule_p, scales, repeats, limit, iterations=5, context=0.5, seed=0):
    """Per photo, same run, interleaved: UCM (boundary map included) + ucm box masks vs GrabCut."""
    photos = camvid_photos(camvid_root, limit=limit)
    dtype = bitset_dtype(len(CAMVID_THINGS) + 1)
    thresholds = np.asarray(rule_p["thresholds"], np.float64)

    def run_ucm_side(img, boxes):
        t0 = time.perf_counter()
        u = ucm.ucm2(img, scales=scales)
        t1 = time.perf_counter()
        ucm_box_masks(u, boxes, dtype, thresholds, rule_p["alpha"], rule_p["rule"], rule_p["margin"],
                      rule_p["span"], rule_p["band"])
        return 1e3 * (t1 - t0), 1e3 * (time.perf_counter() - t1)

    def run_grabcut(img, boxes):
        t0 = time.perf_counter()
        _, fallback = grabcut_box_masks(img, boxes, iterations, context, seed)
        return 1e3 * (time.perf_counter() - t0), int(fallback.sum())

    rows = []
    load_before = load_average()
    with one_core() as cpu:
        warm = next((p for p in photos if len(p[2])), photos[0])
        run_ucm_side(warm[1], warm[2])  # numba cache load, not timed
        run_grabcut(warm[1], warm[2][:1])
        for k, (image_id, img, boxes) in enumerate(photos):
            u_ms, l_ms, g_ms, fb = [], [], [], 0
            for r in range(repeats):
                first_ucm = (k + r) % 2 == 0
                for side in (("ucm", "grabcut") if first_ucm else ("grabcut", "ucm")):
                    if side == "ucm":
                        a, b = run_ucm_side(img, boxes)
                        u_ms.append(a)
                        l_ms.append(b)
                    else:
                        g, fb = run_grabcut(img, boxes)
                        g_ms.append(g)
            tot = [a + b for a, b in zip(u_ms, l_ms)]
            rows.append({"id": image_id, "boxes": int(len(boxes)), "grabcut_fallbacks": fb,
                         "ucm2_ms": round(float(np.median(u_ms)), 3),
                         "ucm_box_masks_ms": round(float(np.median(l_ms)), 3),
                         "ucm_side_ms": round(float(np.median(tot)), 3),
                         "grabcut_ms": round(float(np.median(g_ms)), 3)})
            if (k + 1) % 10 == 0:
                log(f"section 5: {k + 1}/{len(photos)} photos")
    with_boxes = [r for r in rows if r["boxes"]]
    n_boxes = sum(r["boxes"] for r in rows)

    def med(key, per_box=False):
        return round(float(np.median([r[key] / (r["boxes"] if per_box else 1) for r in with_boxes])), 3)

    per_image_ratio = [r["grabcut_ms"] / r["ucm_side_ms"] for r in with_boxes]
    total_ucm = sum(r["ucm_side_ms"] for r in rows)
    total_gc = sum(r["grabcut_ms"] for r in rows)
    res = {
        "photos": len(rows), "photos_with_boxes": len(with_boxes), "boxes": n_boxes, "repeats": repeats,
        "pinned_cpu": cpu, "grabcut": {"iterations": iterations, "context": context, "seed": seed},
        "ucm_rule": rule_p, "scales": list(scales),
        "grabcut_fallback_boxes": sum(r["grabcut_fallbacks"] for r in rows),
        "includes": {
            "ucm2_ms": "ucm.ucm2(image): boundary map + watershed + merging + uint8 quantisation",
            "ucm_box_masks_ms": "ucm_rules.ucm_box_masks over the photo's boxes (confident / uncertain bitsets)",
            "ucm_side_ms": "ucm2_ms + ucm_box_masks_ms of the same repeat",
            "grabcut_ms": f"grabcut.grabcut_box_masks over the photo's boxes ({iterations} iterations, context "
                          f"{context}; crops, cv2.grabCut, per-box masks)",
            "excluded": "reading the photo, deriving boxes, painting masks into a label map, writing shards",
            "per_image": "median over photos with >= 1 box of the per-photo median over repeats",
            "per_box": "median over photos with >= 1 box of (per-photo median / boxes in the photo)",
            "totals": "sum over every photo (box-less ones too: the ucm stage computes their UCM) / all boxes"},
        "per_image_median_ms": {k: med(k) for k in ("ucm2_ms", "ucm_box_masks_ms", "ucm_side_ms", "grabcut_ms")},
        "per_box_median_ms": {k: med(k, True) for k in ("ucm2_ms", "ucm_box_masks_ms", "ucm_side_ms",
                                                          "grabcut_ms")},
        "ratio_grabcut_over_ucm_side": {
            "median_of_per_image_ratios": round(float(np.median(per_image_ratio)), 2),
            "p10_of_per_image_ratios": round(float(np.percentile(per_image_ratio, 10)), 2),
            "p90_of_per_image_ratios": round(float(np.percentile(per_image_ratio, 90)), 2),
            "ratio_of_per_image_medians": None, "ratio_of_per_box_medians": None,
            "ratio_of_totals_all_photos": round(total_gc / total_ucm, 2) if total_ucm else None},
        "totals_all_photos": {"ucm_side_ms_per_box": round(total_ucm / max(n_boxes, 1), 3),
                              "grabcut_ms_per_box": round(total_gc / max(n_boxes, 1), 3)},
        "ratio_grabcut_over_ucm_box_masks_only": round(float(np.median(
            [r["grabcut_ms"] / max(r["ucm_box_masks_ms"], 1e-6) for r in with_boxes])), 1),
        "load_before": load_before, "load_after": load_average(), "images": rows,
    }
    rr = res["ratio_grabcut_over_ucm_side"]
    rr["ratio_of_per_image_medians"] = round(res["per_image_median_ms"]["grabcut_ms"]
                                             / res["per_image_median_ms"]["ucm_side_ms"], 2)
    rr["ratio_of_per_box_medians"] = round(res["per_box_median_ms"]["grabcut_ms"]
                                           / res["per_box_median_ms"]["ucm_side_ms"], 2)
    log(f"section 5: ucm side {res['per_image_median_ms']['ucm_side_ms']:.1f} ms/photo, GrabCut "
        f"{res['per_image_median_ms']['grabcut_ms']:.1f} ms/photo; GrabCut / ucm x{rr['median_of_per_image_ratios']}")
    return res


# ----------------------------------------------------------------------------- report

def yes(flag):
    return "yes" if flag else "**no**"


def fmt(v, spec):
    return "n/a" if v is None else format(v, spec)


def table(result):
    rows = []
    s1 = result.get("labels_throughput")
    if s1:
        size = "x".join(str(v) for v in s1["image_size"][::-1])
        rows.append((f"1 (context) ucm2 of one {size} image, in memory, 1 core",
                     f"{s1['ucm2_ms_per_image_median']:.1f} ms median", "", ""))
        for v, r in s1["variants"].items():
            rows.append((f"1 labels throughput, {v} ({s1['boxes']} boxes, {s1['images']} imgs {size}, 1 core, "
                         f"median of {r['passes']} passes)",
                         f"{r['boxes_per_s']:.0f} boxes/s ({r['ms_per_box']:.3f} ms/box, "
                         f"{r['ms_per_image']:.2f} ms/image; best pass {r['boxes_per_s_best']:.0f})",
                         ">= 2000 boxes/s", yes(r["target_met"])))
    s2 = result.get("shards")
    if s2:
        kb = 1024
        rows.append((f"2 stored bytes per label map ({s2['label_maps']} maps, {s2['bitset_dtype']}, deflate)",
                     f"{s2['stored_bytes_per_map_mean'] / kb:.1f} KB mean, {s2['stored_bytes_per_map_max'] / kb:.1f} "
                     f"KB max (raw in memory {s2['raw_bytes_per_map'] / kb:.0f} KB, x{s2['compression_ratio']:.0f})",
                     "<= 40 KB", yes(s2["target_met"]["stored"])))
        r, c = s2["read"], s2["reread_same_reader"]
        rows.append((f"2 label maps read/s, one process, first touch (fresh ShardReader per pass, OS cache warm, "
                     f"median of {r['passes']} passes over {r['ids']} maps)",
                     f"{r['maps_per_s_median']:.0f}/s ({r['ms_per_map_median']:.3f} ms/map; best pass "
                     f"{r['maps_per_s_best']:.0f}/s)", ">= 2000/s", yes(s2["target_met"]["read"])))
        rows.append(("2 (context) re-read through the same ShardReader (HDF5 chunk cache of each open dataset)",
                     f"{c['maps_per_s_median']:.0f}/s median pass; a reader's RSS grows "
                     f"{fmt(c['rss_growth_bytes_per_map'] and c['rss_growth_bytes_per_map'] / kb, '.0f')} KB per "
                     f"map read (one pass, fresh process)", "", ""))
    s3 = result.get("speedup")
    if s3:
        for stage in ("ucm", "labels"):
            r = s3[stage]
            rows.append((f"3 {stage} stage speed-up, workers 1 -> 2 (median of {len(r['seconds_workers1'])} "
                         f"interleaved runs; noisy: 2 shared cores)",
                         f"x{r['speedup']:.2f} ({r['median_workers1']:.2f} s -> {r['median_workers2']:.2f} s; "
                         f"best x{r['speedup_of_best']:.2f})", ">= 1.7x", yes(r["target_met"])))
    for name, q in (result.get("quality") or {}).items():
        for v in ("ucm_enclosed", "ucm_paper", "raw_box"):
            r = q[v]
            rows.append((f"4 quality {name}, {v} ({q['images']} imgs, {q['boxes']} boxes)",
                         f"mIoU {fmt(r['miou'], '.2f')}, fg P/R {r['fg_precision']:.1f}/{r['fg_recall']:.1f}, "
                         f"ignored {r['box_ignored']:.1f}%, {1e3 * r['seconds_per_box']:.3f} ms/box", "", ""))
        rows.append((f"4 quality {name}: ucm_enclosed - raw_box / ucm_paper - raw_box",
                     f"{fmt(q['delta_ucm_enclosed_minus_raw_box'], '+.2f')} / "
                     f"{fmt(q['delta_ucm_paper_minus_raw_box'], '+.2f')} mIoU points", "", ""))
    s5 = result.get("ucm_vs_grabcut")
    if s5:
        pi, pb, rr = s5["per_image_median_ms"], s5["per_box_median_ms"], s5["ratio_grabcut_over_ucm_side"]
        rows.append((f"5 ucm side per photo: ucm2 (boundary map incl.) + ucm_box_masks, CamVid val "
                     f"({s5['photos_with_boxes']} photos with boxes, {s5['boxes']} boxes, median of "
                     f"{s5['repeats']} repeats, 1 core)",
                     f"{pi['ucm_side_ms']:.1f} ms/photo ({pi['ucm2_ms']:.1f} + {pi['ucm_box_masks_ms']:.2f}), "
                     f"{pb['ucm_side_ms']:.1f} ms/box", "", ""))
        rows.append((f"5 GrabCut per photo (grabcut_box_masks, {s5['grabcut']['iterations']} iterations, context "
                     f"{s5['grabcut']['context']}), same photos, interleaved",
                     f"{pi['grabcut_ms']:.1f} ms/photo, {pb['grabcut_ms']:.1f} ms/box", "", ""))
        rows.append(("5 GrabCut / ucm side (UCM counted)",
                     f"x{rr['median_of_per_image_ratios']:.1f} median per photo (p10-p90 "
                     f"x{rr['p10_of_per_image_ratios']:.1f}-x{rr['p90_of_per_image_ratios']:.1f}); per-box "
                     f"medians x{rr['ratio_of_per_box_medians']:.1f}; totals over all {s5['photos']} photos "
                     f"x{rr['ratio_of_totals_all_photos']:.1f}", "", ""))
    lines = ["| measure | measured | target | met |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", metavar="DIR", help="scratch folder (default: a temporary folder, removed afterwards)")
    ap.add_argument("--out", metavar="JSON", default=str(REPO / "benchmarks" / "out" / "bench_pipeline.json"),
                    help="results JSON (default: %(default)s)")
    ap.add_argument("--quick", action="store_true", help="small, fast run for development (~1-2 min)")
    ap.add_argument("--camvid", metavar="DIR", help="CamVid SegNet-layout folder (val/ + valannot/), read in place")
    ap.add_argument("--images", type=int, default=None, help="500x375 images for sections 1-3 (default 400, quick 24)")
    ap.add_argument("--params", default=str(REPO / "params.yaml"), help="params.yaml whose synthetic/split/ucm/"
                    "labels sections are used (default: %(default)s)")
    ap.add_argument("--sections", default="12345", help="which sections to run, e.g. 14 (default: all; 5 "
                    "needs --camvid)")
    ap.add_argument("--speedup-reps", type=int, default=None, help="section 3: interleaved runs per worker count "
                    "(default 3, quick 1)")
    ap.add_argument("--gc-photos", type=int, default=None, help="section 5: first N CamVid val photos "
                    "(default all, quick 8)")
    ap.add_argument("--gc-repeats", type=int, default=None, help="section 5: repeats per photo (default 3, quick 1)")
    args = ap.parse_args(argv)

    n_images = args.images or (24 if args.quick else 400)
    cfg = load_config(args.params)
    syn_p, split_p = cfg.synthetic, cfg.split
    ucm_p = with_workers(cfg.ucm, 2)
    lab_stage = cfg.labels

    tmp = None
    if args.work:
        work = Path(args.work).resolve()
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.mkdtemp(prefix="bench_pipeline_")
        work = Path(tmp)
    cv2.setNumThreads(1)
    t_start = time.perf_counter()
    result = {"machine": machine_info(), "quick": args.quick, "work": str(work),
              "params": {"ucm": record(ucm_p), "labels": record(lab_stage)}, "targets": TARGETS}
    try:
        if set(args.sections) & set("123"):
            log(f"generating {n_images} synthetic images at 500x375")
            big = work / "big"
            t0 = time.perf_counter()
            synthetic.generate(fresh(big / "raw"), num_train=n_images, num_val=0, height=375, width=500,
                               num_classes=syn_p.num_classes, seed=syn_p.seed, n_jobs=2, progress=False)
            img_json, ann_json, _ = build_index({"kind": "synthetic", "root": str(big / "raw")}, big / "source")
            split_json = big / "split.json"
            write_split(split_json, img_json, ann_json, all_box=True)
            result["bench_dataset"] = {"images": n_images, "height": 375, "width": 500,
                                       "setup_seconds": round(time.perf_counter() - t0, 2)}
            if "1" in args.sections:
                log("section 1: labels throughput")
                result["labels_throughput"] = labels_throughput(img_json, ann_json, lab_stage, ucm_p.scales,
                                                                repeats=5, min_seconds=1.0 if args.quick else 3.0)
            if "3" in args.sections:
                log("section 3: parallel speed-up (ucm, labels)")
                reps = args.speedup_reps or (1 if args.quick else 3)
                result["speedup"] = speedup(img_json, ann_json, split_json, big, ucm_p, lab_stage, reps=reps)
            elif "2" in args.sections:
                run_ucm(img_json, fresh(big / "ucm_warm"), ucm_p, progress=False)
            if "2" in args.sections:
                log("section 2: shards")
                result["shards"] = shard_sizes_and_reads(img_json, ann_json, split_json, big / "ucm_warm",
                                                         fresh(big / "labels"), lab_stage,
                                                         passes=5, min_seconds=1.0 if args.quick else 3.0)
        if "4" in args.sections:
            result["quality"] = {}
            q_ucm = ucm_p
            n_train, n_val = syn_p.num_train, syn_p.num_val
            if args.quick:
                n_train, n_val = 160, 0
            log(f"section 4: quality on synthetic {n_train}/{n_val} {syn_p.width}x{syn_p.height}")
            d = work / "syn_default"
            synthetic.generate(fresh(d / "raw"), num_train=n_train, num_val=n_val, height=syn_p.height,
                               width=syn_p.width, num_classes=syn_p.num_classes, seed=syn_p.seed, n_jobs=2,
                               progress=False)
            img_json, ann_json, _ = build_index({"kind": "synthetic", "root": str(d / "raw")}, d / "source")
            counts = write_split(d / "split.json", img_json, ann_json, ratio=split_p.ratio, seed=split_p.seed)
            run_ucm(img_json, fresh(d / "ucm"), q_ucm, progress=False)
            q = quality("synthetic", img_json, ann_json, d / "split.json", d / "ucm", lab_stage)
            q["dataset"] = {"num_train": n_train, "num_val": n_val, "height": syn_p.height,
                            "width": syn_p.width, "seed": syn_p.seed, "split": counts}
            result["quality"]["synthetic"] = q
            if args.camvid:
                c = work / "camvid"
                limit = 24 if args.quick else None
                log(f"section 4: quality on CamVid {args.camvid}" + (f" (first {limit})" if limit else ""))
                src = {"kind": "camvid", "root": str(Path(args.camvid).resolve()),
                       "camvid": {"train_dirs": ["val"], "val_dirs": []}}
                img_json, ann_json, _ = build_index(src, c / "source", limit=limit)
                counts = write_split(c / "split.json", img_json, ann_json, all_box=True)
                run_ucm(img_json, fresh(c / "ucm"), q_ucm, progress=False)
                q = quality("camvid", img_json, ann_json, c / "split.json", c / "ucm", lab_stage)
                q["dataset"] = {"root": src["root"], "dirs": ["val"], "split": counts}
                result["quality"]["camvid"] = q
        if "5" in args.sections and args.camvid:
            limit = args.gc_photos or (8 if args.quick else None)
            repeats = args.gc_repeats or (1 if args.quick else 3)
            log(f"section 5: ucm vs GrabCut on CamVid val" + (f" (first {limit})" if limit else "")
                + f", {repeats} repeats")
            result["ucm_vs_grabcut"] = ucm_vs_grabcut(args.camvid, ucm_rule_params(record(cfg.labels)),
                                                      tuple(ucm_p.scales), repeats, limit)
        elif "5" in args.sections:
            log("section 5 skipped: needs --camvid")
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    result["total_seconds"] = round(time.perf_counter() - t_start, 1)
    result["machine"]["load_end"] = load_average()
    result["table"] = table(result)
    m = result["machine"]
    print(f"\nmixseg pipeline benchmark, {m['date']}, {m['platform']}, {m['cpu']}, {m['cpu_count']} CPUs, "
          f"python {m['python']}, numba {m['versions']['numba']}, h5py {m['versions']['h5py']}, "
          f"commit {m['git_commit']}, load {m['load_start']['loadavg_1_5_15']} -> "
          f"{m['load_end']['loadavg_1_5_15']}\n")
    print(result["table"])
    if "speedup" in result:
        print(f"\nNote: {result['speedup']['note']}")
    print(f"\ntotal {result['total_seconds']} s")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()

"""Throughput of the ucm and labels stages: local workers vs a Dask cluster.

On the same synthetic 500x375 images (generated and indexed with the helpers of
``bench_pipeline.py``), wall time of ``run_ucm`` and ``run_labels`` (every training
image in the box subset, so every image gets box labels) with

* joblib's local backend (loky), 1 and 2 workers;
* a ``dask.distributed.LocalCluster`` of N worker processes, one thread each, through
  ``pipeline.core.cluster.joblib_backend`` -- the path ``MIXSEG_DASK_SCHEDULER`` takes;

and the size of one pickled task (what the scheduler ships per shard), from which the
traffic for VOC-size and COCO-size inputs is extrapolated.  Each configuration is
warmed up once (workers started, numba caches loaded), then timed ``--reps`` times;
the best run counts.

    python benchmarks/bench_cluster.py --images 100 --out benchmarks/out/cluster.json
"""

from __future__ import annotations

import os

for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import pickle  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_pipeline import build_index, fresh, machine_info, write_split  # noqa: E402

from pipeline.sources import synthetic  # noqa: E402
from pipeline.core.cluster import joblib_backend  # noqa: E402
from pipeline.core.config import LabelsConfig, UcmConfig  # noqa: E402
from pipeline.core.index import load_annotations, load_images  # noqa: E402
from pipeline.labels.stage import _label_shard, run_labels  # noqa: E402
from pipeline.split import load_split  # noqa: E402
from pipeline.ucm.stage import _ucm_shard, run_ucm  # noqa: E402

#: The settings this benchmark has always timed, pinned: the ucm section's method and scales, and
#: the labels knobs the stage defaulted to before the typed config (enclosed rule without the span
#: and band tests, the paper's alpha); ``workers`` is set per run.
UCM = UcmConfig(method="mixseg", scales=(1.0, 2.0, 4.0), shard_size=200)
LABELS = LabelsConfig(strategy="ucm", rule="enclosed", margin=0.1, span=0.0, band=None,
                      thresholds=(0.25, 0.5, 0.75), alpha=0.30, seed=0, shard_size=200)


def timed(fn, reps):
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def task_bytes(img_json, ann_json, split_json, ucm_cfg: UcmConfig, lab: LabelsConfig):
    """Pickled size of one shard task of each stage (the partial with its bound data)."""
    records = {r["id"]: r for r in load_images(img_json) if r["split"] == "train"}
    images = {r["id"]: r for r in load_images(img_json)}
    classes, annotations = load_annotations(ann_json)
    kinds = load_split(split_json)
    ucm_task = functools.partial(_ucm_shard, records=records, params=ucm_cfg)
    lab_task = functools.partial(_label_shard, images=images, annotations=annotations, kinds=kinds, classes=classes,
                                 params=lab, ucm_dir="ucm")
    n_boxes = sum(len(a["boxes"]) for a in annotations.values())
    return {"images": len(images), "boxes": n_boxes,
            "ucm_task_bytes": len(pickle.dumps(ucm_task)), "labels_task_bytes": len(pickle.dumps(lab_task))}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--dask-workers", type=int, default=2)
    ap.add_argument("--work", default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    from dask.distributed import LocalCluster

    work = Path(args.work or tempfile.mkdtemp(prefix="bench_cluster_"))
    big = work / "big"
    t0 = time.perf_counter()
    synthetic.generate(fresh(big / "raw"), num_train=args.images, num_val=0, height=375, width=500,
                       num_classes=12, seed=0, n_jobs=2, progress=False)
    img_json, ann_json, _ = build_index({"kind": "synthetic", "root": str(big / "raw")}, big / "source")
    split_json = big / "split.json"
    write_split(split_json, img_json, ann_json, all_box=True)
    setup_s = time.perf_counter() - t0
    run_ucm(img_json, fresh(big / "ucm_ref"), dataclasses.replace(UCM, workers=2), progress=False)

    def ucm_run(w):
        return lambda: run_ucm(img_json, fresh(big / "ucm_out"), dataclasses.replace(UCM, workers=w), progress=False)

    def labels_run(w):
        return lambda: run_labels(img_json, ann_json, split_json, big / "ucm_ref", fresh(big / "labels_out"),
                                  dataclasses.replace(LABELS, workers=w), progress=False)

    result = {"machine": machine_info(), "images": args.images, "size": "500x375", "setup_seconds": round(setup_s, 1),
              "boxes": sum(len(a["boxes"]) for a in load_annotations(ann_json)[1].values()), "runs": {}}
    for name, make in (("ucm", ucm_run), ("labels", labels_run)):
        for w in (1, 2):
            t = timed(make(w), args.reps)
            result["runs"][f"{name}/loky-{w}"] = {"seconds": [round(x, 3) for x in t],
                                                  "images_per_s": round(args.images / min(t), 2)}
            print(f"{name:6s} loky workers={w}: best {min(t):.2f} s  {args.images / min(t):.1f} img/s", flush=True)
    cwd = os.getcwd()
    os.chdir(work)
    cluster = LocalCluster(n_workers=args.dask_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None, worker_dashboard_address=None)
    os.chdir(cwd)
    try:
        with joblib_backend(cluster.scheduler_address):
            for name, make in (("ucm", ucm_run), ("labels", labels_run)):
                t = timed(make(1), args.reps)
                key = f"{name}/dask-localcluster-{args.dask_workers}"
                result["runs"][key] = {"seconds": [round(x, 3) for x in t],
                                       "images_per_s": round(args.images / min(t), 2)}
                print(f"{name:6s} dask LocalCluster {args.dask_workers} workers: best {min(t):.2f} s  "
                      f"{args.images / min(t):.1f} img/s", flush=True)
    finally:
        cluster.close()
    result["task_payload"] = task_bytes(img_json, ann_json, split_json, UCM, LABELS)
    print(json.dumps(result["task_payload"]))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()

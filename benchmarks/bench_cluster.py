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

``--payload N`` measures the scheduler traffic instead (issue #13 item 6), without any UCM
work: on a generated COCO-like index of N images (~7 boxes each; the image files need not
exist), the pickled bytes of each shard task as joblib sends it, the Dask scheduler's peak
memory (its own process, ``VmHWM``) and the wall time of a no-op run of each stage, for the
task construction *before* (the whole index bound into every task with ``functools.partial``)
and *after* (``run_sharded(..., by_id=...)``: each task gets its shard's records).  The
cluster is a scheduler process plus 2 worker processes x 1 thread on loopback (the
scheduler in its own process so that its memory can be read).  ``--tasks K`` times the
first K shards only (the "before" run ships the whole index per task)::

    python benchmarks/bench_cluster.py --payload 120000 --tasks 24 --out benchmarks/results/bench_cluster_v2.json
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
from fake_index import fake_index  # noqa: E402

from pipeline.sources import synthetic  # noqa: E402
from pipeline.core.cluster import joblib_backend  # noqa: E402
from pipeline.core.config import LabelsConfig, UcmConfig  # noqa: E402
from pipeline.core.index import load_annotations, load_images  # noqa: E402
from pipeline.labels.stage import _label_shard, run_labels  # noqa: E402
from pipeline.split import load_split  # noqa: E402
from pipeline.ucm.stage import _ucm_shard, run_ucm  # noqa: E402
from pipeline.core.parallel import plan_shards, run_sharded, shard_calls  # noqa: E402
from pipeline.labels import stage as labels_stage  # noqa: E402
from pipeline.ucm import stage as ucm_stage  # noqa: E402

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
    """Pickled size of one shard task of each stage as it was before issue #13 item 6 (the
    partial with the whole index bound into it); ``--payload`` measures before and after."""
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


# ---------------------------------------------------------------- --payload: scheduler traffic


def noop_ucm(ids, path, records, params, policy=None, tick=None):
    """_ucm_shard's arguments, no work: looks the ids up and writes a few bytes."""
    Path(path).write_bytes(b"".join(records[i]["id"].encode() for i in ids))
    return len(ids)


def noop_labels(ids, path, images, annotations, kinds, classes, params, ucm_dir, policy=None, tick=None):
    """_label_shard's arguments, no work."""
    Path(path).write_bytes(b"".join(images[i]["id"].encode() + str(len(annotations[i]["boxes"])).encode()
                                    for i in ids))
    return {k: sum(kinds[i] == k for i in ids) for k in ("pixel", "box", "image")}


def _rss(pid: int) -> dict:
    f = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {k: int(f[k].split()[0]) * 1024 for k in ("VmRSS", "VmHWM")}


class LoopbackCluster:
    """``dask scheduler`` in its own process (so its memory can be read) and ``dask worker
    --nworkers N --nthreads 1`` (nanny-managed worker processes), on 127.0.0.1."""

    def __init__(self, workers: int, folder: Path):
        import subprocess
        self.file = folder / f"sched-{time.time_ns()}.json"
        py = sys.executable
        common = dict(cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.sched = subprocess.Popen([py, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                       "--port", "0", "--no-dashboard", "--scheduler-file", str(self.file)], **common)
        while not self.file.exists():
            time.sleep(0.1)
        self.work = subprocess.Popen([py, "-m", "distributed.cli.dask_worker", "--scheduler-file", str(self.file),
                                      "--nworkers", str(workers), "--nthreads", "1", "--no-dashboard",
                                      "--memory-limit", "0"], **common)
        from dask.distributed import Client
        with Client(scheduler_file=str(self.file)) as c:
            c.wait_for_workers(workers, timeout=120)

    def close(self):
        for p in (self.work, self.sched):
            p.terminate()
            p.wait(30)


def payload_runs(n: int, tasks: int, workers: int, work: Path) -> dict:
    import cloudpickle
    import statistics
    folder = fake_index(work / "index", n)
    img_json, ann_json, split_json = (folder / f for f in ("images.json", "annotations.json", "split.json"))
    ucm_cfg = dataclasses.replace(UCM, shard_size=200)
    lab_cfg = dataclasses.replace(LABELS, shard_size=200)

    def before(stage):
        # the task construction of ucm/stage.py and labels/stage.py before item 6, with no-op work
        if stage == "ucm":
            records = {r["id"]: r for r in load_images(img_json) if r["split"] == "train"}
            shards = plan_shards(records, ucm_cfg.shard_size)
            return functools.partial(noop_ucm, records=records, params=ucm_cfg), shards, None
        images = {r["id"]: r for r in load_images(img_json)}
        classes, annotations = load_annotations(ann_json)
        kinds = dict(load_split(split_json))
        val = {i: "pixel" for i, r in images.items() if r["split"] == "val" and annotations[i]["mask"] is not None}
        shards = plan_shards(kinds, lab_cfg.shard_size) + plan_shards(val, lab_cfg.shard_size)
        kinds.update(val)
        return (functools.partial(noop_labels, images=images, annotations=annotations, kinds=kinds, classes=classes,
                                  params=lab_cfg, ucm_dir=str(folder / "ucm")), shards, None)

    def after(stage):
        # the stages' real construction (run_ucm / run_labels), the shard function swapped for the no-op
        got = {}

        def capture(task, shards, out_dir, name_of, workers, desc, progress=True, policy=None, by_id=None):
            got["args"] = task, shards, by_id
            return [0] * len(shards) if desc == "ucm" else [{"pixel": 0, "box": 0, "image": 0}] * len(shards)
        saved = ucm_stage.run_sharded, labels_stage.run_sharded, ucm_stage._ucm_shard, labels_stage._label_shard
        ucm_stage.run_sharded = labels_stage.run_sharded = capture
        ucm_stage._ucm_shard, labels_stage._label_shard = noop_ucm, noop_labels
        try:
            if stage == "ucm":
                ucm_stage.run_ucm(img_json, work / "x", ucm_cfg, progress=False)
            else:
                labels_stage.run_labels(img_json, ann_json, split_json, folder / "ucm", work / "x", lab_cfg,
                                        progress=False)
        finally:
            ucm_stage.run_sharded, labels_stage.run_sharded, ucm_stage._ucm_shard, labels_stage._label_shard = saved
        return got["args"]

    out = {"images": n, "boxes_per_image": 7, "shard_size": 200, "dask_workers": workers, "timed_tasks": tasks,
           "cluster": f"dask scheduler process + {workers} worker processes x 1 thread, 127.0.0.1", "runs": {}}
    for stage in ("ucm", "labels"):
        for mode, build in (("before", before), ("after", after)):
            t0 = time.perf_counter()
            task, shards, by_id = build(stage)
            build_s = time.perf_counter() - t0
            sample = shards[:3] if mode == "before" else shards  # before: every task carries the same index
            sizes = [len(cloudpickle.dumps(c)) for c in shard_calls(task, sample, work / "o", str, "fail", None, by_id)]
            row = {"tasks_in_run": len(shards), "task_bytes_max": max(sizes),
                   "task_bytes_median": int(statistics.median(sizes)), "build_seconds": round(build_s, 2)}
            row["total_bytes_all_tasks"] = (row["task_bytes_median"] * len(shards) if mode == "before"
                                            else sum(sizes))
            timed_shards = shards[:tasks] if tasks else shards
            cluster = LoopbackCluster(workers, work)
            try:
                base = _rss(cluster.sched.pid)
                with joblib_backend(str(cluster.file)):
                    t0 = time.perf_counter()
                    run_sharded(task, timed_shards, fresh(work / "o"), lambda k: f"s{k:05d}", 1, stage,
                                progress=False, by_id=by_id)
                    wall = time.perf_counter() - t0
                peak = _rss(cluster.sched.pid)
            finally:
                cluster.close()
            row.update({"timed_tasks": len(timed_shards), "wall_seconds": round(wall, 2),
                        "wall_ms_per_task": round(1000 * wall / len(timed_shards), 1),
                        "scheduler_rss_idle_mb": round(base["VmRSS"] / 2**20, 1),
                        "scheduler_peak_rss_mb": round(peak["VmHWM"] / 2**20, 1)})
            out["runs"][f"{stage}/{mode}"] = row
            print(f"{stage:6s} {mode:6s}: {row['task_bytes_max']:>11,d} B/task  {len(shards)} tasks  "
                  f"no-op run of {len(timed_shards)}: {wall:6.2f} s ({row['wall_ms_per_task']} ms/task)  "
                  f"scheduler peak {row['scheduler_peak_rss_mb']} MB (idle {row['scheduler_rss_idle_mb']})",
                  flush=True)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--dask-workers", type=int, default=2)
    ap.add_argument("--work", default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--payload", type=int, default=0, metavar="N",
                    help="measure per-task payload, scheduler memory and no-op wall time on a generated "
                         "N-image index (no UCM work), before and after issue #13 item 6")
    ap.add_argument("--tasks", type=int, default=0, help="--payload: time the first K shards only (0: all)")
    args = ap.parse_args(argv)
    if args.payload:
        work = Path(args.work or tempfile.mkdtemp(prefix="bench_payload_"))
        result = {"machine": machine_info(), "payload": payload_runs(args.payload, args.tasks, args.dask_workers,
                                                                     work)}
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(result, indent=1))
        return result

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

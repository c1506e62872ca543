"""Sharding plan and the joblib loop shared by the ucm and labels stages."""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import threading
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed
from tqdm import tqdm

from pipeline.core.errors import ErrorPolicy, InputError
from pipeline.core.fileio import atomic_path, write_json

MIN_SHARDS = 8  # enough tasks to keep 2+ workers busy on small datasets


def plan_shards(ids, shard_size: int) -> list[list[str]]:
    """Split sorted ids into balanced shards of at most ``shard_size`` images.

    At least ``MIN_SHARDS`` shards (when there are that many images) so work
    balances across workers; the plan never depends on the worker count, so
    1 and N workers write the same files.
    """
    ids = sorted(ids)
    if not ids:
        return []
    n = max(math.ceil(len(ids) / max(int(shard_size), 1)), min(MIN_SHARDS, len(ids)))
    return [list(part) for part in np.array_split(np.array(ids, dtype=object), n)]


def _single_threaded():
    # one worker = one core: keep numba/BLAS/OpenCV from spawning their own threads
    if multiprocessing.current_process().name != "MainProcess" and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the parent stops the workers, quietly
    for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    try:
        import cv2
        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover
        pass


SKIPPED_NAME = "skipped.json"


def run_sharded(task, shards: list[list[str]], out_dir, name_of, workers: int, desc: str,
                progress: bool = True, policy: ErrorPolicy | None = None) -> list:
    """Run ``task(ids, path)`` for every shard, writing into a temporary folder
    that replaces ``out_dir`` only when every shard is written.

    ``name_of(k)`` is the file name of shard k.  Returns the tasks' results in
    shard order.  Uses joblib's current backend, so a Dask or Ray backend set
    with ``joblib.parallel_config`` spreads the shards over a cluster.

    With a ``policy`` (:class:`~pipeline.core.errors.ErrorPolicy`) the task is called
    as ``task(ids, path, policy=...)`` with a fresh policy of the same mode; the
    items the tasks skipped are gathered (sorted by id) into ``policy.skipped``
    and written to ``out_dir/skipped.json`` inside the temporary folder, so the
    list appears together with the shards, atomically.
    """
    out_dir = Path(out_dir)
    total = sum(len(s) for s in shards)
    mode = policy.mode if policy is not None else None
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        jobs = (delayed(_call)(task, ids, tmp / name_of(k), k, mode) for k, ids in enumerate(shards))
        results = [None] * len(shards)
        skipped = []
        with tqdm(total=total, desc=desc, unit="img", disable=not progress) as bar:
            par = Parallel(n_jobs=workers, return_as="generator_unordered")
            for k, n, res, sk in par(jobs):
                results[k] = res
                skipped += sk
                bar.update(n)
        if policy is not None:
            policy.skipped[:] = sorted(skipped, key=lambda s: str(s["id"]))
            if total and len(skipped) >= total:  # nothing left: fail, keeping the old output
                first = policy.skipped[0]
                raise InputError(first["path"], f"every item was skipped ({len(skipped)}; the first because: "
                                                f"{first['reason']})")
            write_json(tmp / SKIPPED_NAME, policy.skipped)
    return results


def _call(task, ids, path, k, mode):
    _single_threaded()
    if mode is None:
        return k, len(ids), task(ids, path), []
    policy = ErrorPolicy(mode)
    res = task(ids, path, policy=policy)
    return k, len(ids), res, policy.skipped

"""Sharding plan and the joblib loop shared by the ucm and labels stages."""

from __future__ import annotations

import contextlib
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
from pipeline.core.shards import manifest_entry, write_manifest

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


def shard_slice(by_id: dict | None, ids) -> dict:
    """``{name: {id: mapping[id] for id in ids}}`` for every mapping of ``by_id``: the part of
    the index one shard needs, so a task carries its shard's records and not the whole index."""
    return {name: {i: mapping[i] for i in ids} for name, mapping in (by_id or {}).items()}


def shard_calls(task, shards: list[list[str]], folder, name_of, mode: str | None = None, tick=None,
                by_id: dict | None = None):
    """The joblib calls of :func:`run_sharded`, lazily, one per shard: exactly what is
    pickled and sent to a worker (a loky process or a Dask worker) per task.

    Each call carries ``task`` (bound to small parameters only), the shard's ids and
    :func:`shard_slice` of ``by_id``: its size grows with the shard size, never with the
    size of the index, and every record crosses the wire once per run in all.
    """
    folder = Path(folder)
    for k, ids in enumerate(shards):
        yield delayed(_call)(task, ids, folder / name_of(k), k, mode, tick, shard_slice(by_id, ids))


def run_sharded(task, shards: list[list[str]], out_dir, name_of, workers: int, desc: str,
                progress: bool = True, policy: ErrorPolicy | None = None, by_id: dict | None = None) -> list:
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

    ``out_dir/manifest.json`` (:func:`pipeline.core.shards.write_manifest`, stage ``desc``)
    lists every shard written, with its image count, size and CRC-32 (computed by the
    worker that wrote it), also inside the temporary folder: the readers and ``mixseg
    verify`` find a shard deleted, added or changed later.

    ``by_id``: ``{name: {id: record}}``, the index the task looks its ids up in.  Do not
    bind it into ``task`` (every task would then carry the whole index: ~110 MB per task
    for COCO's labels); each call gets ``name={id: record}`` for its own shard's ids only
    (:func:`shard_calls`), a few hundred bytes per image whatever the index size.
    """
    out_dir = Path(out_dir)
    total = sum(len(s) for s in shards)
    mode = policy.mode if policy is not None else None
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        tick = Ticks(tmp / ".progress") if progress else None
        jobs = shard_calls(task, shards, tmp, name_of, mode, tick, by_id)
        results = [None] * len(shards)
        skipped, entries = [], []
        with tqdm(total=total, desc=desc, unit="img", disable=not progress) as bar, _follow(tick, bar):
            par = Parallel(n_jobs=workers, return_as="generator_unordered")
            for k, entry, res, sk in par(jobs):
                results[k] = res
                skipped += sk
                entries.append(entry)
        if tick is not None:
            tick.path.unlink(missing_ok=True)  # not part of the output
        if policy is not None:
            policy.skipped[:] = sorted(skipped, key=lambda s: str(s["id"]))
            if total and len(skipped) >= total:  # nothing left: fail, keeping the old output
                first = policy.skipped[0]
                raise InputError(first["path"], f"every item was skipped ({len(skipped)}; the first because: "
                                                f"{first['reason']})")
            write_json(tmp / SKIPPED_NAME, policy.skipped)
        write_manifest(tmp, entries, desc, None if policy is None else len(skipped))
    return results


def _call(task, ids, path, k, mode, tick, index=None):
    """Shard k's task, in a worker: (k, its manifest entry, the task's result, the items it skipped).
    ``index``: the shard's slice of ``run_sharded``'s ``by_id``, passed as keyword arguments."""
    _single_threaded()
    kwargs = dict(index or {})
    if tick is not None:
        kwargs["tick"] = tick
    policy = None if mode is None else ErrorPolicy(mode)
    res = task(ids, path, **kwargs) if policy is None else task(ids, path, policy=policy, **kwargs)
    skipped = [] if policy is None else policy.skipped
    return k, manifest_entry(path, len(ids) - len(skipped)), res, skipped


def each_item(ids, make, policy: ErrorPolicy | None = None, tick=None) -> list[tuple]:
    """``[(id, make(id))]`` for a shard's ids; an :class:`InputError` goes to ``policy``
    (``skip``: recorded and left out; ``fail``, the default: raised); ``tick()`` after each id."""
    policy = policy or ErrorPolicy("fail")
    out = []
    for i in ids:
        try:
            out.append((i, make(i)))
        except InputError as e:
            policy.handle(i, e)
        if tick is not None:
            tick()
    return out


class Ticks:
    """Per-image progress from any worker process (or Dask worker on the shared file
    system): each call appends one byte to ``path``; the parent follows its size."""

    def __init__(self, path):
        self.path = Path(path)
        self.path.touch()

    def __call__(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, b".")
        finally:
            os.close(fd)


@contextlib.contextmanager
def _follow(tick: Ticks | None, bar):
    """Move ``bar`` to the number of ticks every 0.2 s while the body runs (and once after);
    until the first image is done the bar says the workers are starting / compiling."""
    if tick is None:
        yield
        return
    stop = threading.Event()

    def update():
        n = tick.path.stat().st_size if tick.path.exists() else bar.n
        bar.set_postfix_str("" if n else "starting workers, compiling kernels", refresh=False)
        bar.update(n - bar.n)

    def loop():
        while not stop.wait(0.2):
            update()
    thread = threading.Thread(target=loop, daemon=True)
    update()
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        update()

"""Run the ucm and labels stages on a Dask cluster through joblib's dask backend.

The stages shard their work with :func:`pipeline.core.parallel.run_sharded`, which uses
joblib's *current* backend.  This module switches that backend to Dask when the
environment variable ``MIXSEG_DASK_SCHEDULER`` is set, so the same ``mixseg ucm`` /
``mixseg labels`` commands (and ``dvc repro``) run on a cluster unchanged::

    dask scheduler --port 8786 &                                  # once, anywhere
    dask worker tcp://HOST:8786 --nworkers 16 --nthreads 1 &      # on every node
    MIXSEG_DASK_SCHEDULER=tcp://HOST:8786 dvc repro labels

Values of ``MIXSEG_DASK_SCHEDULER``:

* unset, empty or ``loky`` -- the default: local worker processes (``ucm.workers``,
  ``labels.workers``);
* a scheduler address (``tcp://host:8786``, ``tls://...``);
* a path ending in ``.json`` -- a Dask scheduler file (``dask scheduler
  --scheduler-file``, the usual way on SLURM/PBS clusters).

Why an environment variable and not a ``params.yaml`` key: where the work runs is a
property of the machine, not of the experiment.  The shards are byte-identical on
any backend (the plan never depends on the worker count; tested in
``tests/test_cluster.py``), so the address must not enter ``params.yaml`` or
``dvc.lock``, and changing it must not rerun a stage.

On a cluster the worker count is the cluster's (every worker thread), not
``ucm.workers`` / ``labels.workers``.  Workers must see the project folder and the
dataset at the same paths as the machine running ``mixseg`` (a shared file
system): the index holds image paths relative to the project, and the shards are
written by the workers straight into the stage's output folder.  Each worker
changes into the client's working directory when it connects (a worker plugin),
so relative paths resolve the same on every node.  Use one thread per worker
process (``--nthreads 1``): the UCM and box-label loops hold the GIL part of the
time, so threads of one process do not scale.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from pipeline.core.errors import InputError

ENV = "MIXSEG_DASK_SCHEDULER"
LOCAL = ("", "loky", "local")


PLUGIN_NAME = "mixseg-chdir"


def _chdir_plugin(path: str):
    """A Dask worker plugin that changes into ``path`` on every worker, present and future.

    Built on demand so that importing this module does not import distributed
    (the class is local, so Dask ships it to the workers by value).
    """
    from distributed.diagnostics.plugin import WorkerPlugin

    class Chdir(WorkerPlugin):
        idempotent = True

        def __init__(self, path):
            self.path = path

        def setup(self, worker):
            os.chdir(self.path)

    return Chdir(path)


def scheduler_from_env() -> str | None:
    """The scheduler ``MIXSEG_DASK_SCHEDULER`` names, or None for local workers."""
    value = os.environ.get(ENV, "").strip()
    return None if value.lower() in LOCAL else value


def connect(scheduler: str, chdir: bool = True):
    """A ``dask.distributed.Client`` for an address or a scheduler-file path.

    Raises
    ------
    InputError
        Naming the variable: dask is not installed, the scheduler file is missing,
        or the scheduler does not answer.
    """
    try:
        from dask.distributed import Client
    except ImportError:
        raise InputError(ENV, "is set but dask.distributed is not installed "
                              "(pip install -c constraints.txt -e \".[cluster]\")") from None
    try:
        if scheduler.lower().endswith(".json"):
            if not Path(scheduler).is_file():
                raise InputError(scheduler, f"Dask scheduler file named by {ENV} not found")
            client = Client(scheduler_file=scheduler)
        else:
            client = Client(scheduler)  # waits distributed.comm.timeouts.connect (dask config, 30 s)
    except InputError:
        raise
    except (OSError, TimeoutError, ValueError) as e:
        raise InputError(ENV, f"cannot connect to the Dask scheduler {scheduler!r} ({e})") from None
    if chdir:
        client.register_plugin(_chdir_plugin(os.getcwd()), name=PLUGIN_NAME)
    return client


@contextlib.contextmanager
def joblib_backend(scheduler: str | None = None, client=None):
    """Route joblib (hence ``run_sharded``) to a Dask cluster inside the block.

    ``client``: an existing ``dask.distributed.Client`` (kept open); else
    ``scheduler`` (address or scheduler file); else ``$MIXSEG_DASK_SCHEDULER``.
    With none of them the block runs on joblib's default local backend, unchanged.
    Yields the client, or None when running locally.
    """
    import joblib

    own = None
    if client is None:
        scheduler = scheduler if scheduler is not None else scheduler_from_env()
        if scheduler is None or scheduler.strip().lower() in LOCAL:
            yield None
            return
        client = own = connect(scheduler)
    try:
        with joblib.parallel_config(backend="dask", client=client):
            yield client
    finally:
        if own is not None:
            own.close()

"""Checkpoints (exact resume) and the exported ``model.pt``.

A checkpoint holds what an interrupted run needs to continue the same sequence of
batches and losses: the model and optimiser state, the iteration reached, the global
RNG states (python, numpy, torch), the curves logged so far (``LossLog.state``) and the
run's ``meta``.  ``meta`` records what the model is trained on (:func:`run_meta`): a
digest of the label shards the dataset reads, the ``train`` params that change the model,
the code (``pipeline.__version__`` and a digest of each trainer module), the variant and
the number of processes; a checkpoint is resumed only when all of them match
(:func:`load_matching_checkpoint`), else the run starts afresh and says why.
Both files are written atomically (``pipeline.core.fileio.atomic_path``): a crash leaves
the previous file whole.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import random
import zipfile
from pathlib import Path

import numpy as np
import torch

from pipeline import __version__
from pipeline.core.config import TrainConfig, record
from pipeline.core.errors import InputError
from pipeline.core.fileio import atomic_path

from .networks import build_model

#: ``train`` knobs that change how a run goes, not the model it makes (left out of ``meta``).
RUN_ONLY = ("variants", "threads", "workers", "cache_mb", "checkpoint_every", "log_every")
#: The modules whose code makes the model: an edit to one of them is a new model.
TRAINER_MODULES = ("train.checkpoint", "train.data", "train.efficientnet", "train.fit", "train.losses",
                   "train.networks")


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The network inside a DistributedDataParallel wrapper (``model`` itself otherwise)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


# ----------------------------------------------------------------------------- what a run is trained on

def file_digest(path) -> str:
    """The sha256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def labels_digest(paths) -> str:
    """A sha256 over the sorted (name, size, sha256 of the bytes) of the shard files ``paths``.

    About 20 ms for the 7.4 MB of the synthetic default's 8 training shards (380 MB/s: a
    few seconds for VOC train_aug's images and labels).
    """
    h = hashlib.sha256()
    for p in sorted(map(Path, paths), key=lambda p: p.name):
        h.update(f"{p.name}\0{p.stat().st_size}\0{file_digest(p)}\n".encode())
    return h.hexdigest()


def code_digests() -> dict:
    """``version`` (``pipeline.__version__``) and the sha256 of each of :data:`TRAINER_MODULES`."""
    return {"version": __version__,
            **{name: file_digest(importlib.import_module(name).__file__) for name in TRAINER_MODULES}}


def run_meta(cfg: TrainConfig, variant: str, dataset, world_size: int = 1) -> dict:
    """What a model of ``variant`` trained on ``dataset`` (a ``ShardDataset``) with ``cfg`` is.

    ``labels`` (:func:`labels_digest` of the shards), ``config`` (the ``train`` params but
    :data:`RUN_ONLY`), ``code`` (:func:`code_digests`), ``variant`` and ``world_size`` -- a
    checkpoint must share all of them to be resumed (:func:`differences`) -- plus ``arch``,
    ``classes``, ``num_classes`` and ``images``.
    """
    return {"arch": cfg.arch, "variant": variant, "classes": dataset.classes, "num_classes": dataset.num_classes,
            "background": dataset.background,
            "images": len(dataset), "labels": labels_digest(dataset.paths),
            "config": {k: v for k, v in record(cfg).items() if k not in RUN_ONLY},
            "code": code_digests(), "world_size": world_size}


def differences(old: dict, new: dict) -> list[str]:
    """What differs between a checkpoint's ``meta`` (``old``) and a run's (``new``), in words."""
    said = []
    if old.get("labels") != new["labels"]:
        said.append("other label shards (" + ("their checksums differ" if old.get("labels")
                                               else "no checksums recorded") + ")")
    before = {k: v for k, v in (old.get("config") or {}).items() if k not in RUN_ONLY}
    params = [f"train.{k} {json.dumps(before.get(k))}, now {json.dumps(new['config'].get(k))}"
              for k in sorted(set(before) | set(new["config"])) if before.get(k) != new["config"].get(k)]
    if params:
        said.append("other params (" + "; ".join(params) + ")")
    code = old.get("code") or {}
    if not code:
        said.append("an older mixseg (no code version recorded)")
    elif code.get("version") != new["code"]["version"]:
        said.append(f"mixseg {code.get('version')}, now {new['code']['version']}")
    else:
        edited = [name.replace(".", "/") + ".py" for name in TRAINER_MODULES if code.get(name) != new["code"][name]]
        if edited:
            said.append(f"other code ({', '.join(edited)} changed)")
    if old.get("variant") != new["variant"]:
        said.append(f"variant {old.get('variant')}, now {new['variant']}")
    if old.get("world_size", 1) != new["world_size"]:
        said.append(f"{old.get('world_size', 1)} processes, now {new['world_size']}")
    return said


# ----------------------------------------------------------------------------- checkpoints

def rng_state() -> dict:
    """The global RNG states: python ``random``, numpy's legacy generator, torch's CPU generator."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def save_checkpoint(path, model, optimizer, it: int, meta: dict, curves: dict) -> None:
    """Write the state after ``it`` iterations, with the ``curves`` logged so far, to ``path`` atomically."""
    with atomic_path(path) as tmp:
        torch.save({"model": unwrap(model).state_dict(), "optimizer": optimizer.state_dict(), "iteration": it,
                    "rng": rng_state(), "curves": curves, "meta": meta}, tmp)


def load_matching_checkpoint(path, meta: dict, log=print) -> dict | None:
    """The checkpoint at ``path`` if it exists and was made with what ``meta`` records (no
    :func:`differences`); None otherwise, after logging one line: why the run starts afresh."""
    path = Path(path)
    afresh = f"starting {meta['variant']} afresh"
    if not path.exists():
        log(f"{path}: not found: {afresh}")
        return None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        said = differences(ckpt["meta"], meta)
    except Exception as e:  # noqa: BLE001 -- whatever is there, it cannot be resumed
        log(f"{path}: not a readable checkpoint ({type(e).__name__}: {e}): {afresh}")
        return None
    if said:
        log(f"{path}: made with {'; '.join(said)}: {afresh}")
        return None
    return ckpt


def restore(ckpt: dict, model, optimizer) -> int:
    """Load a checkpoint's model, optimiser and RNG states; the iteration to continue from."""
    unwrap(model).load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    set_rng_state(ckpt["rng"])
    return int(ckpt["iteration"])


# ----------------------------------------------------------------------------- model.pt

def nonfinite(state: dict) -> tuple[int, int]:
    """(non-finite values, all values) of the floating tensors of a state dict."""
    floats = [t for t in state.values() if torch.is_tensor(t) and t.is_floating_point()]
    return sum(int((~torch.isfinite(t)).sum()) for t in floats), sum(t.numel() for t in floats)


def export_model(path, model, meta: dict) -> None:
    """Write the trained network and its ``meta`` to ``path`` (``model.pt``) atomically."""
    with atomic_path(path) as tmp:
        torch.save({"model": unwrap(model).state_dict(), "meta": meta}, tmp)


def read_model_file(path) -> tuple[dict, dict]:
    """(state dict, meta) of a ``model.pt``; an InputError when it is missing or is not one."""
    path = Path(path)
    if path.is_dir():
        raise InputError(path, "not a mixseg model file (a folder)")
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except FileNotFoundError:
        raise InputError(path, "model file not found (train the variant first)") from None
    except OSError as e:
        raise InputError(path, f"model file unreadable ({e.strerror or e})") from None
    if not head:
        raise InputError(path, "not a mixseg model file (an empty file)")
    if not head.startswith((b"PK\x03\x04", b"\x80")):  # torch.save: a zip archive (or a bare pickle, torch < 1.6)
        raise InputError(path, f"not a mixseg model file (not written by torch.save: it starts with {head!r})")
    if head.startswith(b"PK") and not zipfile.is_zipfile(path):
        raise InputError(path, "not a mixseg model file (a truncated or damaged zip archive)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 -- a damaged archive or pickle
        raise InputError(path, f"not a mixseg model file ({type(e).__name__}: {e})") from None
    if not (isinstance(ckpt, dict) and {"model", "meta"} <= ckpt.keys()
            and isinstance(ckpt["model"], dict) and isinstance(ckpt["meta"], dict)):
        what = f"a {type(ckpt).__name__}" + (f" of {', '.join(map(str, list(ckpt)[:4]))}" if isinstance(ckpt, dict)
                                             else "")
        raise InputError(path, f"not a mixseg model file (it holds {what}, not a dict of model and meta)")
    state, meta = ckpt["model"], ckpt["meta"]
    missing = [k for k in ("arch", "num_classes", "classes") if k not in meta]
    if missing:
        raise InputError(path, f"not a mixseg model file (its meta has no {', '.join(missing)})")
    return state, meta


def load_model(path, device="cpu"):
    """A trained model (in eval mode, on ``device``) and its ``meta`` from ``model.pt``.

    The model remembers where it came from: ``model.trained_on`` is ``{"path", "classes",
    "background"}``; ``train.evaluate.check_classes`` compares the classes with the shards it
    meets, ``predict_class_map`` leaves class 0 out when ``background`` is false.

    Raises
    ------
    InputError
        The file is missing, is not a mixseg model file, has non-finite weights, or its
        state dict does not fit the arch and class count its meta names.
    """
    state, meta = read_model_file(path)
    bad, total = nonfinite(state)
    if bad:
        raise InputError(path, f"model has non-finite weights ({bad} of {total} values): retrain")
    model = build_model(meta["arch"], meta["num_classes"])
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise InputError(path, f"state dict does not fit a {meta['arch']} with {meta['num_classes']} "
                               f"classes ({str(e).splitlines()[0]})") from None
    model.trained_on = {"path": str(path), "classes": list(meta["classes"]), "background": meta.get("background", True)}
    return model.to(device).eval(), meta

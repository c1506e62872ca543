"""Checkpoints (exact resume) and the exported ``model.pt``.

A checkpoint holds what an interrupted run needs to continue the same sequence of
batches and losses: the model and optimiser state, the iteration reached, the global
RNG states (python, numpy, torch) and the run's ``meta`` (settings, variant, images).
Both files are written atomically (``pipeline.core.fileio.atomic_path``): a crash leaves
the previous file whole.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from pipeline.core.errors import InputError
from pipeline.core.fileio import atomic_path

from .networks import build_model

#: The parts of ``meta`` a checkpoint must share with a run to be resumed by it.
MATCH_KEYS = ("config", "variant", "images")


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The network inside a DistributedDataParallel wrapper (``model`` itself otherwise)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def rng_state() -> dict:
    """The global RNG states: python ``random``, numpy's legacy generator, torch's CPU generator."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def save_checkpoint(path, model, optimizer, it: int, meta: dict) -> None:
    """Write the state after ``it`` iterations to ``path`` atomically."""
    with atomic_path(path) as tmp:
        torch.save({"model": unwrap(model).state_dict(), "optimizer": optimizer.state_dict(), "iteration": it,
                    "rng": rng_state(), "meta": meta}, tmp)


def load_matching_checkpoint(path, meta: dict, log=print) -> dict | None:
    """The checkpoint at ``path`` if it exists and was made with the settings of ``meta``
    (:data:`MATCH_KEYS`); None otherwise, after logging that the run starts afresh."""
    path = Path(path)
    if not path.exists():
        return None
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if {k: ckpt["meta"].get(k) for k in MATCH_KEYS} != {k: meta[k] for k in MATCH_KEYS}:
        log(f"{path} was made with other settings: starting afresh")
        return None
    return ckpt


def restore(ckpt: dict, model, optimizer) -> int:
    """Load a checkpoint's model, optimiser and RNG states; the iteration to continue from."""
    unwrap(model).load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    set_rng_state(ckpt["rng"])
    return int(ckpt["iteration"])


def export_model(path, model, meta: dict) -> None:
    """Write the trained network and its ``meta`` to ``path`` (``model.pt``) atomically."""
    with atomic_path(path) as tmp:
        torch.save({"model": unwrap(model).state_dict(), "meta": meta}, tmp)


def load_model(path, device="cpu"):
    """A trained model (in eval mode, on ``device``) and its ``meta`` from ``model.pt``.

    Raises
    ------
    InputError
        The file is missing, is not a mixseg model file, or its state dict does not fit
        the arch and class count its meta names.
    """
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        meta = ckpt["meta"]
    except FileNotFoundError:
        raise InputError(path, "model file not found (train the variant first)") from None
    except (KeyError, TypeError, RuntimeError, EOFError, OSError) as e:
        raise InputError(path, f"not a mixseg model file ({e})") from None
    model = build_model(meta["arch"], meta["num_classes"])
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise InputError(path, f"state dict does not fit a {meta['arch']} with {meta['num_classes']} "
                               f"classes ({str(e).splitlines()[0]})") from None
    return model.to(device).eval(), meta

"""Training one variant: the loop, checkpoints and exact resume.

``train(cfg, shard_dir, out_dir, variant)`` reads top to bottom like torchvision's
reference ``train.py``: data, model, optimiser, schedule, then the loop.  The
number of iterations is proportional to the images the variant uses
(``cfg["epochs"]`` passes over them).  A checkpoint (model, optimiser, iteration,
RNG states) is written atomically every ``checkpoint_every`` iterations and at the
end; rerunning the same command resumes from it and continues the same sequence of
batches and losses.  CUDA runs use bf16 autocast; ``torchrun --nproc_per_node N``
runs DistributedDataParallel (gloo on CPU, NCCL on CUDA).
"""

from __future__ import annotations

import math
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from pipeline.core.errors import InputError
from pipeline.core.fileio import atomic_path

from .data import ShardDataset, make_loader
from .losses import mixseg_loss
from .networks import build_model

DEFAULTS = {
    "arch": "small", "pretrained": None, "mode": "practical", "sampling": "mixed",
    "batch_size": 8, "crop": [96, 128], "scale": [0.75, 1.25], "flip": True,
    "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "schedule": "poly", "warmup": 100, "epochs": 24,
    "checkpoint_every": 100, "log_every": 10, "seed": 0, "workers": 0, "amp": True, "threads": 0,
}


def train_config(cfg: dict | None) -> dict:
    """The ``train`` section of params with defaults; ``mode: paper`` means the paper's
    exact setting (batch 1, no crop, subset batches, Eq. 3 sum reduction, lr 1e-4, constant
    schedule, no warm-up)."""
    user = dict(cfg or {})
    c = {**DEFAULTS, **user}
    if c["mode"] == "paper":
        c.update(batch_size=1, crop=None, sampling="subset", reduction="paper")
        c["lr"] = user.get("lr", 1e-4)
        c["schedule"] = user.get("schedule", "constant")
        c["warmup"] = user.get("warmup", 0)
    else:
        c["reduction"] = "mean"
    if c["mode"] not in ("practical", "paper"):
        raise ValueError(f"train.mode must be 'practical' or 'paper', not {c['mode']!r}")
    if c["schedule"] not in ("poly", "step", "constant"):
        raise ValueError(f"train.schedule must be poly, step or constant, not {c['schedule']!r}")
    return c


def lr_at(cfg: dict, it: int, total: int) -> float:
    """The learning rate of iteration ``it`` of ``total``: the schedule, times a linear
    warm-up to 1 over the first ``cfg["warmup"]`` iterations (at most a fifth of the run)."""
    n_warm = min(int(cfg.get("warmup") or 0), total // 5)
    warm = min(1.0, (it + 1) / n_warm) if n_warm > 0 else 1.0
    if cfg["schedule"] == "poly":
        return warm * cfg["lr"] * (1 - it / max(total, 1)) ** 0.9
    if cfg["schedule"] == "step":
        return warm * cfg["lr"] * (0.1 ** (it // max(total // 3, 1)))
    return warm * cfg["lr"]


def _distributed() -> tuple[int, int]:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def _metrics_logger(path, resume: bool):
    """A dvclive ``Live`` that only writes its files (``metrics.json``, ``plots/metrics/*.tsv``).

    The stage declares those files in ``dvc.yaml`` itself.  dvclive's own DVC integration
    is switched off: in dvclive 3.49 it fails in a git repository without commits
    (``scm.get_rev``), runs ``dvc init`` in a git root that has no DVC, and appends
    entries to the enclosing ``dvc.yaml`` -- none of which a training run should do.
    """
    from dvclive import Live

    class FilesOnlyLive(Live):
        def _init_dvc(self):
            self._save_dvc_exp = False

    return FilesOnlyLive(str(path), resume=resume, save_dvc_exp=False, report=None, dvcyaml=False)


def save_checkpoint(path, model, optimizer, it: int, meta: dict) -> None:
    module = model.module if hasattr(model, "module") else model
    with atomic_path(path) as tmp:
        torch.save({"model": module.state_dict(), "optimizer": optimizer.state_dict(), "iteration": it,
                    "rng": _rng_state(), "meta": meta}, tmp)


def train(cfg: dict, shard_dir, out_dir, variant: str, max_iterations: int | None = None,
          progress: bool = True, log=print) -> dict:
    """Train ``variant`` on the label shards in ``shard_dir``; write ``out_dir/model.pt``.

    ``max_iterations`` stops this run early (the checkpoint is kept, the next call
    resumes) -- used by the resume test.  Returns a summary dict.
    """
    cfg = train_config(cfg)
    rank, world = _distributed()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    if cfg["threads"]:
        torch.set_num_threads(int(cfg["threads"]))
    torch.manual_seed(cfg["seed"])
    random.seed(cfg["seed"])
    np.random.seed(cfg["seed"])

    crop = tuple(cfg["crop"]) if cfg["crop"] else None
    dataset = ShardDataset(shard_dir, "train", variant, crop=crop, scale=tuple(cfg["scale"]), flip=cfg["flip"],
                           augment=True, seed=cfg["seed"])
    loader = make_loader(dataset, cfg["batch_size"], sampling=cfg["sampling"], seed=cfg["seed"],
                         num_workers=cfg["workers"], rank=rank, world_size=world)
    num_classes = dataset.num_classes
    iters_per_epoch = len(loader)
    total = max(1, math.ceil(cfg["epochs"] * iters_per_epoch))

    model = build_model(cfg["arch"], num_classes, pretrained=cfg["pretrained"]).to(device)
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                          else None)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=cfg["momentum"],
                                weight_decay=cfg["weight_decay"])
    meta = {"arch": cfg["arch"], "variant": variant, "classes": dataset.classes, "num_classes": num_classes,
            "config": {k: v for k, v in cfg.items()}, "images": len(dataset)}

    ckpt_path = out_dir / "checkpoint.pt"
    start = 0
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False) if ckpt_path.exists() else None
    if ckpt is not None and {k: ckpt["meta"].get(k) for k in ("config", "variant", "images")} != \
            {k: meta[k] for k in ("config", "variant", "images")}:
        log(f"{ckpt_path} was made with other settings: starting afresh")
        ckpt = None
    if ckpt is not None:
        (model.module if world > 1 else model).load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start = ckpt["iteration"]
        _set_rng_state(ckpt["rng"])
        log(f"resuming {variant} at iteration {start}/{total}")

    live = _metrics_logger(out_dir / "live", resume=start > 0) if rank == 0 else None

    use_amp = cfg["amp"] and device.type == "cuda"
    history, window = [], {}
    it = start
    stop = total if max_iterations is None else min(total, start + max_iterations)
    t0 = time.perf_counter()
    model.train()
    while it < stop:
        epoch, skip = divmod(it, iters_per_epoch)
        dataset.set_epoch(epoch)
        loader.batch_sampler.set_epoch(epoch) if hasattr(loader.batch_sampler, "set_epoch") else None
        for b, batch in enumerate(loader):
            if b < skip:
                continue
            if it >= stop:
                break
            for g in optimizer.param_groups:
                g["lr"] = lr_at(cfg, it, total)
            image = batch["image"].to(device, non_blocking=True)
            bits = batch["bits"].to(device, non_blocking=True)
            kind = batch["kind"].to(device)
            tags = batch["tags"].to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                logits = model(image)
            loss, parts = mixseg_loss(logits.float(), bits, kind, tags, reduction=cfg["reduction"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            it += 1
            value = float(loss.detach())
            history.append(value)
            for name, v in parts.items():
                window.setdefault(name, []).append(float(v))
            if live is not None and (it % cfg["log_every"] == 0 or it == stop):
                live.step = it
                live.log_metric("train/loss", float(np.mean(history[-cfg["log_every"]:])))
                for name, vs in window.items():
                    live.log_metric(f"train/loss_{name}", float(np.mean(vs)))
                live.log_metric("train/lr", optimizer.param_groups[0]["lr"])
                live.next_step()
                window = {}
            if rank == 0 and progress and (it % 50 == 0 or it == stop):
                log(f"{variant}: iteration {it}/{total}  loss {value:.4f}  "
                    f"{(it - start) / (time.perf_counter() - t0):.1f} it/s")
            if rank == 0 and it % cfg["checkpoint_every"] == 0:
                save_checkpoint(ckpt_path, model, optimizer, it, meta)
    if rank == 0:
        save_checkpoint(ckpt_path, model, optimizer, it, meta)
        if it >= total:
            module = model.module if world > 1 else model
            with atomic_path(out_dir / "model.pt") as tmp:
                torch.save({"model": module.state_dict(), "meta": meta}, tmp)
        if live is not None:
            live.end()
    summary = {"variant": variant, "iterations": it, "total_iterations": total, "images": len(dataset),
               "seconds": round(time.perf_counter() - t0, 2), "losses": history}
    if world > 1:
        dist.barrier()
    return summary


def load_model(path, device="cpu"):
    """A trained model and its metadata from ``model.pt``."""
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


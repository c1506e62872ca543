"""Training one variant: the loop, exact resume, DDP.

``train(cfg, shard_dir, out_dir, variant)`` reads top to bottom like torchvision's
reference ``main()``: data, model, optimiser, resume, the loop, the export.  The number
of iterations is proportional to the images the variant uses (``cfg.epochs`` passes over
them).  A checkpoint (model, optimiser, iteration, RNG states; ``train/checkpoint.py``) is
written atomically every ``cfg.checkpoint_every`` iterations and at the end; rerunning
the same command resumes from it: the batch sampler starts at the batch the run stopped
at, so the same sequence of batches and losses follows and no skipped batch is loaded.
CUDA runs use bf16 autocast; ``torchrun --nproc_per_node N`` runs DistributedDataParallel
(gloo on CPU, NCCL on CUDA).
"""

from __future__ import annotations

import itertools
import math
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from pipeline.core.config import TrainConfig, record

from .checkpoint import export_model, load_matching_checkpoint, load_model, restore, save_checkpoint
from .data import ShardDataset, make_loader
from .losses import mixseg_loss
from .networks import build_model

__all__ = ["default_device", "load_model", "lr_at", "train", "train_step"]  # load_model: from checkpoint.py


def lr_at(cfg: TrainConfig, it: int, total: int) -> float:
    """The learning rate of iteration ``it`` (0-based) of ``total``.

    ``cfg.schedule`` (poly: power 0.9; step: x0.1 at each third of the run; constant)
    from ``cfg.lr``, times a linear warm-up to 1 over the first ``cfg.warmup``
    iterations (at most a fifth of the run).
    """
    n_warm = min(cfg.warmup, total // 5)
    warm = min(1.0, (it + 1) / n_warm) if n_warm > 0 else 1.0
    if cfg.schedule == "poly":
        return warm * cfg.lr * (1 - it / max(total, 1)) ** 0.9
    if cfg.schedule == "step":
        return warm * cfg.lr * (0.1 ** (it // max(total // 3, 1)))
    return warm * cfg.lr


def default_device() -> torch.device:
    """Where this process trains and evaluates: CUDA device ``LOCAL_RANK`` (0 outside
    torchrun) when CUDA is available, else the CPU."""
    return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")


def init_distributed() -> tuple[int, int]:
    """(rank, world size); joins the process group under torchrun (NCCL on CUDA, gloo on CPU)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def seed_everything(seed: int, threads: int = 0) -> None:
    """Seed torch, python and numpy's global generators; ``threads`` > 0 sets torch's CPU threads."""
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def metrics_logger(path, resume: bool):
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


class LossLog:
    """The losses of one run of iterations ``start`` .. ``stop`` (of ``total``).

    Every loss is kept (``losses``); with a dvclive ``live`` (rank 0) the mean loss, the
    mean of each loss part and the learning rate are logged every ``every`` iterations
    and at ``stop``; with ``log`` a progress line is printed every 50 iterations and at
    ``stop``.
    """

    def __init__(self, name: str, start: int, stop: int, total: int, every: int, live=None, log=None):
        self.name, self.start, self.stop, self.total, self.every = name, start, stop, total, every
        self.live, self.log = live, log
        self.losses, self.window = [], {}
        self.t0 = time.perf_counter()

    def add(self, it: int, loss: float, parts: dict, lr: float) -> None:
        """Record iteration ``it``'s ``loss`` (float), its named ``parts`` (floats) and ``lr``."""
        self.losses.append(loss)
        for name, v in parts.items():
            self.window.setdefault(name, []).append(v)
        if self.live is not None and (it % self.every == 0 or it == self.stop):
            self.live.step = it
            self.live.log_metric("train/loss", float(np.mean(self.losses[-self.every:])))
            for name, vs in self.window.items():
                self.live.log_metric(f"train/loss_{name}", float(np.mean(vs)))
            self.live.log_metric("train/lr", lr)
            self.live.next_step()
            self.window = {}
        if self.log is not None and (it % 50 == 0 or it == self.stop):
            self.log(f"{self.name}: iteration {it}/{self.total}  loss {loss:.4f}  "
                     f"{(it - self.start) / (time.perf_counter() - self.t0):.1f} it/s")

    def seconds(self) -> float:
        """Seconds since the log was made, rounded to 0.01."""
        return round(time.perf_counter() - self.t0, 2)


def train_step(model, optimizer, batch: dict, lr: float, device: torch.device,
               cfg: TrainConfig) -> tuple[float, dict]:
    """One SGD step at learning rate ``lr``: forward, loss, backward, update.

    Parameters
    ----------
    model : torch.nn.Module
        In train mode, on ``device`` (DDP-wrapped under torchrun).
    optimizer : torch.optim.Optimizer
        Its groups' ``lr`` is set to ``lr`` first.
    batch : dict
        A collated batch (``train/data.py``): ``image`` float32 (N, 3, H, W), ``bits``
        int64 (N, H, W), ``kind`` int64 (N,), ``tags`` float32 (N, C+1).
    cfg : TrainConfig
        ``amp`` (bf16 autocast, CUDA only) and ``reduction`` of the loss (Eq. 3).

    Returns
    -------
    loss : float
    parts : dict of str to float
        The named parts of the loss (``train/losses.py``).
    """
    for g in optimizer.param_groups:
        g["lr"] = lr
    image = batch["image"].to(device, non_blocking=True)
    bits = batch["bits"].to(device, non_blocking=True)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp and device.type == "cuda"):
        logits = model(image)
    loss, parts = mixseg_loss(logits.float(), bits, batch["kind"].to(device), batch["tags"].to(device),
                              reduction=cfg.reduction)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach()), {name: float(v) for name, v in parts.items()}


def train(cfg: TrainConfig, shard_dir, out_dir, variant: str, max_iterations: int | None = None,
          progress: bool = True, log=print) -> dict:
    """Train ``variant`` on the label shards in ``shard_dir``; write ``out_dir/model.pt``.

    Parameters
    ----------
    cfg : TrainConfig
        The ``train`` section of params.yaml.
    shard_dir, out_dir : str or os.PathLike
        The labels stage's shards; the folder for ``model.pt``, ``checkpoint.pt`` (resumed
        by the next call when made with the same settings, variant and images) and the
        dvclive files in ``live/``.
    variant : str
        One of ``VARIANTS`` (``train/data.py``).
    max_iterations : int, optional
        Stop this call after so many iterations (the checkpoint is kept, the next call
        resumes) -- used by the resume test.
    progress : bool
        Log a progress line every 50 iterations (rank 0).
    log : callable
        Takes each message (str).

    Returns
    -------
    dict
        ``variant``, ``iterations`` reached, ``total_iterations``, ``images``,
        ``seconds`` and this call's ``losses`` (list of float).
    """
    rank, world = init_distributed()
    device = default_device()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed, cfg.threads)

    dataset = ShardDataset(shard_dir, "train", variant, crop=cfg.crop, scale=cfg.scale, flip=cfg.flip,
                           augment=True, seed=cfg.seed)
    loader = make_loader(dataset, cfg.batch_size, sampling=cfg.sampling, seed=cfg.seed,
                         num_workers=cfg.workers, rank=rank, world_size=world)
    iters_per_epoch = len(loader)
    total = max(1, math.ceil(cfg.epochs * iters_per_epoch))

    model = build_model(cfg.arch, dataset.num_classes, pretrained=cfg.pretrained).to(device)
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                          else None)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay)
    settings = {k: v for k, v in record(cfg).items() if k != "variants"}  # which variants run is no setting of one
    meta = {"arch": cfg.arch, "variant": variant, "classes": dataset.classes, "num_classes": dataset.num_classes,
            "config": settings, "images": len(dataset)}

    ckpt_path = out_dir / "checkpoint.pt"
    start = 0
    ckpt = load_matching_checkpoint(ckpt_path, meta, log)
    if ckpt is not None:
        start = restore(ckpt, model, optimizer)
        log(f"resuming {variant} at iteration {start}/{total}")
    stop = total if max_iterations is None else min(total, start + max_iterations)
    live = metrics_logger(out_dir / "live", resume=start > 0) if rank == 0 else None
    losses = LossLog(variant, start, stop, total, cfg.log_every, live, log if rank == 0 and progress else None)

    it = start
    model.train()
    while it < stop:
        epoch, first = divmod(it, iters_per_epoch)
        loader.batch_sampler.set_epoch(epoch, start=first)  # mid-epoch: the batches from `first` on
        for batch in itertools.islice(loader, stop - it):
            lr = lr_at(cfg, it, total)
            loss, parts = train_step(model, optimizer, batch, lr, device, cfg)
            it += 1
            losses.add(it, loss, parts, lr)
            if rank == 0 and it % cfg.checkpoint_every == 0:
                save_checkpoint(ckpt_path, model, optimizer, it, meta)

    if rank == 0:
        save_checkpoint(ckpt_path, model, optimizer, it, meta)
        if it >= total:
            export_model(out_dir / "model.pt", model, meta)
        live.end()
    summary = {"variant": variant, "iterations": it, "total_iterations": total, "images": len(dataset),
               "seconds": losses.seconds(), "losses": losses.losses}
    if world > 1:
        dist.barrier()
    return summary

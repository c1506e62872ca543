"""Training one variant: the loop, exact resume, DDP.

``train(cfg, shard_dir, out_dir, variant)`` reads top to bottom like torchvision's
reference ``main()``: data, model, optimiser, resume, the loop, the export.  The number
of iterations is proportional to the images the variant uses (``cfg.epochs`` passes over
them), or -- ``cfg.equal_iterations`` -- that of ``ub`` for every variant, so that variants
differ in supervision only, not in training length.  A checkpoint (model, optimiser, iteration, RNG states, the curves so far;
``train/checkpoint.py``) is written atomically every ``cfg.checkpoint_every`` iterations
and at the end; rerunning the same command resumes from it when it was made from the same
label shards, params and code (else the run starts afresh and says why): the batch sampler
starts at the batch the run stopped at, so the same sequence of batches and losses
follows, no skipped batch is loaded, and the dvclive files get the same rows.  A NaN or
infinite loss stops the run (an InputError naming the iteration and the learning rate)
before anything more is written.  CUDA runs use bf16 autocast (``cfg.amp``) and
channels-last memory (faster convolutions on tensor cores); ``torchrun
--nproc_per_node N`` runs DistributedDataParallel (gloo on CPU, NCCL on CUDA).
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

from pipeline.core.config import TrainConfig
from pipeline.core.errors import InputError

from .checkpoint import (export_model, load_matching_checkpoint, load_model, nonfinite, restore, run_meta,
                         save_checkpoint, unwrap)
from .data import MixedBatchSampler, ShardDataset, make_loader
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


def total_iterations(cfg: TrainConfig, loader, rank: int = 0, world: int = 1) -> int:
    """Iterations of a run: ``cfg.epochs`` passes over ``loader`` (the variant's images), or
    with ``cfg.equal_iterations`` over ub's batches -- every training image of the shards
    once, one kind, so mixed and subset sampling batch it alike -- whether or not the images
    have the true masks ub itself would need."""
    per_epoch = len(loader)
    if cfg.equal_iterations:
        every = len(loader.dataset.reader.ids)
        per_epoch = len(MixedBatchSampler(every, cfg.batch_size, rank=rank, world_size=world))
    return max(1, math.ceil(cfg.epochs * per_epoch))


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


def metrics_logger(path):
    """A dvclive ``Live`` that only writes its files (``metrics.json``, ``plots/metrics/*.tsv``),
    starting from empty files: a resumed run writes its whole history again (``LossLog``).

    The stage declares those files in ``dvc.yaml`` itself.  dvclive's own DVC integration
    is switched off: in dvclive 3.49 it fails in a git repository without commits
    (``scm.get_rev``), runs ``dvc init`` in a git root that has no DVC, and appends
    entries to the enclosing ``dvc.yaml`` -- none of which a training run should do.
    dvclive's ``resume=True`` (append to the files there) is not used: ``dvc repro``
    deletes ``live/plots/metrics`` (an output) before it reruns the stage, so a resumed
    run would find nothing to append to.
    """
    from dvclive import Live

    class FilesOnlyLive(Live):
        def _init_dvc(self):
            self._save_dvc_exp = False

    return FilesOnlyLive(str(path), resume=False, save_dvc_exp=False, report=None, dvcyaml=False)


class LossLog:
    """The losses of a run of ``total`` iterations, and its curves.

    This call's losses are kept (``losses``).  Every ``every`` iterations and at the last
    one a row of the curves is made: the step, the mean loss and the mean of each loss
    part over the iterations since the previous row, and the learning rate; it is kept
    (``rows``) and logged to the dvclive ``live`` (rank 0).  ``state()`` -- the rows and
    the iterations since the last row -- goes into every checkpoint; a resumed run starts
    from it (``state``) and logs the rows again, so its dvclive files are those of an
    uninterrupted run, row for row.
    """

    def __init__(self, total: int, every: int, live=None, state: dict | None = None):
        self.total, self.every, self.live = total, every, live
        state = state or {"rows": [], "window": []}
        self.rows, self.window = [dict(r) for r in state["rows"]], [dict(w) for w in state["window"]]
        self.losses = []
        self.t0 = time.perf_counter()
        for row in self.rows:
            self._log(row)

    def add(self, it: int, loss: float, parts: dict, lr: float) -> None:
        """Record iteration ``it``'s ``loss`` (float), its named ``parts`` (floats) and ``lr``."""
        self.losses.append(loss)
        self.window.append({"loss": loss, **parts})
        if it % self.every == 0 or it == self.total:
            names = dict.fromkeys(name for w in self.window for name in w)  # "loss" first, then the parts met
            row = {"step": it}
            for name in names:
                row["train/loss" if name == "loss" else f"train/loss_{name}"] = \
                    float(np.mean([w[name] for w in self.window if name in w]))
            row["train/lr"] = lr
            self.rows.append(row)
            self.window = []
            self._log(row)

    def _log(self, row: dict) -> None:
        if self.live is not None:
            self.live.step = row["step"]
            for name, value in row.items():
                if name != "step":
                    self.live.log_metric(name, value)
            self.live.next_step()

    def state(self) -> dict:
        """The rows so far and the iterations since the last row (plain lists of dicts)."""
        return {"rows": self.rows, "window": self.window}

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
    if device.type == "cuda":
        image = image.contiguous(memory_format=torch.channels_last)
    bits = batch["bits"].to(device, non_blocking=True)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp and device.type == "cuda"):
        logits = model(image)
    loss, parts = mixseg_loss(logits.float(), bits, batch["kind"].to(device), batch["tags"].to(device),
                              reduction=cfg.reduction)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach()), {name: float(v) for name, v in parts.items()}


def finite_everywhere(loss: float, world: int, device: torch.device) -> bool:
    """Whether ``loss`` is finite on every rank (one all-reduce under DDP, so that all ranks stop together)."""
    ok = math.isfinite(loss)
    if world > 1:
        flag = torch.tensor([float(ok)], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        ok = bool(flag.item())
    return ok


def diverged(params_file, what: str, it: int, lr: float, cfg: TrainConfig, kept: int | None) -> InputError:
    """The error that stops a run whose loss or weights became non-finite at iteration ``it``."""
    rate = f"lr {lr:.3g}" + (f" of train.lr {cfg.lr:g}" if f"{lr:.3g}" != f"{cfg.lr:.3g}" else "")
    return InputError(params_file, f"train.lr: {what} at iteration {it} ({rate}): lower train.lr or raise "
                                   f"train.warmup; " + (f"the last good checkpoint (iteration {kept}) is kept"
                                                        if kept else "no checkpoint of this run was written"))


def train(cfg: TrainConfig, shard_dir, out_dir, variant: str, max_iterations: int | None = None,
          progress: bool = True, log=print, params_file="params.yaml") -> dict:
    """Train ``variant`` on the label shards in ``shard_dir``; write ``out_dir/model.pt``.

    Parameters
    ----------
    cfg : TrainConfig
        The ``train`` section of params.yaml.
    shard_dir, out_dir : str or os.PathLike
        The labels stage's shards; the folder for ``model.pt``, ``checkpoint.pt`` (resumed
        by the next call when made from the same label shards, params, code and variant)
        and the dvclive files in ``live/``.
    variant : str
        One of ``VARIANTS`` (``train/data.py``).
    max_iterations : int, optional
        Stop this call after so many iterations (the checkpoint is kept, the next call
        resumes) -- used by the resume test.
    progress : bool
        Show a progress bar with rate and ETA on stderr (rank 0).
    log : callable
        Takes each message (str): one line saying whether the run resumes or starts afresh, and why.
    params_file : str or os.PathLike
        Named by the error when the loss diverges.

    Returns
    -------
    dict
        ``variant``, ``iterations`` reached, ``total_iterations``, ``images``,
        ``seconds`` and this call's ``losses`` (list of float).

    Raises
    ------
    InputError
        The loss (or a weight) became NaN or infinite: nothing more is written, the last
        checkpoint stays as it was.
    """
    from tqdm import tqdm
    rank, world = init_distributed()
    device = default_device()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed, cfg.threads)

    dataset = ShardDataset(shard_dir, "train", variant, crop=cfg.crop, scale=cfg.scale, flip=cfg.flip,
                           augment=True, seed=cfg.seed, cache_mb=cfg.cache_mb)
    dataset.preload()   # decoded once, before the loader's workers fork and share them
    loader = make_loader(dataset, cfg.batch_size, sampling=cfg.sampling, seed=cfg.seed, num_workers=cfg.workers,
                         rank=rank, world_size=world, pixel_share=cfg.pixel_share)
    iters_per_epoch = len(loader)
    total = total_iterations(cfg, loader, rank, world)

    model = build_model(cfg.arch, dataset.num_classes, pretrained=cfg.pretrained).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                          else None)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay)
    meta = run_meta(cfg, variant, dataset, world)   # what the model is trained on

    ckpt_path = out_dir / "checkpoint.pt"
    ckpt = load_matching_checkpoint(ckpt_path, meta, log if rank == 0 else lambda m: None)  # logs why not
    start = restore(ckpt, model, optimizer) if ckpt is not None else 0
    if ckpt is not None and rank == 0:
        log(f"resuming {variant} at iteration {start}/{total} from {ckpt_path} (same label shards, params and code)"
            + (": the run is complete, exporting its model" if start >= total else ""))
    stop = total if max_iterations is None else min(total, start + max_iterations)
    live = metrics_logger(out_dir / "live") if rank == 0 else None
    losses = LossLog(total, cfg.log_every, live, state=ckpt["curves"] if ckpt is not None else None)
    kept = start or None   # the iteration of the last checkpoint known to be good

    def checkpoint(it: int) -> int:   # never of non-finite weights (DDP: every rank holds them, all stop)
        bad, values = nonfinite(unwrap(model).state_dict())
        if bad:
            raise diverged(params_file, f"{bad} of {values} weights became non-finite", it,
                           lr_at(cfg, it - 1, total), cfg, kept)
        if rank == 0:
            save_checkpoint(ckpt_path, model, optimizer, it, meta, losses.state())
        return it

    it = start
    model.train()
    bar = tqdm(total=total, initial=start, desc=variant, unit="it", dynamic_ncols=True,
               disable=not progress or rank != 0)
    with bar:   # shown before the first batch is loaded: its rate and ETA include loading and the first step
        while it < stop:
            epoch, first = divmod(it, iters_per_epoch)
            loader.batch_sampler.set_epoch(epoch, start=first)  # mid-epoch: the batches from `first` on
            for batch in itertools.islice(loader, stop - it):
                lr = lr_at(cfg, it, total)
                loss, parts = train_step(model, optimizer, batch, lr, device, cfg)
                if not finite_everywhere(loss, world, device):
                    what = f"loss became {loss}" if not math.isfinite(loss) else "loss became non-finite on a rank"
                    raise diverged(params_file, what, it + 1, lr, cfg, kept)
                it += 1
                losses.add(it, loss, parts, lr)
                bar.set_postfix_str(f"loss {loss:.4f}", refresh=False)
                bar.update()
                if it % cfg.checkpoint_every == 0:
                    kept = checkpoint(it)

    if it != kept:
        checkpoint(it)
    if rank == 0:
        live.end()   # the curves (live/plots/metrics) exist before model.pt does
        if it >= total:
            export_model(out_dir / "model.pt", model, meta)
    summary = {"variant": variant, "iterations": it, "total_iterations": total, "images": len(dataset),
               "seconds": losses.seconds(), "losses": losses.losses}
    if world > 1:
        dist.barrier()
    return summary

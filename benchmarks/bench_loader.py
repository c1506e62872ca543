"""Does the shard loader keep up with training?  Loader batches/s against training steps/s, one run.

Sections (data generated into ``--work``; nothing in the repository is written except ``--out``):

1. **default** -- the default run's data and settings (``params.yaml``: synthetic size, split,
   ``train`` section: arch, batch size, crop, scale, flip, sampling, loader workers): label
   shards are built by the real ucm and labels stages, then, in ``--passes`` interleaved rounds:

   * loader: seconds per batch over one whole epoch of ``make_loader`` (the trainer's loader,
     ``train.workers`` processes; 0 = in the main process) over the ``p+b+i`` variant:
     shard read + deflate decode, joint augmentation (scale, crop, flip), normalisation,
     collate.  Timed with the first ``--threads`` value as torch's thread count.
   * step: seconds per training step of the same network on batches already in memory
     (forward, the three-branch loss, backward, SGD step; no data loading, logging,
     checkpointing or evaluation), two warm-up steps, then the median of ``--steps`` steps,
     for each ``--threads`` value (``torch.set_num_threads``; default 1: on a shared 2-core
     machine two threads per process contend with the loader and with other processes).

   Reported: the median over rounds of each (best kept as ``*_best``), the ratio
   ``step / loader`` of the medians and the median of the per-round ratios.  The issue's
   target: loader >= 3x faster than a step (ratio >= 3), at the first ``--threads`` value.
2. **large** -- 500x375 synthetic images, 320x320 crops, batch 16 (the GPU setting of the issue):
   images/s one loader process delivers (no training; median epoch of ``--passes``), so the
   number of DataLoader workers a GPU needs at a given images/s follows; with ``--fcn8s`` also
   an FCN-8s training step on this CPU for scale.

Every figure is recorded with the CPU model (``lscpu``), the date and the load average
(``uptime``) at the start and the end.

Run from the repository root on an installed checkout::

    python benchmarks/bench_loader.py --quick --out /tmp/loader.json
    python benchmarks/bench_loader.py --out benchmarks/results/bench_loader_v3.json
    python benchmarks/bench_loader.py --threads 1 2 --out /tmp/loader_threads.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

# The typed-config API (load_config, record, with_workers) is reached through bench_pipeline's
# adapter block only.
from bench_pipeline import (build_index, fresh, load_average, load_config, log, machine_info, record,  # noqa: E402
                            with_workers, write_split)

from pipeline.sources import synthetic  # noqa: E402
from pipeline.labels.stage import run_labels  # noqa: E402
from pipeline.ucm.stage import run_ucm  # noqa: E402
from train.data import ShardDataset, make_loader  # noqa: E402
from train.losses import mixseg_loss  # noqa: E402
from train.networks import build_model  # noqa: E402

TARGET_RATIO = 3.0
RATIO_INCLUDES = (
    "step_ms / loader_ms_per_batch. step_ms: forward + mixseg loss + backward + SGD step of the train.arch "
    "network on in-memory batches (median of --steps steps after 2 warm-up steps, median over rounds), torch "
    "threads as stated. loader_ms_per_batch: one epoch of make_loader over p+b+i (HDF5 read + deflate decode + "
    "augmentation + normalisation + collate, train.workers processes) / batches, median over rounds. Both in "
    "the same process, rounds interleaved; excluded: optimizer/scheduler bookkeeping of the trainer, logging, "
    "checkpoints, evaluation.")


def train_settings(cfg) -> dict:
    """The ``train`` section as the plain settings this script uses."""
    t = cfg.train
    s = record(t)
    s["reduction"] = t.reduction
    return s


def make_shards(work: Path, n_train: int, height: int, width: int, cfg) -> Path:
    """Synthetic images -> index -> split (params ratio) -> UCMs -> label shards; returns the labels folder."""
    synthetic.generate(fresh(work / "raw"), num_train=n_train, num_val=0, height=height, width=width,
                       num_classes=cfg.synthetic.num_classes, seed=cfg.synthetic.seed, n_jobs=2, progress=False)
    img_json, ann_json, _ = build_index({"kind": "synthetic", "root": str(work / "raw")}, work / "source")
    write_split(work / "split.json", img_json, ann_json, ratio=cfg.split.ratio, seed=cfg.split.seed)
    run_ucm(img_json, fresh(work / "ucm"), with_workers(cfg.ucm, 2), progress=False)
    run_labels(img_json, ann_json, work / "split.json", work / "ucm", fresh(work / "labels"),
               with_workers(cfg.labels, 2), progress=False)
    return work / "labels"


def dataset(labels: Path, st: dict):
    crop = tuple(st["crop"]) if st["crop"] else None
    return ShardDataset(labels, "train", "p+b+i", crop=crop, scale=tuple(st["scale"]), flip=st["flip"], seed=0)


def loader_epoch_seconds_per_batch(loader, ds, epoch: int) -> tuple[float, int]:
    ds.set_epoch(epoch)
    t0 = time.perf_counter()
    n = sum(1 for _ in loader)
    return (time.perf_counter() - t0) / n, n


class Stepper:
    """A network, optimiser and a few in-memory batches; ``steps(n)`` -> seconds of each step."""

    def __init__(self, labels: Path, st: dict, arch: str, num_batches: int = 4):
        ds = dataset(labels, st)
        loader = make_loader(ds, st["batch_size"], sampling=st["sampling"])
        self.batches = []
        for b in loader:  # a few different batches: the loss branches differ in cost by kind
            self.batches.append(b)
            if len(self.batches) >= num_batches:
                break
        self.model = build_model(arch, ds.num_classes)
        self.model.train()
        self.opt = torch.optim.SGD(self.model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
        self.reduction = st["reduction"]
        self.k = 0

    def steps(self, n: int, warmup: int = 2) -> list[float]:
        times = []
        for i in range(n + warmup):
            b = self.batches[self.k % len(self.batches)]
            self.k += 1
            t0 = time.perf_counter()
            logits = self.model(b["image"])
            loss, _ = mixseg_loss(logits, b["bits"], b["kind"], b["tags"], reduction=self.reduction)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            if i >= warmup:
                times.append(time.perf_counter() - t0)
        return times


def default_section(labels: Path, st: dict, threads: list[int], rounds: int, steps: int) -> dict:
    ds = dataset(labels, st)
    loader = make_loader(ds, st["batch_size"], sampling=st["sampling"], num_workers=st["workers"])
    stepper = Stepper(labels, st, st["arch"])
    loader_s, step_s = [], {n: [] for n in threads}
    n_batches = 0
    load_before = load_average()
    for r in range(rounds):
        torch.set_num_threads(threads[0])
        per_batch, n_batches = loader_epoch_seconds_per_batch(loader, ds, r)
        loader_s.append(per_batch)
        order = threads if r % 2 == 0 else threads[::-1]
        for n in order:
            torch.set_num_threads(n)
            step_s[n].append(statistics.median(stepper.steps(steps)))
        log(f"section 1: round {r + 1}/{rounds}: loader {1e3 * per_batch:.1f} ms/batch, step "
            + ", ".join(f"{n} thr {1e3 * step_s[n][-1]:.1f} ms" for n in threads))
    loader_med = statistics.median(loader_s)
    out = {
        "arch": st["arch"], "batch_size": st["batch_size"], "crop": st["crop"], "loader_workers": st["workers"],
        "sampling": st["sampling"], "items": len(ds), "batches_per_epoch": n_batches, "rounds": rounds,
        "steps_per_round": steps, "loader_torch_threads": threads[0],
        "loader_ms_per_batch": round(1e3 * loader_med, 2),
        "loader_ms_per_batch_best": round(1e3 * min(loader_s), 2),
        "loader_ms_per_batch_rounds": [round(1e3 * v, 2) for v in loader_s],
        "loader_images_per_s": round(st["batch_size"] / loader_med, 1),
        "ratio_includes": RATIO_INCLUDES, "by_threads": {},
        "load_before": load_before, "load_after": load_average()}
    for n in threads:
        med = statistics.median(step_s[n])
        per_round = [s / lo for s, lo in zip(step_s[n], loader_s)]
        out["by_threads"][str(n)] = {
            "torch_threads": n, "step_ms": round(1e3 * med, 2), "step_ms_best_round": round(1e3 * min(step_s[n]), 2),
            "step_ms_rounds": [round(1e3 * v, 2) for v in step_s[n]],
            "step_images_per_s": round(st["batch_size"] / med, 1),
            "ratio_step_over_loader": round(med / loader_med, 2),
            "ratio_median_of_rounds": round(statistics.median(per_round), 2),
            "target_met": med / loader_med >= TARGET_RATIO}
    first = out["by_threads"][str(threads[0])]
    out["ratio_step_over_loader"] = first["ratio_step_over_loader"]
    out["target_met"] = first["target_met"]
    if len(threads) > 1:
        base = out["by_threads"][str(threads[0])]["step_ms"]
        for n in threads[1:]:
            out["by_threads"][str(n)][f"step_time_vs_{threads[0]}_threads"] = round(
                out["by_threads"][str(n)]["step_ms"] / base, 2)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", metavar="DIR", help="scratch folder (default: a temporary folder, removed)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "out" / "bench_loader.json"))
    ap.add_argument("--params", default=str(REPO / "params.yaml"))
    ap.add_argument("--images", type=int, default=None, help="training images of section 1 (default: params; "
                    "quick 120)")
    ap.add_argument("--large-images", type=int, default=None, help="500x375 images of section 2 (default 120, "
                    "quick 24)")
    ap.add_argument("--passes", type=int, default=None, help="interleaved rounds / loader epochs (default 5, "
                    "quick 2)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per round (default 20, quick 5)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1],
                    help="torch thread counts the step is timed with (default: 1); the first one is the "
                         "reported ratio's and the loader's")
    ap.add_argument("--fcn8s", action="store_true", help="also time an FCN-8s step at 320x320, batch 16, on CPU")
    ap.add_argument("--sections", default="12")
    ap.add_argument("--quick", action="store_true", help="smoke run: small data, 2 rounds of 5 steps")
    args = ap.parse_args(argv)
    passes = args.passes or (2 if args.quick else 5)
    steps = args.steps or (5 if args.quick else 20)

    cfg = load_config(args.params)
    st = train_settings(cfg)
    torch.set_num_threads(args.threads[0])
    tmp = None
    if args.work:
        work = Path(args.work).resolve()
        work.mkdir(parents=True, exist_ok=True)
    else:
        work = Path(tmp := tempfile.mkdtemp(prefix="bench_loader_"))
    t_start = time.perf_counter()
    result = {"machine": machine_info(), "torch": torch.__version__, "threads": args.threads,
              "quick": args.quick, "target_ratio": TARGET_RATIO, "train": st}
    try:
        if "1" in args.sections:
            syn = cfg.synthetic
            n = args.images or (120 if args.quick else syn.num_train)
            log(f"section 1: {n} synthetic images {syn.width}x{syn.height}, label shards")
            labels = make_shards(work / "default", n, syn.height, syn.width, cfg)
            log(f"section 1: loader and step, {passes} interleaved rounds, torch threads {args.threads}")
            result["default"] = default_section(labels, st, args.threads, passes, steps)
        if "2" in args.sections:
            n_large = args.large_images or (24 if args.quick else 120)
            log(f"section 2: {n_large} synthetic images 500x375, label shards")
            labels = make_shards(work / "large", n_large, 375, 500, cfg)
            big = dict(st, crop=[320, 320], batch_size=16, workers=0, scale=[0.5, 2.0])
            ds = dataset(labels, big)
            loader = make_loader(ds, 16, sampling=big["sampling"], num_workers=0)
            torch.set_num_threads(args.threads[0])
            per = [loader_epoch_seconds_per_batch(loader, ds, e)[0] for e in range(passes)]
            med = statistics.median(per)
            ips = 16 / med
            result["large"] = {"crop": [320, 320], "batch_size": 16, "items": len(ds), "epochs": passes,
                               "loader_ms_per_batch": round(1000 * med, 2),
                               "loader_ms_per_batch_best": round(1000 * min(per), 2),
                               "loader_images_per_s_one_process": round(ips, 1),
                               "workers_for_800_images_per_s": int(np.ceil(800 / ips))}
            if args.fcn8s:
                log("section 2: FCN-8s step on CPU")
                result["large"]["fcn8s_cpu_step_s"] = round(
                    statistics.median(Stepper(labels, big, "fcn8s", 1).steps(2, warmup=1)), 2)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    result["machine"]["load_end"] = load_average()
    result["total_seconds"] = round(time.perf_counter() - t_start, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("machine", "train")}, indent=1))
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()

"""Does the shard loader keep up with training?  Loader batches/s against training steps/s, one run.

Sections (data generated into ``--work``; nothing in the repository is written except ``--out``):

1. **default** -- the default run's data and settings (``params.yaml``: synthetic size, split,
   ``train`` section: arch, batch size, crop, scale, flip, threads, workers): label shards are
   built by the real ucm and labels stages, then

   * loader: seconds per batch of ``make_loader`` (the trainer's loader, its worker count) over
     the ``p+b+i`` variant, decode + joint augmentation + collate, best of ``--passes`` epochs;
   * step: seconds per training step of the same network on batches already in memory
     (forward, the three-branch loss, backward, SGD step), warmed up, median of ``--steps``.

   The issue's target: loader >= 3x faster than a step (``step / loader`` >= 3).
2. **large** -- 500x375 synthetic images, 320x320 crops, batch 16 (the GPU setting of the issue):
   images/s one loader process delivers (no training), so the number of DataLoader workers a
   GPU needs at a given images/s follows; with ``--fcn8s`` also an FCN-8s training step on this
   CPU for scale.

Run from the repository root on an installed checkout::

    python benchmarks/bench_loader.py --out benchmarks/results/bench_loader.json
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

from bench_pipeline import build_index, fresh, log, machine_info, write_split  # noqa: E402

from pipeline.sources import synthetic  # noqa: E402
from pipeline.labels.stage import label_params, run_labels  # noqa: E402
from pipeline.core.config import load_params  # noqa: E402
from pipeline.ucm.stage import run_ucm  # noqa: E402
from train.data import ShardDataset, make_loader  # noqa: E402
from train.fit import train_config  # noqa: E402
from train.losses import mixseg_loss  # noqa: E402
from train.networks import build_model  # noqa: E402

TARGET_RATIO = 3.0


def make_shards(work: Path, n_train: int, height: int, width: int, params: dict) -> Path:
    """Synthetic images -> index -> split (params ratio) -> UCMs -> label shards; returns the labels folder."""
    syn = dict(params.get("synthetic") or {})
    synthetic.generate(fresh(work / "raw"), num_train=n_train, num_val=0, height=height, width=width,
                       num_classes=int(syn.get("num_classes", 12)), seed=int(syn.get("seed", 0)), n_jobs=2,
                       progress=False)
    img_json, ann_json, _ = build_index({"kind": "synthetic", "root": str(work / "raw")}, work / "source")
    split = dict(params.get("split") or {})
    write_split(work / "split.json", img_json, ann_json, ratio=split.get("ratio") or (1, 5, 10),
                seed=int(split.get("seed", 0)))
    ucm = {"method": "mixseg", "scales": [1.0, 2.0, 4.0], "shard_size": 200, "workers": 2}
    ucm.update({k: v for k, v in (params.get("ucm") or {}).items() if k in ("method", "scales", "shard_size")})
    run_ucm(img_json, fresh(work / "ucm"), ucm, progress=False)
    lab = label_params(params.get("labels") or {})
    lab["workers"] = 2
    run_labels(img_json, ann_json, work / "split.json", work / "ucm", fresh(work / "labels"), lab, progress=False)
    return work / "labels"


def loader_seconds_per_batch(labels: Path, cfg: dict, passes: int) -> tuple[float, int, int]:
    """Best-of-``passes`` seconds per batch over whole epochs; also (batches, images) per epoch."""
    crop = tuple(cfg["crop"]) if cfg["crop"] else None
    ds = ShardDataset(labels, "train", "p+b+i", crop=crop, scale=tuple(cfg["scale"]), flip=cfg["flip"], seed=0)
    loader = make_loader(ds, cfg["batch_size"], sampling=cfg["sampling"], num_workers=cfg["workers"])
    best = float("inf")
    for epoch in range(passes):
        ds.set_epoch(epoch)
        t0 = time.perf_counter()
        n = sum(1 for _ in loader)
        best = min(best, (time.perf_counter() - t0) / n)
    return best, n, len(ds)


def step_seconds(labels: Path, cfg: dict, arch: str, steps: int, num_batches: int = 4) -> float:
    """Median seconds of one training step (forward, loss, backward, SGD) on in-memory batches."""
    crop = tuple(cfg["crop"]) if cfg["crop"] else None
    ds = ShardDataset(labels, "train", "p+b+i", crop=crop, scale=tuple(cfg["scale"]), flip=cfg["flip"], seed=0)
    loader = make_loader(ds, cfg["batch_size"], sampling=cfg["sampling"])
    batches = []
    for b in loader:  # one batch of each kind, then repeats: the loss branches differ in cost
        batches.append(b)
        if len(batches) >= num_batches:
            break
    model = build_model(arch, ds.num_classes)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    times = []
    for k in range(steps + 2):
        b = batches[k % len(batches)]
        t0 = time.perf_counter()
        logits = model(b["image"])
        loss, _ = mixseg_loss(logits, b["bits"], b["kind"], b["tags"], reduction=cfg["reduction"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if k >= 2:  # two warm-up steps
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", metavar="DIR", help="scratch folder (default: a temporary folder, removed)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "out" / "bench_loader.json"))
    ap.add_argument("--params", default=str(REPO / "params.yaml"))
    ap.add_argument("--images", type=int, default=None, help="training images of section 1 (default: params)")
    ap.add_argument("--large-images", type=int, default=120, help="500x375 images of section 2")
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--fcn8s", action="store_true", help="also time an FCN-8s step at 320x320, batch 16, on CPU")
    ap.add_argument("--sections", default="12")
    args = ap.parse_args(argv)

    params = load_params(args.params)
    cfg = train_config(params.get("train"))
    torch.set_num_threads(int(cfg["threads"]) or torch.get_num_threads())
    tmp = None
    if args.work:
        work = Path(args.work).resolve()
        work.mkdir(parents=True, exist_ok=True)
    else:
        work = Path(tmp := tempfile.mkdtemp(prefix="bench_loader_"))
    result = {"machine": machine_info(), "torch": torch.__version__, "threads": torch.get_num_threads(),
              "target_ratio": TARGET_RATIO}
    try:
        if "1" in args.sections:
            syn = params.get("synthetic") or {}
            n = args.images or int(syn.get("num_train", 600))
            log(f"section 1: {n} synthetic images {syn.get('width', 160)}x{syn.get('height', 120)}, label shards")
            labels = make_shards(work / "default", n, int(syn.get("height", 120)), int(syn.get("width", 160)),
                                 params)
            log("section 1: loader")
            per_batch, n_batches, n_items = loader_seconds_per_batch(labels, cfg, args.passes)
            log("section 1: training step")
            step = step_seconds(labels, cfg, cfg["arch"], args.steps)
            result["default"] = {
                "arch": cfg["arch"], "batch_size": cfg["batch_size"], "crop": cfg["crop"], "workers": cfg["workers"],
                "sampling": cfg["sampling"], "items": n_items, "batches_per_epoch": n_batches,
                "loader_ms_per_batch": round(1000 * per_batch, 2), "step_ms": round(1000 * step, 2),
                "loader_images_per_s": round(cfg["batch_size"] / per_batch, 1),
                "step_images_per_s": round(cfg["batch_size"] / step, 1),
                "ratio_step_over_loader": round(step / per_batch, 2),
                "target_met": step / per_batch >= TARGET_RATIO}
        if "2" in args.sections:
            log(f"section 2: {args.large_images} synthetic images 500x375, label shards")
            labels = make_shards(work / "large", args.large_images, 375, 500, params)
            big = dict(cfg, crop=[320, 320], batch_size=16, workers=0, scale=[0.5, 2.0])
            per_batch, n_batches, n_items = loader_seconds_per_batch(labels, big, args.passes)
            ips = 16 / per_batch
            result["large"] = {"crop": [320, 320], "batch_size": 16, "items": n_items,
                               "loader_ms_per_batch": round(1000 * per_batch, 2),
                               "loader_images_per_s_one_process": round(ips, 1),
                               "workers_for_800_images_per_s": int(np.ceil(800 / ips))}
            if args.fcn8s:
                log("section 2: FCN-8s step on CPU")
                result["large"]["fcn8s_cpu_step_s"] = round(step_seconds(labels, big, "fcn8s", 2, 1), 2)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1))
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()

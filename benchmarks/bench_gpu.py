"""GPU readiness: training-step images/s against loader images/s at 320 px, one run.

Needs a CUDA device for the step figures (the loader figures run anywhere).  Sections:

1. **step** -- ``train.fit.train_step`` (forward, the three-branch loss, backward, SGD step;
   what training runs) of FCN-8s and EfficientNet-Lite0 + LR-ASPP on batches already on the
   GPU, batch ``--batch`` of 320x320 crops from real label shards, in fp32 and in bf16 autocast
   (``train.amp``; channels-last memory on CUDA either way): 5 warm-up steps, then the median
   of ``--rounds`` timings of ``--steps`` steps (``torch.cuda.synchronize`` around each).
2. **loader** -- the trainer's loader (``train.data.make_loader``: HDF5 read of the label,
   the photo, scale, crop, flip, normalisation, collate) over whole epochs of the same shards:
   images/s in one process (``num_workers=0``) *warm* (photos decoded once by
   ``ShardDataset.preload``, as the trainer does; the preload's seconds reported apart) and
   *cold* (``cache_mb 0``: every photo decoded every time), and warm with each of ``--workers``
   processes (their second epoch).
3. **baseline** -- a plain PIL + numpy loader of the same photos as PNG files (image + class-map
   PNG: decode, the same random scale, crop and flip, normalisation, int64 label), one process,
   interleaved ``--rounds`` times with the loader's one-process epochs (the issue's target:
   >= 3x); medians of the rounds and of the per-round ratios.

Reported: images/s of each, the ratio loader (all workers) / step, and the loader workers one
GPU step needs.  Run (the shards from ``benchmarks/camvid_table.py``'s ``--work``)::

    python benchmarks/bench_gpu.py --labels /tmp/camvid_table/<hash>/labels \\
        --photos ../shared/data/camvid/train --maps ../shared/data/camvid/trainannot --out /tmp/bench_gpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.core.config import TrainConfig  # noqa: E402
from train.data import MEAN, STD, ShardDataset, make_loader  # noqa: E402
from train.fit import train_step  # noqa: E402
from train.networks import build_model  # noqa: E402


def loader_epoch(labels, crop, batch, workers, cache_mb, preload, epochs=1) -> dict:
    """The trainer's loader over whole epochs of one dataset: images/s of each epoch (epoch 0
    without its first batch when workers start), and the seconds ``preload`` took."""
    ds = ShardDataset(labels, "train", "p+b+i", crop=crop, scale=(0.75, 1.25), flip=True, augment=True, seed=0,
                      cache_mb=cache_mb)
    t0 = time.perf_counter()
    kept = ds.preload() if preload else 0
    preload_s = time.perf_counter() - t0
    loader = make_loader(ds, batch, sampling="mixed", seed=0, num_workers=workers)
    rates = []
    for e in range(epochs):
        ds.set_epoch(e)
        it = iter(loader)
        if e == 0 and workers:
            next(it)
        t0, n = time.perf_counter(), 0
        for b in it:
            n += b["image"].shape[0]
        rates.append(n / (time.perf_counter() - t0))
    return {"images_per_s": rates, "preload_s": preload_s, "kept": kept, "images": len(ds)}


def pil_baseline_rate(photos, maps, crop, n, seed=0) -> float:
    """Images/s of a plain PIL + numpy loader: decode PNG image and class map, random scale
    (bilinear / nearest), crop (padded when smaller), flip, normalise, int64 label."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    files = sorted(p for p in Path(photos).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[:n]
    mean, std = np.asarray(MEAN, np.float32) * 255, np.asarray(STD, np.float32) * 255
    t0 = time.perf_counter()
    for f in files:
        image = Image.open(f).convert("RGB")
        label = Image.open(Path(maps) / f"{f.stem}.png")
        s = rng.uniform(0.75, 1.25)
        size = (round(image.width * s), round(image.height * s))
        image, label = image.resize(size, Image.BILINEAR), label.resize(size, Image.NEAREST)
        x, y = np.asarray(image, np.float32), np.asarray(label, np.int64)
        ch, cw = crop
        ph, pw = max(ch - x.shape[0], 0), max(cw - x.shape[1], 0)
        if ph or pw:
            x = np.pad(x, ((0, ph), (0, pw), (0, 0)))
            y = np.pad(y, ((0, ph), (0, pw)), constant_values=255)
        top, left = rng.integers(0, x.shape[0] - ch + 1), rng.integers(0, x.shape[1] - cw + 1)
        x, y = x[top:top + ch, left:left + cw], y[top:top + ch, left:left + cw]
        if rng.random() < 0.5:
            x, y = x[:, ::-1], y[:, ::-1]
        x = torch.from_numpy(np.ascontiguousarray(((x - mean) / std).transpose(2, 0, 1)))
        y = torch.from_numpy(np.ascontiguousarray(y))
    return len(files) / (time.perf_counter() - t0)


def step_rate(arch, batch_data, num_classes, amp, steps, rounds) -> dict:
    device = torch.device("cuda")
    torch.manual_seed(0)
    model = build_model(arch, num_classes).to(device).to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    cfg = TrainConfig(amp=amp)
    for _ in range(5):
        train_step(model, opt, batch_data, 1e-3, device, cfg)
    torch.cuda.synchronize()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(steps):
            train_step(model, opt, batch_data, 1e-3, device, cfg)
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) / steps)
    n = batch_data["image"].shape[0]
    return {"ms_per_step": round(1000 * statistics.median(times), 2), "images_per_s": round(n / statistics.median(times), 1),
            "rounds_ms": [round(1000 * t, 2) for t in times]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--labels", required=True)
    ap.add_argument("--photos", required=True, help="folder of the PNG photos (baseline loader)")
    ap.add_argument("--maps", required=True, help="folder of their class-map PNGs")
    ap.add_argument("--crop", type=int, nargs=2, default=[320, 320])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--workers", type=int, nargs="+", default=[4, 8, 14])
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    crop = tuple(args.crop)
    out = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                       "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                       "load_start": os.getloadavg()},
           "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "crop": list(crop), "batch": args.batch,
           "includes": {"step": "train.fit.train_step: host->GPU copy of the batch, forward, mixseg loss, backward, "
                                "SGD step; channels-last model and input; batch already in host memory",
                        "loader": "train.data.make_loader over label shards, whole epochs of every training "
                                  "photo: HDF5 read + CRC of the label, the photo decoded (cold) or taken from "
                                  "the preloaded cache (warm; preload time reported apart), scale 0.75-1.25, "
                                  "crop, flip, normalisation, collate",
                        "baseline": "PIL decode of PNG image + class map, same scale/crop/flip, numpy "
                                    "normalisation, torch tensors; one process"}}
    # loader, one process, and the baseline, interleaved --rounds times over the same photos:
    # cold = every photo decoded every time (cache_mb 0), warm = photos decoded once by preload
    cold, warm, base, pre = [], [], [], []
    for _ in range(args.rounds):
        cold.append(loader_epoch(args.labels, crop, args.batch, 0, 0, False)["images_per_s"][0])
        w = loader_epoch(args.labels, crop, args.batch, 0, TrainConfig.cache_mb, True)
        warm.append(w["images_per_s"][0])
        pre.append(w["preload_s"])
        base.append(pil_baseline_rate(args.photos, args.maps, crop, w["images"]))
    med = statistics.median
    out["images"] = w["images"]
    out["preload_s"] = round(med(pre), 2)
    out["loader_one_process_images_per_s"] = round(med(warm), 1)
    out["loader_cold_one_process_images_per_s"] = round(med(cold), 1)
    out["baseline_one_process_images_per_s"] = round(med(base), 1)
    out["loader_over_baseline"] = round(med(o / b for o, b in zip(warm, base)), 2)
    out["loader_cold_over_baseline"] = round(med(o / b for o, b in zip(cold, base)), 2)
    out["rounds"] = {"warm": [round(x, 1) for x in warm], "cold": [round(x, 1) for x in cold],
                     "baseline": [round(x, 1) for x in base]}
    print(json.dumps({k: out[k] for k in ("loader_one_process_images_per_s", "loader_cold_one_process_images_per_s",
                                          "baseline_one_process_images_per_s", "loader_over_baseline",
                                          "loader_cold_over_baseline", "preload_s")}), flush=True)
    out["loader_workers_images_per_s"] = {}
    for nw in args.workers:
        r = loader_epoch(args.labels, crop, args.batch, nw, TrainConfig.cache_mb, True, epochs=2)
        out["loader_workers_images_per_s"][nw] = round(r["images_per_s"][1], 1)
        print(f"loader {nw} workers: {out['loader_workers_images_per_s'][nw]} img/s (second epoch)", flush=True)
    if torch.cuda.is_available():
        ds = ShardDataset(args.labels, "train", "p+b+i", crop=crop, scale=(0.75, 1.25), flip=True, seed=0)
        batch_data = next(iter(make_loader(ds, args.batch, sampling="mixed", seed=0)))
        out["step"] = {}
        best_loader = max(out["loader_workers_images_per_s"].values())
        for arch in ("fcn8s", "efficientnet_lite0"):
            for amp in (False, True):
                key = f"{arch} {'bf16' if amp else 'fp32'}"
                r = step_rate(arch, batch_data, ds.num_classes, amp, args.steps, args.rounds)
                r["loader_over_step"] = round(best_loader / r["images_per_s"], 2)
                r["workers_needed"] = int(np.ceil(r["images_per_s"] / max(out["loader_one_process_images_per_s"], 1e-9)))
                out["step"][key] = r
                print(key, r, flush=True)
    out["load_end"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

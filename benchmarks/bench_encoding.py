"""Label encoding, format 2 (a bitset per pixel) against format 3 (class ids + class sets), side by
side in one run (issue #13).

1. **maps**: realistic 500x375 box-label maps -- a background, 2-5 objects (ellipses and blobs
   of random classes, overlapping, so some pixels are soft: several classes), an uncertain
   (ignored) ring around each object, as the ucm strategy leaves them -- written into one label
   shard per format and class count (``--maps`` maps each).  Reported per map: the stored bytes
   of the compressed map (HDF5 chunk, deflate 1) and of the whole shard but the image bytes, and
   maps/s read through ``ShardReader``: ``label`` (format 2: the bitsets as stored; format 3:
   decoded back into bitsets, for callers that want them), and ``label_map`` (format 3's
   representation, what the trainer reads; for format 2 converted from the bitsets).  Format 2
   holds at most 64 classes: at 81 classes only format 3 is measured.
2. **loss**: forward + backward of the box/pixel loss on (8, C+1, 320, 320) float32 logits with
   C+1 = 21 and 81, targets like those maps (about 2 % soft and 10 % ignored pixels):
   ``class_set_loss`` (format 3's class-set targets, the trainer's loss) and for scale a
   dense-target loss (an (N, C+1, H, W) float target made from the classes each time, the usual
   soft cross-entropy).  1 torch thread, median of ``--repeats``.  (The former int64-bitset loss
   of format 2 is gone from ``train.losses``; results files made before it went also time it.)

The formats (and the losses) are timed in turn within each round, after a warm-up round, so a
change of the machine's load hits them alike.

The machine's load (``/proc/loadavg``) is recorded before and after, and the CPU model.

    python benchmarks/bench_encoding.py --out benchmarks/results/bench_encoding.json
    python benchmarks/bench_encoding.py --quick --out /tmp/enc.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.core.shards import (ShardReader, bitset_dtype, encode_bitsets, write_label_shard)  # noqa: E402
from train.losses import bits_to_target, class_set_loss  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import load_average, machine_info  # noqa: E402

H, W = 375, 500


def box_label_map(rng, num_classes: int, h=H, w=W) -> np.ndarray:
    """(h, w) uint64 bitsets like a box strategy's: background 1, objects their class bit, overlaps
    soft, an ignored (0) ring around each object."""
    bits = np.ones((h, w), np.uint64)
    conf = np.zeros((h, w), np.uint64)
    ring = np.zeros((h, w), bool)
    yy, xx = np.mgrid[:h, :w]
    for _ in range(int(rng.integers(2, 6))):
        c = int(rng.integers(1, num_classes))
        cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
        ry, rx = rng.uniform(0.08, 0.3) * h, rng.uniform(0.08, 0.3) * w
        wobble = 1 + 0.15 * np.sin(np.arctan2(yy - cy, xx - cx) * int(rng.integers(2, 6)))
        d = np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2) / wobble
        conf[d <= 1] |= np.uint64(1) << np.uint64(c)
        ring |= (d > 1) & (d <= 1.12)
    bits = np.where(conf != 0, conf, np.where(ring, np.uint64(0), bits))
    return bits


def bench_maps(num_classes: int, n: int, seed: int, work: Path, reads: int) -> dict:
    rng = np.random.default_rng(seed)
    maps = [box_label_map(rng, num_classes) for _ in range(n)]
    soft = float(np.mean([(np.bitwise_count(m) > 1).mean() for m in maps]))
    ignored = float(np.mean([(m == 0).mean() for m in maps]))
    classes = ["background"] + [f"c{k}" for k in range(1, num_classes)]
    out = {"classes": num_classes, "maps": n, "soft_pixel_share": round(soft, 4),
           "ignored_pixel_share": round(ignored, 4)}
    readers, info = {}, {}
    for version in (2, 3):
        if version == 2 and num_classes > 64:
            out["format2"] = "n/a: a bitset holds at most 64 classes"
            continue
        if version == 2:
            labels = [m.astype(bitset_dtype(num_classes)) for m in maps]
        else:
            labels = [encode_bitsets(m, num_classes) for m in maps]
        recs = [{"id": f"im{k:04d}", "kind": "box", "height": H, "width": W, "tags": [1],
                 "image_bytes": b"", "label": lab} for k, lab in enumerate(labels)]
        path = work / f"v{version}-{num_classes}" / "labels-train-00000.h5"
        write_label_shard(path, recs, classes, "train", version=version)
        with h5py.File(path, "r") as f:
            chunk = [f["label"][k].id.get_storage_size() for k in f["label"]]
            dtypes = sorted({str(f["label"][k].dtype) for k in f["label"]})
        readers[version] = ShardReader(path)
        info[version] = {"map_dtype": dtypes, "stored_bytes_per_map": round(float(np.mean(chunk)), 1),
                         "shard_bytes_per_map": round(path.stat().st_size / n, 1)}
    # every (format, method) pass in turn, ``reads`` rounds: the formats see the same load
    passes = [(v, name) for v in readers for name in ("label", "label_map")]
    times = {p: [] for p in passes}
    for round_ in range(reads + 1):
        for v, name in passes:
            read, ids = getattr(readers[v], name), readers[v].ids
            t0 = time.perf_counter()
            for i in ids:
                read(i)
            if round_:   # round 0 warms up
                times[(v, name)].append(time.perf_counter() - t0)
    for v, r in readers.items():
        r.close()
        out[f"format{v}"] = {**info[v], **{f"maps_per_s_{name}": round(n / statistics.median(times[(v, name)]), 1)
                                           for name in ("label", "label_map")}}
    return out


def dense_loss(logits, target_dense, labelled):
    """The usual soft cross-entropy from an (N, C+1, H, W) float target (rows sum to 1)."""
    logp = torch.log_softmax(logits, 1)
    per = -(target_dense * logp).sum(1)
    return per.sum() / labelled.sum().clamp_min(1)


def bench_loss(num_classes: int, repeats: int, seed: int, n=8, size=320) -> dict:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    bits = np.stack([box_label_map(rng, min(num_classes, 64), size, size) for _ in range(n)])
    out = {"logits": [n, num_classes, size, size],
           "soft_pixel_share": round(float((np.bitwise_count(bits) > 1).mean()), 4),
           "ignored_pixel_share": round(float((bits == 0).mean()), 4)}
    bits_t = torch.from_numpy(bits.view(np.int64))
    target = bits_to_target(bits_t, min(num_classes, 64))
    if num_classes > 64:   # spread a 64-class map's classes over all C+1: class k -> round(k (C) / 63), ascending
        lut = torch.round(torch.arange(64) * ((num_classes - 1) / 63)).long()
        target = type(target)(torch.where(target.labels >= 0, lut[target.labels.clamp_min(0)], target.labels),
                              lut[target.sets], target.offsets)
    logits = torch.randn(n, num_classes, size, size)

    dense = torch.zeros(n, num_classes, size, size)
    labels = target.labels

    def make_dense():
        d = dense.zero_()
        single = labels >= 0
        d.scatter_(1, labels.clamp_min(0).unsqueeze(1), single.unsqueeze(1).float())
        soft = (labels <= -2).nonzero(as_tuple=True)
        j = -2 - labels[soft]
        for k in range(len(target.offsets) - 1):
            sel = j == k
            cls = target.sets[target.offsets[k]:target.offsets[k + 1]]
            for c in cls.tolist():
                d[soft[0][sel], c, soft[1][sel], soft[2][sel]] = 1.0 / len(cls)
        return d

    fns = {"format3_class_set_loss": lambda x: class_set_loss(x, target),
           "dense_target_loss": lambda x: dense_loss(x, make_dense(), labels != -1)}
    times = {k: [] for k in fns}
    for rep in range(repeats + 1):   # the two in turn each repeat: the same load; repeat 0 warms up
        for name, fn in fns.items():
            x = logits.clone().requires_grad_()
            t0 = time.perf_counter()
            fn(x).backward()
            if rep:
                times[name].append(time.perf_counter() - t0)
    for name, t in times.items():
        out[name] = {"median_s": round(statistics.median(t), 4), "min_s": round(min(t), 4), "repeats": repeats}
    x = logits.clone()   # the same value, as a check
    out["max_abs_diff_class_set_dense"] = float((class_set_loss(x, target) - dense_loss(x, make_dense(),
                                                                                        labels != -1)).abs())
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="benchmarks/results/bench_encoding.json")
    ap.add_argument("--maps", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--reads", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="10 maps, 3 repeats, (2, C+1, 160, 160) logits")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    n_maps, repeats = (10, 3) if args.quick else (args.maps, args.repeats)
    result = {"what": "label encoding: format 2 (bitsets) vs format 3 (class ids + class sets)",
              "machine": machine_info(), "torch_threads": 1, "map_size": [H, W]}
    with tempfile.TemporaryDirectory() as d:
        result["maps"] = [bench_maps(c, n_maps, 7, Path(d), args.reads) for c in (21, 81)]
    result["loss"] = [bench_loss(c, repeats, 3, *((2, 160) if args.quick else (8, 320))) for c in (21, 81)]
    result["load_end"] = load_average()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

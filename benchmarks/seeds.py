"""The results table over several training seeds: mean ± std per variant.

Trains and evaluates every variant of ``params.yaml`` (``train`` section) on the label shards
of the last ``dvc repro`` once per seed (the split and the labels stay fixed: only the network
initialisation, the batch order and the augmentation change), then prints and writes the
paper's Table 2 with mean ± sample std over the seeds.  Models go to ``--work`` (a scratch
folder), never to ``models/``.

    python benchmarks/seeds.py --seeds 0 1 2 --out benchmarks/results/seeds.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.core.config import load_config, record  # noqa: E402
from train.evaluate import evaluate_model  # noqa: E402
from train.fit import load_model, train  # noqa: E402
from train.report import METRICS, VARIANT_LABELS  # noqa: E402


def table(runs: dict, arch: str) -> str:
    lines = ["| method | annotation | " + " | ".join(METRICS) + " | seeds |",
             "|---|---|" + "---|" * (len(METRICS) + 1)]
    for v, per_seed in runs.items():
        cells = []
        for m in METRICS:
            x = np.array([r[m] for r in per_seed.values()])
            cells.append(f"{x.mean():.2f} ± {x.std(ddof=1) if len(x) > 1 else 0:.2f}")
        lines.append(f"| {arch}-{v} | {VARIANT_LABELS.get(v, v)} | " + " | ".join(cells) + f" | {len(per_seed)} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", default=str(REPO / "params.yaml"))
    ap.add_argument("--labels", default=str(REPO / "data" / "labels"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=None)
    ap.add_argument("--work", default=str(REPO / "benchmarks" / "out" / "seeds"))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "out" / "seeds.json"))
    ap.add_argument("--with-eval", metavar="DIR", help="also count the metrics of the last dvc repro "
                    "(e.g. metrics/eval, trained with train.seed of params) as one more seed")
    args = ap.parse_args(argv)

    cfg = load_config(args.params).train
    variants = args.variants or list(cfg.variants)
    runs = {v: {} for v in variants}
    seconds = {}
    if args.with_eval:
        for v in variants:
            m = json.loads((Path(args.with_eval) / f"{v}.json").read_text())
            runs[v][cfg.seed] = {k: m[k] for k in METRICS}
    for seed in args.seeds:
        for v in variants:
            out = Path(args.work) / f"seed{seed}" / v
            t0 = time.perf_counter()
            train(dataclasses.replace(cfg, seed=seed), args.labels, out, v, progress=False, log=lambda m: None)
            model, _ = load_model(out / "model.pt")
            metrics, _ = evaluate_model(model, args.labels)
            seconds[f"{v}/seed{seed}"] = round(time.perf_counter() - t0, 1)
            runs[v][seed] = {k: metrics[k] for k in METRICS}
            print(f"seed {seed} {v}: " + "  ".join(f"{k} {metrics[k]:.2f}" for k in METRICS), flush=True)
    text = table(runs, cfg.arch)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"train": record(cfg), "seeds": args.seeds, "runs": runs, "seconds": seconds,
                                          "table": text}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""The paper's Table 6 and Fig. 8 analogs: box strategy -> label quality and trained mIU.

For each strategy (default: ``quality.strategies`` of ``params.yaml``, which holds ``ucm``,
``raw_box``, ``grabcut``, ``hard``, the single thresholds ``ucm_t0.25/0.5/0.75`` and the paper's rule
``ucm_paper_a0.3``) it rebuilds the label shards of the last ``dvc repro`` with
``labels.strategy`` set to it (same index, split and UCMs), trains the ``p+b`` variant (the
variant the box labels change) with the ``train`` section of ``params.yaml``, evaluates it on the
val set, and joins the label quality of ``metrics/label_quality.json``.  Scratch output goes to
``--work``; nothing in ``data/`` or ``models/`` is touched.

    dvc repro && python benchmarks/ablation.py --out benchmarks/results/ablation.json
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

from pipeline.core.config import ConfigError, load_config, record  # noqa: E402
from pipeline.labels.stage import run_labels  # noqa: E402
from train.evaluate import evaluate_model  # noqa: E402
from train.fit import load_model, train  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", default=str(REPO / "params.yaml"))
    ap.add_argument("--data", default=str(REPO / "data"), help="the data folder of the last dvc repro")
    ap.add_argument("--quality", default=str(REPO / "metrics" / "label_quality.json"))
    ap.add_argument("--strategies", nargs="+", default=None)
    ap.add_argument("--variant", default="p+b")
    ap.add_argument("--seeds", type=int, nargs="+", default=None,
                    help="training seeds (default: train.seed); the table gives mean ± std over them")
    ap.add_argument("--reuse", action="store_true",
                    help="keep label shards and models already in --work (a rerun with more seeds)")
    ap.add_argument("--work", default=str(REPO / "benchmarks" / "out" / "ablation"))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "out" / "ablation.json"))
    args = ap.parse_args(argv)

    params = load_config(args.params)
    strategies = args.strategies or list(params.quality.strategies)
    try:  # the labels section with each strategy: a bad name is refused here, before anything runs
        labels = {s: dataclasses.replace(params.labels, strategy=s) for s in strategies}
    except ConfigError as e:
        ap.error(f"--strategies: {e.reason}")
    quality = json.loads(Path(args.quality).read_text()) if Path(args.quality).exists() else {}
    data, work = Path(args.data), Path(args.work)
    cfg = params.train
    seeds = args.seeds or [cfg.seed]
    rows = {}
    for s in strategies:
        t0 = time.perf_counter()
        labels_dir = work / s / "labels"
        if not (args.reuse and labels_dir.exists()):
            run_labels(data / "source" / "images.json", data / "source" / "annotations.json", data / "split.json",
                       data / "ucm", labels_dir, labels[s], progress=False)
        per_seed = {}
        for seed in seeds:
            out = work / s / ("model" if seed == cfg.seed else f"model-seed{seed}")
            if not (args.reuse and (out / "model.pt").exists()):
                train(dataclasses.replace(cfg, seed=seed), labels_dir, out, args.variant, progress=False,
                      log=lambda m: None)
            per_seed[seed] = evaluate_model(load_model(out / "model.pt")[0], labels_dir)[0]["mIU"]
        q = quality.get(s, {})
        mious = np.array(list(per_seed.values()))
        rows[s] = {"label_miou": q.get("miou"), "box_ignored": q.get("box_ignored"),
                   "ms_per_box": 1000 * q["seconds_per_box"] if "seconds_per_box" in q else None,
                   "mIU": float(mious.mean()), "mIU_std": float(mious.std(ddof=1)) if len(mious) > 1 else 0.0,
                   "mIU_per_seed": per_seed, "seconds": round(time.perf_counter() - t0, 1)}
        print(f"{s}: label mIoU {q.get('miou')}  trained {args.variant} mIU {mious.mean():.2f} "
              f"({', '.join(f'{v:.2f}' for v in mious)})", flush=True)
    lines = [f"| box strategy | label mIoU (box subset) | box pixels ignored | trained {args.variant} mIU "
             f"({len(seeds)} seed{'s' if len(seeds) > 1 else ''}) |",
             "|---|---|---|---|"]
    for s, r in rows.items():
        lm = f"{r['label_miou']:.2f}" if r["label_miou"] is not None else "-"
        ig = f"{r['box_ignored']:.1f} %" if r["box_ignored"] is not None else "-"
        sd = f" ± {r['mIU_std']:.2f}" if len(seeds) > 1 else ""
        lines.append(f"| `{s}` | {lm} | {ig} | {r['mIU']:.2f}{sd} |")
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"variant": args.variant, "train": record(cfg), "seeds": seeds, "rows": rows,
                                          "table": text}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

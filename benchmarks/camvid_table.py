"""The paper's table on real photos: every variant of one or more configs, over several seeds.

For each config (e.g. ``configs/camvid-lite0-1-5-10.yaml``) the pipeline runs once into
``--work`` through the stages' own functions (source -> split -> ucm -> labels; configs that
differ only in their ``train`` section share it), then every (config, seed, variant) is
trained and evaluated on the config's validation photos (full size), ``--jobs`` at a time in
separate processes.  ``--equal`` adds each variant at equal iterations (ub's schedule:
``train.equal_iterations``).  Nothing in the repository is written except ``--out`` (JSON)
and its ``.md`` table beside it.

Reported per config: mean ± sample sd over the seeds of pAcc, mAcc, mIU, fwIU for each
variant, the wall seconds of each run, and the issue's targets (ub >= 55 mIU, p+b+i - p >= 5,
p+b+i >= 90 % of ub, p+i > p, p+b > p) checked on the means.

    python benchmarks/camvid_table.py --configs configs/camvid-lite0-1-5-10.yaml \\
        configs/camvid-small-1-5-10.yaml --seeds 0 1 2 --root ../shared/data/camvid \\
        --out benchmarks/results/camvid_table.json

``--root`` overrides ``source.root`` (the configs name ``../shared/data/camvid``).  On a GPU
machine use ``--jobs`` > 1 and ``--loader-workers``; ``--limit-epochs`` shortens a smoke run.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import dataclasses
import hashlib
import json
import multiprocessing as mp
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.core.config import build, load_config, record  # noqa: E402

METRICS = ("pAcc", "mAcc", "mIU", "fwIU")
TARGETS = {"ub_miou": 55.0, "pbi_minus_p": 5.0, "pbi_share_of_ub": 0.90}


def prepare(cfg, work: Path, workers: int) -> Path:
    """source -> split -> ucm -> labels of ``cfg`` into ``work``; returns the label shard folder."""
    from pipeline.core.index import write_index
    from pipeline.labels.stage import run_labels
    from pipeline.sources import load_source
    from pipeline.split import run_split
    from pipeline.ucm.stage import run_ucm
    labels = work / "labels"
    if (work / "done").exists():
        return labels
    t0 = time.perf_counter()
    src = work / "source"
    write_index(load_source(cfg.source), src, progress=False, n_jobs=workers)
    run_split(src / "images.json", src / "annotations.json", work / "split.json", cfg.split)
    run_ucm(src / "images.json", work / "ucm", dataclasses.replace(cfg.ucm, workers=workers), progress=False)
    run_labels(src / "images.json", src / "annotations.json", work / "split.json", work / "ucm", labels,
               dataclasses.replace(cfg.labels, workers=workers), progress=False)
    (work / "done").write_text(f"{time.perf_counter() - t0:.1f}\n")
    return labels


def _no_dvclive():
    """Training writes its curves with dvclive; where it is not installed (a bare GPU machine)
    the curves are skipped, nothing else changes."""
    try:
        import dvclive  # noqa: F401
    except ImportError:
        import train.fit

        class _Quiet:
            step = 0

            def log_metric(self, *a, **k):
                pass

            def next_step(self):
                pass

            def end(self):
                pass
        train.fit.metrics_logger = lambda path: _Quiet()


def run_one(task: dict) -> dict:
    """Train and evaluate one (config, seed, variant); runs in a worker process."""
    import torch
    _no_dvclive()
    from pipeline.core.config import TrainConfig
    from train.evaluate import evaluate_model
    from train.fit import load_model, train
    cfg = TrainConfig(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in task["train"].items()})
    t0 = time.perf_counter()
    s = train(cfg, task["labels"], task["out"], task["variant"], progress=False, log=lambda m: None)
    t1 = time.perf_counter()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, _ = load_model(Path(task["out"]) / "model.pt", device=device)
    metrics, _ = evaluate_model(model, task["labels"], device=device)
    return {**{k: task[k] for k in ("config", "seed", "variant", "equal")},
            "metrics": {k: metrics[k] for k in METRICS}, "per_class_iou": metrics["per_class_iou"],
            "iterations": s["iterations"], "images": s["images"], "train_s": round(t1 - t0, 1),
            "eval_s": round(time.perf_counter() - t1, 1), "device": device}


def summarise(results: list, variants: list) -> dict:
    """Mean ± sd per (config, equal, variant), and the targets on the means."""
    out = {}
    for r in results:
        key = f"{r['config']}{' equal-iterations' if r['equal'] else ''}"
        out.setdefault(key, {}).setdefault(r["variant"], []).append(r)
    table = {}
    for key, per_variant in out.items():
        rows = {}
        for v in variants:
            runs = sorted(per_variant.get(v, []), key=lambda r: r["seed"])
            if not runs:
                continue
            rows[v] = {"seeds": [r["seed"] for r in runs], "iterations": runs[0]["iterations"],
                       "train_s": [r["train_s"] for r in runs]}
            for m in METRICS:
                x = np.array([r["metrics"][m] for r in runs], float)
                rows[v][m] = {"mean": round(float(x.mean()), 2),
                              "sd": round(float(x.std(ddof=1)) if len(x) > 1 else 0.0, 2),
                              "runs": [round(float(a), 2) for a in x]}
        miou = {v: rows[v]["mIU"]["mean"] for v in rows}
        checks = {}
        if {"p", "p+b+i", "ub"} <= set(miou):
            checks = {"ub >= 55": miou["ub"] >= TARGETS["ub_miou"],
                      "p+b+i - p >= 5": miou["p+b+i"] - miou["p"] >= TARGETS["pbi_minus_p"],
                      "p+b+i >= 90% of ub": miou["p+b+i"] >= TARGETS["pbi_share_of_ub"] * miou["ub"]}
            if "p+i" in miou:
                checks["p+i > p"] = miou["p+i"] > miou["p"]
            if "p+b" in miou:
                checks["p+b > p"] = miou["p+b"] > miou["p"]
        table[key] = {"rows": rows, "targets": checks}
    return table


def markdown(table: dict) -> str:
    lines = []
    for key, t in table.items():
        lines += [f"### {key}", "", "| variant | iterations | " + " | ".join(METRICS) + " | seeds |",
                  "|---|---|" + "---|" * (len(METRICS) + 1)]
        for v, row in t["rows"].items():
            cells = [f"{row[m]['mean']:.1f} ± {row[m]['sd']:.1f}" for m in METRICS]
            lines.append(f"| {v} | {row['iterations']} | " + " | ".join(cells) + f" | {len(row['seeds'])} |")
        if t["targets"]:
            lines += ["", "targets: " + ", ".join(f"{k}: {'met' if ok else 'MISSED'}" for k, ok in t["targets"].items())]
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", nargs="+", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=None)
    ap.add_argument("--equal", action="store_true", help="also train every variant at ub's iterations")
    ap.add_argument("--equal-only", action="store_true", help="only at ub's iterations")
    ap.add_argument("--root", default=None, help="override source.root (the CamVid folder)")
    ap.add_argument("--work", default="/tmp/camvid_table")
    ap.add_argument("--jobs", type=int, default=1, help="runs at a time (processes)")
    ap.add_argument("--workers", type=int, default=2, help="processes of the preprocessing stages")
    ap.add_argument("--loader-workers", type=int, default=None, help="override train.workers")
    ap.add_argument("--threads", type=int, default=None, help="override train.threads")
    ap.add_argument("--limit-epochs", type=float, default=None, help="override train.epochs (smoke runs)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    t_start = time.perf_counter()
    tasks, prep_s = [], {}
    for path in args.configs:
        cfg = load_config(path)
        if args.root:
            cfg = build(type(cfg), {**record(cfg), "source": {**record(cfg.source), "root": args.root}})
        pipeline_part = json.dumps({k: v for k, v in record(cfg).items() if k != "train"}, sort_keys=True)
        work = Path(args.work) / hashlib.sha1(pipeline_part.encode()).hexdigest()[:10]
        t0 = time.perf_counter()
        labels = prepare(cfg, work, args.workers)
        prep_s[Path(path).stem] = round(time.perf_counter() - t0, 1)
        train_rec = record(cfg.train)
        train_rec.pop("reduction", None)
        for k, v in (("workers", args.loader_workers), ("threads", args.threads), ("epochs", args.limit_epochs)):
            if v is not None:
                train_rec[k] = v
        variants = args.variants or list(cfg.train.variants)
        modes = [True] if args.equal_only else ([False, True] if args.equal else [False])
        for equal in modes:
            for seed in args.seeds:
                for v in variants:
                    if equal and v == "ub" and False in modes:
                        continue   # ub's own schedule is the equal one: trained once
                    tr = {**train_rec, "seed": seed, "equal_iterations": equal}
                    out = Path(args.work) / "models" / Path(path).stem / f"{'eq' if equal else 'own'}-s{seed}" / v
                    tasks.append({"config": Path(path).stem, "seed": seed, "variant": v, "equal": equal,
                                  "train": tr, "labels": str(labels), "out": str(out)})
        print(f"{Path(path).stem}: labels ready in {prep_s[Path(path).stem]} s ({labels})", flush=True)

    results = []
    # larger runs first, so the pool ends together
    # the configs in the order given (a run cut short has the first ones complete), larger runs first
    order = {Path(p).stem: k for k, p in enumerate(args.configs)}
    size = {"p": 1, "p+b": 2, "p+i": 3, "p+b+i": 4, "ub": 4}
    tasks.sort(key=lambda t: (order[t["config"]], t["equal"], -size[t["variant"]]))
    with cf.ProcessPoolExecutor(max_workers=args.jobs, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(run_one, t) for t in tasks]
        for fut in cf.as_completed(futures):
            r = fut.result()
            results.append(r)
            write(args, results, prep_s, t_start, final=False)
            print(f"{r['config']} seed {r['seed']} {r['variant']}{' (equal it.)' if r['equal'] else ''}: "
                  f"mIU {r['metrics']['mIU']:.2f}  ({r['iterations']} it, train {r['train_s']} s, "
                  f"eval {r['eval_s']} s, {r['device']})", flush=True)
    write(args, results, prep_s, t_start, final=True)


def write(args, results, prep_s, t_start, final):
    """The JSON and the markdown table of the runs so far (rewritten after each run)."""
    import torch
    results = list(results)
    if args.equal:   # ub at its own schedule is also the equal-iterations ub
        results += [{**r, "equal": True} for r in results if r["variant"] == "ub" and not r["equal"]]
    table = summarise(results, ["p", "p+i", "p+b", "p+b+i", "ub"])
    text = markdown(table)
    if final:
        print(text)
    doc = {"command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
           "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                       "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                       "load": os.getloadavg()},
           "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "wall_s": round(time.perf_counter() - t_start, 1),
           "prepare_s": prep_s, "table": table, "runs": sorted(results, key=lambda r: (r["config"], r["equal"],
                                                                                     r["seed"], r["variant"])),
           "complete": final, "markdown": text}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    Path(args.out).with_suffix(".md").write_text(text)
    if final:
        print(f"wrote {args.out} ({doc['wall_s']} s)")


if __name__ == "__main__":
    main()

"""The results report: the paper's Table 2/3 as markdown, a Fig. 6 bar chart of the
variants against the upper bound, and a Fig. 7 grid of qualitative predictions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.core.errors import InputError
from pipeline.core.fileio import atomic_path
from pipeline.core.palette import class_palette
from pipeline.core.shards import ShardReader, bitsets_to_class_map

from .evaluate import check_classes, predict_class_map

VARIANT_LABELS = {"p": "pixel", "p+i": "pixel+image", "p+b": "pixel+box", "p+b+i": "pixel+box+image",
                  "ub": "upper bound (all pixel)"}
METRICS = ("pAcc", "mAcc", "mIU", "fwIU")


def load_results(metrics_dir, variants) -> dict:
    """``{variant: its metrics}`` from ``metrics_dir/<variant>.json``, for every one of ``variants``.

    Raises
    ------
    InputError
        Naming every missing file and the command that makes them, or a file that is
        not an evaluate stage's metrics.
    """
    paths = {v: Path(metrics_dir) / f"{v}.json" for v in variants}
    missing = [v for v, p in paths.items() if not p.is_file()]
    if missing:
        raise InputError(", ".join(str(paths[v]) for v in missing),
                         f"not found (the metrics of {', '.join(missing)} in train.variants): make "
                         f"{'them' if len(missing) > 1 else 'it'} with "
                         f"dvc repro {' '.join(f'evaluate@{v}' for v in missing)}")
    out = {}
    for v, p in paths.items():
        try:
            out[v] = json.loads(p.read_text())
            absent = [k for k in METRICS if not isinstance(out[v].get(k), (int, float))]
        except (ValueError, AttributeError) as e:
            raise InputError(p, f"not a metrics file of mixseg evaluate ({e})") from None
        if absent:
            raise InputError(p, f"not a metrics file of mixseg evaluate (no {', '.join(absent)})")
    return out


def results_table(results: dict, arch: str, title: str = "") -> str:
    """Markdown table like the paper's Table 2: one row per variant."""
    lines = [f"**{title}**" if title else "", "",
             "| method | annotation | " + " | ".join(METRICS) + " |",
             "|---|---|" + "---|" * len(METRICS)]
    for v, m in results.items():
        lines.append(f"| {arch}-{v} | {VARIANT_LABELS.get(v, v)} | "
                     + " | ".join(f"{m[k]:.2f}" for k in METRICS) + " |")
    return "\n".join(lines).strip() + "\n"


#: Knobs that never change the results (left out when a run is matched with the reference);
#: ``train.seed`` too: the reference spans seeds.
RUN_ONLY = ("threads", "workers", "cache_mb", "checkpoint_every", "log_every", "variants", "n_jobs", "shard_size", "out")


def settings(cfg, sections) -> dict:
    """``{section: {key: value}}`` of ``cfg`` without the run-only knobs and ``train.seed``."""
    from pipeline.core.config import record
    return {s: {k: v for k, v in record(getattr(cfg, s)).items()
                if k not in RUN_ONLY and not (s == "train" and k == "seed")} for s in sections}


def reference_check(results: dict, reference_path, cfg) -> str:
    """Markdown: each variant's mIU against the reference runs of the same settings.

    ``reference_path`` is a JSON file (``report/reference.json``) with the ``params`` of the
    reference runs (synthetic, split, ucm, labels, train; run-only knobs left out) and their
    ``runs`` (``{variant: {seed: metrics}}``).  A run is healthy when its mIU lies within
    mean +- max(3 sample sd, 8 points) -- three seeds underestimate the spread, and training
    differs across CPUs (ub moved 6.5 points on another CPU).  Settings other than the reference's get a line saying so.
    """
    path = Path(reference_path)
    if not path.is_file():
        return f"No reference runs ({path} not found).\n"
    try:
        ref = json.loads(path.read_text())
        mine = settings(cfg, ref["params"])
        ref["runs"], ref["what"]
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise InputError(path, f"not a reference file of mixseg report (needs params, runs, what: {e!r})") from None
    if mine != ref["params"]:
        differ = sorted(f"{s}.{k}" for s in mine for k in mine[s] if mine[s][k] != ref["params"][s].get(k))
        return (f"No reference for these settings ({path} was made with other values of "
                f"{', '.join(differ[:6])}{' …' if len(differ) > 6 else ''}).\n")
    lines = [f"Against the reference ({path}: {ref['what']}):", "",
             "| variant | mIU | reference mean ± sd | seeds | healthy range | |", "|---|---|---|---|---|---|"]
    for v, m in results.items():
        runs = [r["mIU"] for r in ref["runs"].get(v, {}).values()]
        if len(runs) < 2:
            lines.append(f"| {v} | {m['mIU']:.2f} | – | {len(runs)} | – | no reference |")
            continue
        mean, sd = float(np.mean(runs)), float(np.std(runs, ddof=1))
        half = max(3 * sd, 8.0)
        ok = abs(m["mIU"] - mean) <= half
        lines.append(f"| {v} | {m['mIU']:.2f} | {mean:.2f} ± {sd:.2f} | {len(runs)} | "
                     f"{max(mean - half, 0):.1f}–{min(mean + half, 100):.1f} | {'ok' if ok else '**outside: check this run**'} |")
    return "\n".join(lines) + "\n"


def fig6(results: dict, path) -> None:
    """Bars of mIU per variant, the upper bound drawn as a line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    variants = [v for v in results if v != "ub"]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.bar(variants, [results[v]["mIU"] for v in variants], color="#7fa7d6")
    if "ub" in results:
        ax.axhline(results["ub"]["mIU"], color="#1f4e8c", ls="--", label=f"ub {results['ub']['mIU']:.1f}")
        ax.legend(loc="lower right", fontsize=8)
    for i, v in enumerate(variants):
        ax.text(i, results[v]["mIU"] + 0.5, f"{results[v]['mIU']:.1f}", ha="center", fontsize=8)
    ax.set_ylabel("mIU (%)")
    ax.set_title("variants vs upper bound (Fig. 6)", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def check_models(models: dict, shard_dir) -> None:
    """An InputError unless every model was trained on the classes of the val shards."""
    reader = ShardReader(shard_dir, split="val")
    try:
        for model in models.values():
            check_classes(model, reader, shard_dir)
    finally:
        reader.close()


def fig7(models: dict, shard_dir, path, n_images: int = 5) -> None:
    """Rows: validation images; columns: image, ground truth, each variant's prediction.
    Every model must have been trained on the shards' classes (:func:`check_models`)."""
    check_models(models, shard_dir)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    reader = ShardReader(shard_dir, split="val")
    from matplotlib.patches import Patch
    ids = reader.ids[:: max(1, len(reader.ids) // n_images)][:n_images]
    pal = np.full((256, 3), 255, np.uint8)  # void (255) white
    pal[:reader.num_classes] = class_palette(reader.classes)
    cols = 2 + len(models)
    fig, axes = plt.subplots(len(ids), cols, figsize=(1.9 * cols, 1.6 * len(ids) + 0.6), squeeze=False)
    for r, image_id in enumerate(ids):
        image = reader.image(image_id)
        truth = bitsets_to_class_map(reader.truth(image_id))
        panels = [("image", image), ("ground truth", pal[truth])]
        for v, model in models.items():
            pred = predict_class_map(model, image).astype(np.uint8)
            panels.append((v, pal[pred]))
        for c, (title, p) in enumerate(panels):
            axes[r, c].imshow(p)
            axes[r, c].axis("off")
            if r == 0:
                axes[r, c].set_title(title, fontsize=8)
    handles = [Patch(fc=pal[c] / 255, ec="0.5", label=name) for c, name in enumerate(reader.classes)
               if c or reader.background]
    handles.append(Patch(fc="white", ec="0.5", label="void (not scored)"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 7), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.6 / (1.6 * len(ids) + 0.6), 1, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    reader.close()


def read_curves(models_dir, variants) -> dict:
    """``{variant: (iterations, training losses)}`` from each variant's dvclive
    ``live/plots/metrics/train/loss.tsv``; a missing one is an InputError naming it."""
    import csv
    curves = {}
    for v in variants:
        tsv = Path(models_dir) / v / "live" / "plots" / "metrics" / "train" / "loss.tsv"
        if not tsv.is_file():
            raise InputError(tsv, f"no training curve for {v} (make it with dvc repro train@{v})")
        with open(tsv) as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        curves[v] = ([int(r["step"]) for r in rows], [float(r["loss"]) for r in rows])
    return curves


def training_curves(curves: dict, path) -> None:
    """The training loss of every variant against iterations (:func:`read_curves`), as a PNG:
    viewable offline, unlike ``dvc plots show``'s HTML, which loads vega from the network."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    for v, (steps, losses) in curves.items():
        ax.plot(steps, losses, label=v, lw=1.2)
    ax.set_xlabel("iteration")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title("training curves (dvclive)", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)

"""The training commands of ``mixseg``: ``train``, ``evaluate``, ``report`` and ``predict``.

``pipeline/cli.py`` adds them to the ``mixseg`` group; torch is imported only when one
of them runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from pipeline.core.commands import PARAMS_OPTION, PROGRESS_OPTION, config, reports_errors
from pipeline.core.config import VARIANTS
from pipeline.core.fileio import write_json

VARIANT_OPTION = click.option("--variant", required=True, type=click.Choice(VARIANTS),
                              help="Which supervision to train on (the paper's Table 2 rows).")
LABELS_OPTION = click.option("--labels", "labels_dir", default="data/labels", show_default=True,
                             help="Folder of the labels stage's shards.")
MODELS_OPTION = click.option("--models", "models_dir", default="models", show_default=True,
                             help="Folder holding one <variant>/model.pt per variant.")


@click.command("train")
@PARAMS_OPTION
@VARIANT_OPTION
@LABELS_OPTION
@click.option("--out", "models_dir", default="models", show_default=True,
              help="Folder for <variant>/model.pt, its checkpoint and its dvclive logs.")
@PROGRESS_OPTION
@reports_errors
def train_cmd(params_path, variant, labels_dir, models_dir, progress):
    """Train one variant on the label shards (resumes from its checkpoint)."""
    from .fit import train
    summary = train(config(params_path).train, labels_dir, Path(models_dir) / variant, variant,
                    progress=progress, log=lambda m: click.echo(m, err=True), params_file=params_path)
    summary.pop("losses")
    click.echo(json.dumps(summary))


@click.command("evaluate")
@PARAMS_OPTION
@VARIANT_OPTION
@LABELS_OPTION
@MODELS_OPTION
@click.option("--out", "metrics_dir", default="metrics/eval", show_default=True,
              help="Folder for <variant>.json: the headline figures (a DVC metric).")
@click.option("--per-class", "per_class_dir", default="metrics/eval_classes", show_default=True,
              help="Folder for <variant>.json: image counts and every class's IoU (out of `dvc metrics show`).")
@PROGRESS_OPTION
@reports_errors
def evaluate_cmd(params_path, variant, labels_dir, models_dir, metrics_dir, per_class_dir, progress):
    """pAcc, mAcc, mIU, fwIU and per-class IoU of a trained variant on the validation shards."""
    from .evaluate import evaluate_model
    from .fit import load_model
    model, meta = load_model(Path(models_dir) / variant / "model.pt")
    metrics, _ = evaluate_model(model, labels_dir, progress=progress)
    per_class = metrics.pop("per_class_iou")
    detail = {"variant": variant, "arch": meta["arch"], "train_images": meta["images"],
              "images": metrics.pop("images"), "per_class_iou": per_class}
    write_json(Path(metrics_dir) / f"{variant}.json", metrics)  # the four figures: dvc metrics show's columns
    write_json(Path(per_class_dir) / f"{variant}.json", detail)
    click.echo(f"{variant}: pAcc {metrics['pAcc']:.2f}  mAcc {metrics['mAcc']:.2f}  "
               f"mIU {metrics['mIU']:.2f}  fwIU {metrics['fwIU']:.2f}")


@click.command("report")
@PARAMS_OPTION
@click.option("--metrics", "metrics_dir", default="metrics/eval", show_default=True,
              help="Folder of the evaluate stage's <variant>.json files.")
@MODELS_OPTION
@LABELS_OPTION
@click.option("--reference", "reference_path", default="report/reference.json", show_default=True,
              help="Reference runs (mean ± sd over seeds) a run of the same settings is checked against.")
@click.option("--out", "out_dir", default="report", show_default=True,
              help="Folder for results.md, fig6.png, fig7.png and curves.png.")
@reports_errors
def report_cmd(params_path, metrics_dir, models_dir, labels_dir, reference_path, out_dir):
    """The results table (markdown), Fig. 6 bar chart, Fig. 7 prediction grid and the training curves."""
    from .fit import load_model
    from pipeline.core.fileio import atomic_path
    from .report import (check_models, fig6, fig7, load_results, read_curves, reference_check, results_table,
                         training_curves)
    cfg = config(params_path)
    results = load_results(metrics_dir, list(cfg.train.variants))   # every variant's, or an error
    models = {v: load_model(Path(models_dir) / v / "model.pt")[0] for v in results}
    ratio = ":".join(str(r) for r in cfg.split.ratio)
    check_models(models, labels_dir)  # each model against the shards' classes
    table = results_table(results, cfg.train.arch, f"Method (p:b:i={ratio})")
    table += "\n" + reference_check(results, reference_path, cfg)
    curves = read_curves(models_dir, list(results))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig7(models, labels_dir, out / "fig7.png")
    with atomic_path(out / "results.md") as tmp:
        tmp.write_text(table)
    fig6(results, out / "fig6.png")
    training_curves(curves, out / "curves.png")
    click.echo(table)


@click.command("predict")
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--model", "model_path", required=True, type=click.Path(), help="A trained model.pt.")
@click.option("--out", "out_dir", default="predictions", show_default=True,
              help="Folder for one VOC-palette PNG per image.")
@reports_errors
def predict_cmd(images, model_path, out_dir):
    """Segment images; write VOC-palette PNGs (one per image) to --out."""
    from pipeline.core.fileio import read_image, write_palette_png
    from .evaluate import predict_class_map
    from .fit import load_model
    model, _ = load_model(model_path)
    for p in images:
        pred = predict_class_map(model, read_image(p))
        dest = Path(out_dir) / (Path(p).stem + ".png")
        write_palette_png(dest, pred.astype("uint8"))
        click.echo(f"wrote {dest}")


@click.command("export")
@click.option("--model", "model_path", required=True, type=click.Path(), help="A trained model.pt.")
@click.option("--out", "out_dir", default=None, type=click.Path(),
              help="Folder for model.safetensors and model.onnx  [default: the folder of --model]")
@reports_errors
def export_cmd(model_path, out_dir):
    """Write model.safetensors and model.onnx (opset 17, dynamic batch/height/width) of a model.pt."""
    from .export import export_model_files
    for path in export_model_files(model_path, out_dir, log=lambda m: click.echo(m, err=True)):
        click.echo(f"wrote {path}")


COMMANDS = (train_cmd, evaluate_cmd, report_cmd, predict_cmd, export_cmd)

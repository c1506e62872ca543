"""Training commands, added to ``mixseg`` when the train package is installed:
``train``, ``evaluate``, ``report`` and ``predict``."""

from __future__ import annotations

import json
from pathlib import Path

import click


def register(main: click.Group) -> None:
    from pipeline.cli import PARAMS_OPTION, reports_errors
    from pipeline.core.fileio import write_json
    from pipeline.core.config import load_params

    def train_params(path):
        return dict(load_params(path).get("train") or {})

    @main.command("train")
    @PARAMS_OPTION
    @click.option("--variant", required=True, help="p, p+i, p+b, p+b+i or ub.")
    @click.option("--labels", "labels_dir", default="data/labels", show_default=True)
    @click.option("--out", "models_dir", default="models", show_default=True)
    @click.option("--progress/--no-progress", default=True)
    @reports_errors
    def train_cmd(params_path, variant, labels_dir, models_dir, progress):
        """Train one variant on the label shards (resumes from its checkpoint)."""
        from .fit import train
        summary = train(train_params(params_path), labels_dir, Path(models_dir) / variant, variant,
                        progress=progress, log=lambda m: click.echo(m, err=True))
        summary.pop("losses")
        click.echo(json.dumps(summary))

    @main.command("evaluate")
    @PARAMS_OPTION
    @click.option("--variant", required=True)
    @click.option("--labels", "labels_dir", default="data/labels", show_default=True)
    @click.option("--models", "models_dir", default="models", show_default=True)
    @click.option("--out", "metrics_dir", default="metrics/eval", show_default=True)
    @click.option("--progress/--no-progress", default=True)
    @reports_errors
    def evaluate_cmd(params_path, variant, labels_dir, models_dir, metrics_dir, progress):
        """pAcc, mAcc, mIU, fwIU and per-class IoU of a trained variant on the validation shards."""
        from .evaluate import evaluate_model
        from .fit import load_model
        model, meta = load_model(Path(models_dir) / variant / "model.pt")
        metrics, _ = evaluate_model(model, labels_dir, progress=progress)
        metrics.update(variant=variant, arch=meta["arch"], train_images=meta["images"])
        write_json(Path(metrics_dir) / f"{variant}.json", metrics)
        click.echo(f"{variant}: pAcc {metrics['pAcc']:.2f}  mAcc {metrics['mAcc']:.2f}  "
                   f"mIU {metrics['mIU']:.2f}  fwIU {metrics['fwIU']:.2f}")

    @main.command("report")
    @PARAMS_OPTION
    @click.option("--metrics", "metrics_dir", default="metrics/eval", show_default=True)
    @click.option("--models", "models_dir", default="models", show_default=True)
    @click.option("--labels", "labels_dir", default="data/labels", show_default=True)
    @click.option("--out", "out_dir", default="report", show_default=True)
    @reports_errors
    def report_cmd(params_path, metrics_dir, models_dir, labels_dir, out_dir):
        """The results table (markdown), Fig. 6 bar chart and Fig. 7 prediction grid."""
        from .fit import load_model
        from .report import fig6, fig7, load_results, results_table
        params = load_params(params_path)
        tp = params.get("train") or {}
        variants = list(tp.get("variants", ["p", "p+i", "p+b", "p+b+i", "ub"]))
        results = load_results(metrics_dir, variants)
        ratio = ":".join(str(r) for r in (params.get("split") or {}).get("ratio", []))
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        table = results_table(results, tp.get("arch", "small"), f"Method (p:b:i={ratio})")
        (out / "results.md").write_text(table)
        fig6(results, out / "fig6.png")
        models = {v: load_model(Path(models_dir) / v / "model.pt")[0] for v in results}
        fig7(models, labels_dir, out / "fig7.png")
        click.echo(table)

    @main.command("predict")
    @click.argument("images", nargs=-1, required=True, type=click.Path())
    @click.option("--model", "model_path", required=True, type=click.Path(), help="A trained model.pt.")
    @click.option("--out", "out_dir", default="predictions", show_default=True)
    @reports_errors
    def predict_cmd(images, model_path, out_dir):
        """Segment images; write VOC-palette PNGs (one per image) to --out."""
        import torch
        from pipeline.core.fileio import read_image, write_palette_png
        from .data import normalize
        from .fit import load_model
        model, _ = load_model(model_path)
        for p in images:
            with torch.no_grad():
                pred = model(normalize(read_image(p))[None])[0].argmax(0).numpy()
            dest = Path(out_dir) / (Path(p).stem + ".png")
            write_palette_png(dest, pred.astype("uint8"))
            click.echo(f"wrote {dest}")

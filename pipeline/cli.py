"""The ``mixseg`` command: one subcommand per pipeline stage, plus inspection tools.

Each stage reads its knobs from its section of ``params.yaml`` (checked on load,
``pipeline/core/config.py``) and its inputs and outputs from the options that
``dvc.yaml`` spells out.  Bad input prints ``mixseg <stage>: error: <file>: <reason>``
and exits with status 2.  The training commands come from ``train/cli.py``.
"""

from __future__ import annotations

import dataclasses
import sys

import click

from pipeline import __version__
from pipeline.core.commands import PARAMS_OPTION, PROGRESS_OPTION, config, echo_json, reports_errors
from pipeline.core.fileio import write_json

INDEX_OPTION = click.option("--index", "index_dir", default="data/source", show_default=True,
                            help="Folder of the source stage's images.json and annotations.json.")
SPLIT_OPTION = click.option("--split", "split_path", default="data/split.json", show_default=True,
                            help="The split stage's pixel/box/image assignment.")
UCM_OPTION = click.option("--ucm", "ucm_dir", default="data/ucm", show_default=True,
                          help="Folder of the ucm stage's shards.")


def quality_summary(result: dict, strategy: str) -> dict:
    """The headline of ``mixseg quality`` (a DVC metric, few columns): ``strategy``'s mIoU, fair
    mIoU and ignored share of box pixels beside raw_box's mIoU and fair mIoU."""
    keys = {"miou": "miou", "miou_fair": "miou_fair", "box_ignored": "ignored"}
    return {s: {short: result[s][k] for k, short in keys.items() if k in result[s] and not (s == "raw_box" and
                                                                                        short == "ignored")}
            for s in dict.fromkeys([strategy, "raw_box"]) if s in result}


def with_workers(section, workers):
    """The section with ``workers`` overridden by the command line's ``--workers``, if given."""
    return dataclasses.replace(section, workers=workers) if workers else section


def run_sharded_stage(metrics, run, *args, **kwargs) -> None:
    """Run a sharded stage (ucm, labels) on joblib -- or on a Dask cluster when
    ``$MIXSEG_DASK_SCHEDULER`` is set (pipeline/core/cluster.py) -- and write its summary."""
    from pipeline.core.cluster import joblib_backend
    with joblib_backend():
        summary = run(*args, **kwargs)
    write_json(metrics, summary)
    echo_json(summary)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mixseg")
def main():
    """mixseg: semantic segmentation from pixel masks, boxes and image tags.

    The stages run in this order (dvc.yaml): synthetic, source, split, ucm, labels,
    quality, then train, evaluate (one per variant) and report.  Run them all with
    `dvc repro`; every knob is in params.yaml.  Tools: inspect, verify, predict.
    """


@main.command()
@PARAMS_OPTION
@click.option("--out", default=None, help="Output root (default: synthetic.out in params).")
@PROGRESS_OPTION
@reports_errors
def synthetic(params_path, out, progress):
    """Generate the synthetic dataset in the PASCAL VOC layout."""
    from pipeline.sources.synthetic import generate
    p = config(params_path).synthetic
    kwargs = {f.name: getattr(p, f.name) for f in dataclasses.fields(p) if f.name != "out"}
    for folder in ([out] if out else p.out):
        echo_json(generate(folder, progress=progress, **kwargs))


@main.command()
@PARAMS_OPTION
@click.option("--out", default="data/source", show_default=True, help="Folder for images.json, annotations.json.")
@click.option("--metrics", default="metrics/source.json", show_default=True, help="Stage summary (a DVC metric).")
@PROGRESS_OPTION
@reports_errors
def source(params_path, out, metrics, progress):
    """Read the dataset named in params (source.kind) into the mixseg index."""
    from pipeline.core.index import write_index
    from pipeline.sources import load_source
    p = config(params_path).source
    dataset = load_source(p)
    summary = write_index(dataset, out, on_error=p.on_error, n_jobs=p.workers, progress=progress)
    summary["classes"] = len(dataset.classes)
    write_json(metrics, summary)
    echo_json(summary)


@main.command()
@PARAMS_OPTION
@INDEX_OPTION
@click.option("--out", default="data/split.json", show_default=True, help="The assignment file to write.")
@reports_errors
def split(params_path, index_dir, out):
    """Assign training images to the pixel, box and image subsets."""
    from pipeline.split import run_split
    echo_json(run_split(f"{index_dir}/images.json", f"{index_dir}/annotations.json", out, config(params_path).split))


@main.command()
@PARAMS_OPTION
@click.option("--images", default="data/source/images.json", show_default=True, help="The source stage's image list.")
@click.option("--out", default="data/ucm", show_default=True, help="Folder for the UCM shards.")
@click.option("--metrics", default="metrics/ucm.json", show_default=True,
              help="Stage summary (images, shards, skipped) as a DVC metric.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Override ucm.workers.")
@PROGRESS_OPTION
@reports_errors
def ucm(params_path, images, out, metrics, workers, progress):
    """Compute an ultrametric contour map (ucm2) per training image."""
    from pipeline.ucm.stage import run_ucm
    p = with_workers(config(params_path).ucm, workers)
    run_sharded_stage(metrics, run_ucm, images, out, p, progress=progress)


@main.command()
@PARAMS_OPTION
@INDEX_OPTION
@SPLIT_OPTION
@UCM_OPTION
@click.option("--out", default="data/labels", show_default=True, help="Folder for the label shards.")
@click.option("--metrics", default="metrics/labels.json", show_default=True, help="Stage summary (a DVC metric).")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Override labels.workers.")
@PROGRESS_OPTION
@reports_errors
def labels(params_path, index_dir, split_path, ucm_dir, out, metrics, workers, progress):
    """Write each training image's target (mask, box soft labels or tags) to label shards."""
    from pipeline.labels.stage import run_labels
    p = with_workers(config(params_path).labels, workers)
    run_sharded_stage(metrics, run_labels, f"{index_dir}/images.json", f"{index_dir}/annotations.json", split_path,
                      ucm_dir, out, p, progress=progress)


@main.command()
@PARAMS_OPTION
@INDEX_OPTION
@SPLIT_OPTION
@UCM_OPTION
@click.option("--out", default="metrics/label_quality.json", show_default=True,
              help="Every strategy's scores, per class too.")
@click.option("--summary", default="metrics/label_quality_summary.json", show_default=True,
              help="The headline (a DVC metric): labels.strategy's and raw_box's mIoU, fair mIoU, ignored share.")
@click.option("--strategy", "strategies", multiple=True,
              help="A strategy to score, repeatable (default: quality.strategies).")
@PROGRESS_OPTION
@reports_errors
def quality(params_path, index_dir, split_path, ucm_dir, out, summary, strategies, progress):
    """Score box-derived labels against the true masks of the box subset, per strategy."""
    from pipeline.core.config import config_from_dict, record
    from pipeline.labels.quality import run_quality
    cfg = config(params_path)
    q = cfg.quality
    if strategies:  # checked like the params file's own list
        doc = record(cfg)
        doc["quality"] = {"strategies": list(strategies)}
        q = config_from_dict(doc, "--strategy").quality
    result = run_quality(f"{index_dir}/images.json", f"{index_dir}/annotations.json", split_path, ucm_dir,
                         cfg.labels, q, progress=progress)
    write_json(out, result)
    write_json(summary, quality_summary(result, cfg.labels.strategy))
    for s in q.strategies:
        r = result[s]
        click.echo(f"{s:>8}: mIoU {r['miou']:6.2f}  fg P/R {r['fg_precision']:5.1f}/{r['fg_recall']:5.1f}  "
                   f"box pixels ignored {r['box_ignored']:5.1f}%  {r['seconds_per_box'] * 1e3:.2f} ms/box")


@main.command()
@click.argument("shard", type=click.Path())
@click.option("--id", "image_id", default=None, help="Image to render (default: the first box-kind image).")
@click.option("--ucm", "ucm_dir", default="data/ucm", show_default=True, help="UCM shards, for the Fig. 4 view.")
@click.option("--out", default="inspect", show_default=True, help="Folder for the PNGs.")
@click.option("--render/--no-render", default=True, help="Render PNGs, or only print the summary.")
@reports_errors
def inspect(shard, image_id, ucm_dir, out, render):
    """Print a label shard's summary and render Fig. 4 / Fig. 5 views as PNGs."""
    from pipeline.labels.inspect import render_image, shard_summary
    click.echo(shard_summary(shard))
    if render:
        for path in render_image(shard, image_id, ucm_dir, out):
            click.echo(f"wrote {path}")


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--decode/--no-decode", default=True, show_default=True, help="Also decode every stored image.")
@click.option("--strict", is_flag=True, help="Also fail on shards without recorded checksums (format 1).")
def verify(paths, decode, strict):
    """Check UCM and label shards (files or folders): schema, shapes, class bits, checksums.

    Prints every problem as `<file>: <item>: <reason>` and exits with status 1 if any.
    """
    from pipeline.core.verify import verify as run_verify
    report = run_verify(paths, decode_images=decode)
    for p in report.problems:
        click.echo(str(p))
    for n in report.notes:
        click.echo(f"{n.path}: note: {n.reason}")
    bad = len(report.problems) + (len(report.notes) if strict else 0)
    click.echo(f"mixseg verify: {report.shards} shards, {report.images} images, {len(report.problems)} problems"
               + (f", {len(report.notes)} notes" if report.notes else ""), err=True)
    sys.exit(1 if bad else 0)


# The trainer's commands (train/cli.py imports torch only when one of them runs, and never
# imports this module: no import circle).
from train.cli import COMMANDS  # noqa: E402

for command in COMMANDS:
    main.add_command(command)


if __name__ == "__main__":
    main()

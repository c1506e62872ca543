"""The ``mixseg`` command: one subcommand per pipeline stage, plus inspection.

Each stage reads its knobs from a section of ``params.yaml`` and its inputs and
outputs from options whose defaults match ``dvc.yaml``.  Bad input prints
``mixseg <stage>: error: <file>: <reason>`` and exits with status 2.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import sys

import click

from pipeline import __version__
from pipeline.core.errors import InputError
from pipeline.core.fileio import write_json
from pipeline.core.config import load_params, section

PARAMS_OPTION = click.option("--params", "params_path", default="params.yaml", show_default=True,
                             type=click.Path(dir_okay=False), help="Parameters file.")


def reports_errors(fn):
    """Turn InputError into one line on stderr and exit status 2."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except InputError as e:
            name = click.get_current_context().info_name
            click.echo(f"mixseg {name}: error: {e}", err=True)
            sys.exit(2)
    return wrapper


def _echo_json(obj):
    click.echo(json.dumps(obj, indent=1))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mixseg")
def main():
    """mixseg: semantic segmentation from pixel masks, boxes and image tags.

    The stages run in this order (dvc.yaml): synthetic, source, split, ucm,
    labels, quality.  Run them all with `dvc repro`.
    """


@main.command()
@PARAMS_OPTION
@click.option("--out", default=None, help="Output root (default: synthetic.out in params).")
@click.option("--progress/--no-progress", default=True)
@reports_errors
def synthetic(params_path, out, progress):
    """Generate the synthetic dataset in the PASCAL VOC layout."""
    from pipeline.sources.synthetic import generate
    p = section(load_params(params_path), "synthetic", params_path)
    kwargs = {k: v for k, v in p.items() if k != "out"}
    _echo_json(generate(out or p["out"], progress=progress, **kwargs))


@main.command()
@PARAMS_OPTION
@click.option("--out", default="data/source", show_default=True, help="Folder for images.json, annotations.json.")
@click.option("--metrics", default="metrics/source.json", show_default=True)
@click.option("--progress/--no-progress", default=True)
@reports_errors
def source(params_path, out, metrics, progress):
    """Read the dataset named in params (source.kind) into the mixseg index."""
    from pipeline.core.index import write_index
    from pipeline.sources import load_source
    p = section(load_params(params_path), "source", params_path)
    dataset = load_source(p)
    summary = write_index(dataset, out, on_error=p.get("on_error", "fail"), n_jobs=p.get("workers", 1),
                          progress=progress)
    summary["classes"] = len(dataset.classes)
    write_json(metrics, summary)
    _echo_json(summary)


@main.command()
@PARAMS_OPTION
@click.option("--index", "index_dir", default="data/source", show_default=True)
@click.option("--out", default="data/split.json", show_default=True)
@reports_errors
def split(params_path, index_dir, out):
    """Assign training images to the pixel, box and image subsets."""
    from pipeline.core.index import load_annotations, load_images
    from pipeline.split import split_ids
    p = section(load_params(params_path), "split", params_path)
    images = load_images(f"{index_dir}/images.json")
    _, ann = load_annotations(f"{index_dir}/annotations.json")
    train = [r["id"] for r in images if r["split"] == "train"]
    with_mask = {i for i in train if ann[i]["mask"] is not None}
    assignment = split_ids(train, with_mask, ratio=p.get("ratio", (1, 5, 10)), counts=p.get("counts"),
                           seed=int(p.get("seed", 0)), where=params_path)
    counts = {k: sum(v == k for v in assignment.values()) for k in ("pixel", "box", "image")}
    write_json(out, {"format": "mixseg-split", "version": 1, "seed": int(p.get("seed", 0)),
                     "counts": counts, "assignment": dict(sorted(assignment.items()))})
    _echo_json(counts)


@main.command()
@PARAMS_OPTION
@click.option("--images", default="data/source/images.json", show_default=True)
@click.option("--out", default="data/ucm", show_default=True)
@click.option("--metrics", default="metrics/ucm.json", show_default=True,
              help="Stage summary (images, shards, skipped) as a DVC metric.")
@click.option("--workers", type=int, default=None, help="Override ucm.workers.")
@click.option("--progress/--no-progress", default=True)
@reports_errors
def ucm(params_path, images, out, metrics, workers, progress):
    """Compute an ultrametric contour map (ucm2) per training image."""
    from pipeline.core.cluster import joblib_backend
    from pipeline.ucm.stage import run_ucm
    p = dict(section(load_params(params_path), "ucm", params_path))
    if workers is not None:
        p["workers"] = workers
    with joblib_backend():  # a Dask cluster when $MIXSEG_DASK_SCHEDULER is set (pipeline/cluster.py)
        summary = run_ucm(images, out, p, progress=progress)
    write_json(metrics, summary)
    _echo_json(summary)


@main.command()
@PARAMS_OPTION
@click.option("--index", "index_dir", default="data/source", show_default=True)
@click.option("--split", "split_path", default="data/split.json", show_default=True)
@click.option("--ucm", "ucm_dir", default="data/ucm", show_default=True)
@click.option("--out", default="data/labels", show_default=True)
@click.option("--metrics", default="metrics/labels.json", show_default=True)
@click.option("--workers", type=int, default=None, help="Override labels.workers.")
@click.option("--progress/--no-progress", default=True)
@reports_errors
def labels(params_path, index_dir, split_path, ucm_dir, out, metrics, workers, progress):
    """Write each training image's target (mask, box soft labels or tags) to label shards."""
    from pipeline.core.cluster import joblib_backend
    from pipeline.labels.stage import run_labels
    p = dict(section(load_params(params_path), "labels", params_path))
    if workers is not None:
        p["workers"] = workers
    with joblib_backend():  # a Dask cluster when $MIXSEG_DASK_SCHEDULER is set (pipeline/cluster.py)
        summary = run_labels(f"{index_dir}/images.json", f"{index_dir}/annotations.json", split_path, ucm_dir,
                             out, p, progress=progress)
    write_json(metrics, summary)
    _echo_json(summary)


@main.command()
@PARAMS_OPTION
@click.option("--index", "index_dir", default="data/source", show_default=True)
@click.option("--split", "split_path", default="data/split.json", show_default=True)
@click.option("--ucm", "ucm_dir", default="data/ucm", show_default=True)
@click.option("--out", default="metrics/label_quality.json", show_default=True)
@click.option("--strategy", "strategies", multiple=True, help="Strategies to score (default: quality.strategies).")
@click.option("--progress/--no-progress", default=True)
@reports_errors
def quality(params_path, index_dir, split_path, ucm_dir, out, strategies, progress):
    """Score box-derived labels against the true masks of the box subset, per strategy."""
    from pipeline.labels.quality import run_quality
    params = load_params(params_path)
    q = params.get("quality") or {}
    strategies = list(strategies) or list(q.get("strategies", ["ucm", "raw_box"]))
    result = run_quality(f"{index_dir}/images.json", f"{index_dir}/annotations.json", split_path, ucm_dir,
                         section(params, "labels", params_path), strategies, progress=progress)
    write_json(out, result)
    for s in strategies:
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


if importlib.util.find_spec("train") is not None and importlib.util.find_spec("train.cli") is not None:
    from train.cli import register  # noqa: E402  (the trainer adds its own commands when installed)
    register(main)


if __name__ == "__main__":
    main()

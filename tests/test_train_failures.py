"""The training commands refuse what would give a wrong model or wrong numbers: one line
``mixseg <command>: error: <file>: <reason>``, exit status 2, no traceback, nothing
overwritten.  Every case runs the real command line on tiny shards made by the real
pipeline (the ``shards`` fixture of tests/test_fit.py)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from PIL import Image

from pipeline.cli import main
from pipeline.core.config import record
from test_fit import TINY, shards  # noqa: F401 -- the fixture (tiny shards by the real pipeline)


def mixseg(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def error_line(result, command):
    """The one error line a refused command printed last (asserting exit status 2 and no
    traceback; train logs its resume/afresh line before it)."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert [line for line in lines if line.startswith("mixseg ")] == lines[-1:], result.stderr
    assert lines[-1].startswith(f"mixseg {command}: error: ") and "Traceback" not in result.output, result.output
    assert isinstance(result.exception, SystemExit)
    return lines[-1]


@pytest.fixture
def project(shards, tmp_path, monkeypatch):  # noqa: F811
    """A folder with params.yaml (the tiny train section, variants p and ub) and ``labels`` =
    the tiny shards; the current directory."""
    shutil.copytree(shards, tmp_path / "labels")
    params = {"train": {**record(TINY), "variants": ["p", "ub"]}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def set_params(**train):
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["train"].update(train)
    Path("params.yaml").write_text(yaml.safe_dump(params))


def train_variant(variant="p"):
    r = mixseg("train", "--variant", variant, "--labels", "labels", "--out", "models", "--no-progress")
    assert r.exit_code == 0, r.output
    return r


# ----------------------------------------------------------------------------- 1. stale model

def test_train_after_a_label_change_retrains_and_says_why(project, shards):  # noqa: F811
    first = train_variant("p")
    assert first.stderr == "models/p/checkpoint.pt: not found: starting p afresh\n"
    old = Path("models/p/model.pt").read_bytes()
    shutil.rmtree("labels")                                  # `dvc repro labels` with labels.strategy: raw_box
    shutil.copytree(shards.parent / "labels_raw_box", "labels")
    Path("models/p/model.pt").unlink()                       # and DVC deletes the train stage's outputs
    shutil.rmtree("models/p/live/plots")
    again = train_variant("p")
    assert again.stderr == ("models/p/checkpoint.pt: made with other label shards (their checksums differ): "
                            "starting p afresh\n")
    summary = json.loads(again.stdout)
    assert summary["iterations"] == summary["total_iterations"] == 2
    assert Path("models/p/model.pt").read_bytes() != old and Path("models/p/live/plots/metrics").is_dir()
    # and with the labels unchanged, the finished checkpoint gives the same model back
    Path("models/p/model.pt").rename("models/p/retrained.pt")
    shutil.rmtree("models/p/live/plots")
    third = train_variant("p")
    assert third.stderr == ("resuming p at iteration 2/2 from models/p/checkpoint.pt (same label shards, params and "
                            "code): the run is complete, exporting its model\n")
    assert Path("models/p/model.pt").read_bytes() == Path("models/p/retrained.pt").read_bytes()
    assert Path("models/p/live/plots/metrics/train/loss.tsv").is_file()


# ----------------------------------------------------------------------------- 2. NaN

def test_a_diverging_loss_stops_training_and_keeps_the_last_good_checkpoint(project):
    set_params(lr=1e6, warmup=0, epochs=4, checkpoint_every=2)
    line = error_line(mixseg("train", "--variant", "p+b+i", "--labels", "labels", "--out", "models",
                             "--no-progress"), "train")
    assert line == ("mixseg train: error: params.yaml: train.lr: loss became nan at iteration 3 (lr 8.87e+05 of "
                    "train.lr 1e+06): lower train.lr or raise train.warmup; the last good checkpoint (iteration 2) "
                    "is kept")
    assert not Path("models/p+b+i/model.pt").exists()
    ckpt = torch.load("models/p+b+i/checkpoint.pt", weights_only=False)
    assert ckpt["iteration"] == 2
    assert all(torch.isfinite(t).all() for t in ckpt["model"].values() if t.is_floating_point())


def test_a_model_with_non_finite_weights_is_refused_by_evaluate_predict_and_report(project):
    train_variant("p")
    train_variant("ub")
    assert mixseg("evaluate", "--variant", "ub", "--labels", "labels", "--no-progress").exit_code == 0
    model = torch.load("models/p/model.pt", weights_only=False)
    weight = next(k for k, t in model["model"].items() if t.is_floating_point() and t.numel() > 10)
    model["model"][weight].view(-1)[:7] = float("nan")
    torch.save(model, "models/p/model.pt")
    values = sum(t.numel() for t in model["model"].values() if t.is_floating_point())
    reason = f"models/p/model.pt: model has non-finite weights (7 of {values} values): retrain"
    assert error_line(mixseg("evaluate", "--variant", "p", "--labels", "labels", "--no-progress"),
                      "evaluate") == f"mixseg evaluate: error: {reason}"
    assert not Path("metrics/eval/p.json").exists()
    Image.fromarray(np.full((30, 44, 3), 120, np.uint8)).save("photo.jpg")
    assert error_line(mixseg("predict", "photo.jpg", "--model", "models/p/model.pt", "--out", "pred"),
                      "predict") == f"mixseg predict: error: {reason}"
    assert not Path("pred").exists()
    Path("metrics/eval/p.json").write_text(Path("metrics/eval/ub.json").read_text())
    assert error_line(mixseg("report", "--labels", "labels"), "report") == f"mixseg report: error: {reason}"
    assert not Path("report/results.md").exists()


# ----------------------------------------------------------------------------- 3. class count

def _model_of(classes, path):
    """A model.pt of the small network for ``classes`` (background first)."""
    from train.checkpoint import export_model
    from train.networks import build_model
    torch.manual_seed(0)
    export_model(path, build_model("small", len(classes)),
                 {"arch": "small", "variant": "p", "classes": classes, "num_classes": len(classes), "images": 1})


@pytest.mark.parametrize("count", [3, 30])
def test_a_model_of_another_class_count_is_refused_where_it_meets_the_shards(project, count):
    """5 classes in the shards; the model has 3 (evaluate used to give wrong numbers, exit 0)
    or 30 (a reshape traceback)."""
    train_variant("ub")
    assert mixseg("evaluate", "--variant", "ub", "--labels", "labels", "--no-progress").exit_code == 0
    classes = ["background"] + [f"c{k}" for k in range(1, count)]
    _model_of(classes, "models/p/model.pt")
    Path("metrics/eval/p.json").write_text("{\"mIU\": 1}")
    shard_classes = json.loads(Path("metrics/eval_classes/ub.json").read_text())["per_class_iou"]
    reason = (f"models/p/model.pt: model was trained on {count} classes ({', '.join(classes)}), but the shards in "
              f"labels have 5 ({', '.join(shard_classes)}): use the model trained on these shards")
    assert error_line(mixseg("evaluate", "--variant", "p", "--labels", "labels", "--no-progress"),
                      "evaluate") == f"mixseg evaluate: error: {reason}"
    assert Path("metrics/eval/p.json").read_text() == "{\"mIU\": 1}"   # not overwritten
    Path("metrics/eval/p.json").write_text(Path("metrics/eval/ub.json").read_text())
    assert error_line(mixseg("report", "--labels", "labels"), "report") == f"mixseg report: error: {reason}"
    assert not Path("report").exists() or not any(Path("report").iterdir())


# ----------------------------------------------------------------------------- 4. not a model

def test_a_file_or_folder_that_is_not_a_model_is_refused(project):
    Path("models/p").mkdir(parents=True)
    Path("models/p/model.pt").write_text("version https://git-lfs.github.com/spec/v1\n")
    assert error_line(mixseg("evaluate", "--variant", "p", "--labels", "labels", "--no-progress"), "evaluate") == (
        "mixseg evaluate: error: models/p/model.pt: not a mixseg model file (not written by torch.save: it starts "
        "with b'version https://')")
    Path("models/p/model.pt").unlink()
    Path("models/p/model.pt").mkdir()
    assert error_line(mixseg("predict", "x.jpg", "--model", "models/p/model.pt"), "predict") == (
        "mixseg predict: error: models/p/model.pt: not a mixseg model file (a folder)")
    Path("models/p/model.pt").rmdir()
    torch.save({"weights": {}}, "models/p/model.pt")   # a torch file of something else
    assert error_line(mixseg("evaluate", "--variant", "p", "--labels", "labels", "--no-progress"), "evaluate") == (
        "mixseg evaluate: error: models/p/model.pt: not a mixseg model file (it holds a dict of weights, not a dict "
        "of model and meta)")
    Path("models/p/model.pt").write_bytes(Path("models/p/model.pt").read_bytes()[:300])   # truncated
    assert error_line(mixseg("evaluate", "--variant", "p", "--labels", "labels", "--no-progress"), "evaluate") == (
        "mixseg evaluate: error: models/p/model.pt: not a mixseg model file (a truncated or damaged zip archive)")


# ----------------------------------------------------------------------------- 5. report

def test_report_names_the_missing_metrics_and_the_command_that_makes_them(project):
    train_variant("ub")
    assert mixseg("evaluate", "--variant", "ub", "--labels", "labels", "--no-progress").exit_code == 0
    set_params(variants=["p", "p+b", "ub"])
    assert error_line(mixseg("report", "--labels", "labels"), "report") == (
        "mixseg report: error: metrics/eval/p.json, metrics/eval/p+b.json: not found (the metrics of p, p+b in "
        "train.variants): make them with dvc repro evaluate@p evaluate@p+b")
    set_params(variants=["p", "ub"])
    assert error_line(mixseg("report", "--labels", "labels"), "report") == (
        "mixseg report: error: metrics/eval/p.json: not found (the metrics of p in train.variants): make it with "
        "dvc repro evaluate@p")
    Path("metrics/eval/p.json").write_text("{\"pAcc\": 1")
    assert error_line(mixseg("report", "--labels", "labels"), "report").startswith(
        "mixseg report: error: metrics/eval/p.json: not a metrics file of mixseg evaluate (")
    assert not Path("report").exists()

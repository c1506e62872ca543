"""Training, exact resume, evaluation, predict and DDP on tiny shards made by the real pipeline."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from pipeline.cli import main
from pipeline.core.config import LabelsConfig, SourceConfig, TrainConfig, UcmConfig, build, record
from pipeline.core.errors import InputError
from pipeline.core.index import write_index
from pipeline.labels.stage import run_labels
from pipeline.sources import load_source
from pipeline.split import split_ids
from pipeline.sources.synthetic import generate
from pipeline.ucm.stage import run_ucm

TINY = TrainConfig(arch="small", batch_size=4, crop=(32, 48), scale=(0.8, 1.2), epochs=2, checkpoint_every=2,
                   lr=0.01, seed=3, threads=1)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    generate(root / "raw", num_train=16, num_val=4, height=40, width=56, num_classes=4, seed=2, progress=False)
    src = root / "source"
    write_index(load_source(SourceConfig(kind="synthetic", root=str(root / "raw"))), src, progress=False)
    images = json.loads((src / "images.json").read_text())["items"]
    train_ids = [r["id"] for r in images if r["split"] == "train"]
    assignment = split_ids(train_ids, set(train_ids), counts={"pixel": 4, "box": 6, "image": 6}, seed=0)
    (root / "split.json").write_text(json.dumps({"format": "mixseg-split", "version": 1, "seed": 0,
                                                 "assignment": assignment}))
    run_ucm(src / "images.json", root / "ucm", UcmConfig(workers=1, shard_size=8), progress=False)
    for strategy, out in (("ucm", "labels"), ("raw_box", "labels_raw_box")):  # the second: other labels
        run_labels(src / "images.json", src / "annotations.json", root / "split.json", root / "ucm", root / out,
                   LabelsConfig(strategy=strategy, workers=1, shard_size=8), progress=False)
    return root / "labels"


def state_dict(path):
    return torch.load(path, weights_only=False)["model"]


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def curves(live):
    """Every file dvclive wrote under ``live``: relative path -> bytes."""
    return {str(p.relative_to(live)): p.read_bytes() for p in sorted(Path(live).rglob("*")) if p.is_file()}


def test_training_runs_and_writes_a_model(shards, tmp_path):
    from train.fit import load_model, train
    summary = train(TINY, shards, tmp_path / "m", "p+b+i", progress=False)
    assert summary["iterations"] == summary["total_iterations"] > 0
    assert all(np.isfinite(summary["losses"]))
    model, meta = load_model(tmp_path / "m/model.pt")
    assert meta["variant"] == "p+b+i" and meta["num_classes"] == 5 and meta["images"] == 16
    out = model(torch.zeros(1, 3, 40, 56))
    assert out.shape == (1, 5, 40, 56)
    assert (tmp_path / "m/live").exists()


@pytest.mark.parametrize("sampling", ["mixed", "subset"])
def test_equal_iterations_gives_every_variant_the_schedule_of_ub(shards, sampling):
    """16 training images (4 pixel, 6 box, 6 image), batch 4, 2 epochs: ub (all 16 as pixel
    images) runs 2 x 4 = 8 iterations; p alone 2 x 1; p+i 2 x 3 (mixed: 10 images) or
    2 x (1 + 2) (subset: a batch per kind).  equal_iterations gives every variant ub's 8; the
    variant's own images are still what it sees."""
    from train.data import ShardDataset, make_loader
    from train.fit import total_iterations
    cfg = dataclasses.replace(TINY, sampling=sampling)
    want_ub = 8
    for variant, own in (("p", 2), ("p+i", 6), ("ub", want_ub)):
        ds = ShardDataset(shards, "train", variant, crop=cfg.crop, seed=cfg.seed)
        loader = make_loader(ds, cfg.batch_size, sampling=sampling, seed=cfg.seed)
        assert total_iterations(cfg, loader) == own
        assert total_iterations(dataclasses.replace(cfg, equal_iterations=True), loader) == want_ub


def test_equal_iterations_without_true_masks(tmp_path):
    """A user's boxes-and-tags data has no true masks, so variant ub cannot train; ub's schedule
    (every training image once per epoch) is still defined and equal_iterations must use it."""
    from test_data import _write

    from train.data import ShardDataset, make_loader
    from train.fit import total_iterations
    folder = _write(tmp_path, ["pixel"] * 3 + ["box"] * 5 + ["image"] * 6, truth=False)   # 14 images
    cfg = dataclasses.replace(TINY, batch_size=4, epochs=2, equal_iterations=True)
    loader = make_loader(ShardDataset(folder, "train", "p", seed=0), 4)
    assert total_iterations(cfg, loader) == 2 * 4    # ceil(14 / 4) batches a pass, 2 passes


def test_equal_iterations_runs_p_for_ub_iterations(shards, tmp_path):
    from train.fit import train
    summary = train(dataclasses.replace(TINY, equal_iterations=True), shards, tmp_path / "m", "p", progress=False)
    assert summary["images"] == 4 and summary["iterations"] == summary["total_iterations"] == 8


@pytest.mark.parametrize("cfg,stop_at", [(TINY, 4), (dataclasses.replace(TINY, sampling="subset", checkpoint_every=3), 2)],
                         ids=["mixed", "subset"])
def test_interrupted_training_resumes_the_same_sequence_of_losses(shards, tmp_path, monkeypatch, cfg, stop_at):
    """p+b: 10 images in 3 batches an epoch, 6 iterations; the run stops mid-epoch (after
    batch 1 of epoch 1, or batch 2 of epoch 0) and resumes there."""
    from train.data import ShardDataset
    from train.fit import train
    loaded = []   # every (epoch, index) a run makes a sample of
    getitem = ShardDataset.__getitem__
    monkeypatch.setattr(ShardDataset, "__getitem__", lambda ds, key: loaded.append(key) or getitem(ds, key))
    full = train(cfg, shards, tmp_path / "a", "p+b", progress=False)["losses"]
    full_loaded, loaded[:] = list(loaded), []
    assert len(full) >= 4
    first = train(cfg, shards, tmp_path / "b", "p+b", max_iterations=stop_at, progress=False)["losses"]
    assert not (tmp_path / "b/model.pt").exists() and (tmp_path / "b/checkpoint.pt").exists()
    logs = []
    rest = train(cfg, shards, tmp_path / "b", "p+b", progress=False, log=logs.append)["losses"]
    assert logs == [f"resuming p+b at iteration {stop_at}/6 from {tmp_path / 'b/checkpoint.pt'} "
                    f"(same label shards, params and code)"] and len(full) == 6
    assert first + rest == full  # bit-identical on CPU
    # the resumed run made exactly the samples the uninterrupted run made after its third batch: none twice
    assert loaded == full_loaded
    assert (tmp_path / "a/model.pt").read_bytes() == (tmp_path / "b/model.pt").read_bytes()


def test_a_checkpoint_from_other_settings_is_not_resumed(shards, tmp_path):
    from train.fit import train
    logs = []
    train(TINY, shards, tmp_path / "c", "p", max_iterations=1, progress=False, log=logs.append)
    summary = train(dataclasses.replace(TINY, lr=0.02, epochs=3), shards, tmp_path / "c", "p", progress=False,
                    log=logs.append)
    ckpt = tmp_path / "c/checkpoint.pt"
    assert logs == [f"{ckpt}: not found: starting p afresh",
                    f"{ckpt}: made with other params (train.epochs 2, now 3; train.lr 0.01, now 0.02): starting p "
                    f"afresh"]
    assert summary["iterations"] == summary["total_iterations"] == len(summary["losses"])


def test_knobs_of_speed_and_logging_do_not_stop_a_resume(shards, tmp_path):
    from train.fit import train
    train(TINY, shards, tmp_path / "r", "p", max_iterations=1, progress=False)
    logs = []
    fast = dataclasses.replace(TINY, threads=2, workers=1, checkpoint_every=5, log_every=3, variants=("p",))
    train(fast, shards, tmp_path / "r", "p", progress=False, log=logs.append)
    assert logs[0].startswith("resuming p at iteration 1/")


def test_a_checkpoint_of_other_labels_or_code_is_not_resumed(shards, tmp_path, monkeypatch):
    """The stale-model bug: a finished checkpoint made on the ucm labels was resumed on the
    raw-box labels at iteration total/total and exported unchanged as model.pt."""
    from train import checkpoint
    from train.fit import train
    raw_box = shards.parent / "labels_raw_box"
    train(TINY, shards, tmp_path / "old", "p+b", progress=False)
    out = tmp_path / "m"
    shutil.copytree(tmp_path / "old", out)
    logs = []
    summary = train(TINY, raw_box, out, "p+b", progress=False, log=logs.append)
    assert logs == [f"{out / 'checkpoint.pt'}: made with other label shards (their checksums differ): "
                    f"starting p+b afresh"]
    assert summary["iterations"] == summary["total_iterations"] == len(summary["losses"]) == 6
    train(TINY, raw_box, tmp_path / "fresh", "p+b", progress=False)
    assert (out / "model.pt").read_bytes() == (tmp_path / "fresh/model.pt").read_bytes()   # the model of raw_box
    assert not same_weights(state_dict(out / "model.pt"), state_dict(tmp_path / "old/model.pt"))

    # an edited trainer module or another version of mixseg: afresh too
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    ckpt["meta"]["code"]["train.losses"] = "0" * 64
    torch.save(ckpt, out / "checkpoint.pt")
    logs = []
    train(TINY, raw_box, out, "p+b", max_iterations=1, progress=False, log=logs.append)
    assert logs == [f"{out / 'checkpoint.pt'}: made with other code (train/losses.py changed): starting p+b afresh"]
    monkeypatch.setattr(checkpoint, "__version__", "9.9.9")
    logs = []
    train(TINY, raw_box, out, "p+b", max_iterations=1, progress=False, log=logs.append)
    assert logs == [f"{out / 'checkpoint.pt'}: made with mixseg 0.1.0, now 9.9.9: starting p+b afresh"]


def test_a_finished_run_exports_the_same_model_and_curves_again(shards, tmp_path):
    """`dvc repro` deletes model.pt and live/plots/metrics (outputs) before it reruns the stage:
    a matching finished checkpoint gives them back, bit for bit; the DVC error was
    "output 'models/p+b+i/live/plots/metrics' does not exist"."""
    from train.fit import train
    out = tmp_path / "done"
    train(TINY, shards, out, "p+b+i", progress=False)
    model, live = (out / "model.pt").read_bytes(), curves(out / "live")
    (out / "model.pt").unlink()
    shutil.rmtree(out / "live/plots")
    logs = []
    summary = train(TINY, shards, out, "p+b+i", progress=False, log=logs.append)
    assert logs == [f"resuming p+b+i at iteration 8/8 from {out / 'checkpoint.pt'} (same label shards, params and "
                    f"code): the run is complete, exporting its model"]
    assert summary["losses"] == [] and (out / "model.pt").read_bytes() == model
    assert curves(out / "live") == live and (out / "live/plots/metrics/train/loss.tsv").exists()


@pytest.mark.parametrize("dvc_deletes_the_curves", [False, True], ids=["files-kept", "dvc-repro"])
def test_a_resumed_run_writes_the_curves_of_an_uninterrupted_run(shards, tmp_path, dvc_deletes_the_curves):
    """The bug: after a resume the .tsv files started at the resume step (75 rows against 125).
    12 iterations, a row every 5 and at the end; interrupted after 7 (a row at 5, two
    iterations of the next row's window in the checkpoint)."""
    from train.fit import train
    cfg = dataclasses.replace(TINY, epochs=4, log_every=5, checkpoint_every=3)
    train(cfg, shards, tmp_path / "full", "p+b", progress=False)
    train(cfg, shards, tmp_path / "cut", "p+b", max_iterations=7, progress=False)
    assert (tmp_path / "cut/live/plots/metrics/train/loss.tsv").read_text().splitlines()[1:] == [
        (tmp_path / "full/live/plots/metrics/train/loss.tsv").read_text().splitlines()[1]]
    if dvc_deletes_the_curves:
        shutil.rmtree(tmp_path / "cut/live/plots")
    train(cfg, shards, tmp_path / "cut", "p+b", progress=False)
    full = curves(tmp_path / "full/live")
    assert set(full) >= {"metrics.json", "plots/metrics/train/loss.tsv", "plots/metrics/train/lr.tsv",
                         "plots/metrics/train/loss_pixel.tsv", "plots/metrics/train/loss_box.tsv"}
    assert curves(tmp_path / "cut/live") == full
    steps = [line.split("\t")[0] for line in full["plots/metrics/train/loss.tsv"].decode().splitlines()]
    assert steps == ["step", "5", "10", "12"]


def test_the_progress_bar_starts_at_the_resume_point_with_rate_and_eta(shards, tmp_path, capsys):
    from train.fit import train
    train(TINY, shards, tmp_path / "bar", "p", max_iterations=1, progress=True, log=print)
    first = capsys.readouterr()
    assert "p:   0%|" in first.err and "0/2 [00:00<?, ?it/s]" in first.err   # drawn before the first batch
    train(TINY, shards, tmp_path / "bar", "p", progress=True, log=print)
    second = capsys.readouterr()
    assert second.out.startswith("resuming p at iteration 1/2")
    frames = second.err.split("\r")
    assert "1/2 [00:00<?, ?it/s]" in frames[1]    # initial = the resume point
    assert "2/2 [" in frames[-1] and "it/s, loss " in frames[-1] and "<00:00" in frames[-1]
    train(TINY, shards, tmp_path / "quiet", "p", progress=False, log=print)
    assert capsys.readouterr().err == ""


def test_evaluate_report_and_predict_commands(shards, tmp_path, monkeypatch):
    from train.fit import train
    for v in ("p", "ub"):
        train(TINY, shards, tmp_path / "models" / v, v, progress=False)
    monkeypatch.chdir(tmp_path)
    Path("params.yaml").write_text("train:\n  variants: [p, ub]\n  arch: small\nsplit:\n  ratio: [1, 5, 10]\n")
    runner = CliRunner()
    for v in ("p", "ub"):
        r = runner.invoke(main, ["evaluate", "--variant", v, "--labels", str(shards), "--no-progress"])
        assert r.exit_code == 0, r.output
        m = json.loads(Path(f"metrics/eval/{v}.json").read_text())
        assert 0 <= m["mIU"] <= 100 and 0 <= m["pAcc"] <= 100
        assert json.loads(Path(f"metrics/eval_classes/{v}.json").read_text())["images"] == 4
    r = runner.invoke(main, ["report", "--labels", str(shards)])
    assert r.exit_code == 0, r.output
    table = Path("report/results.md").read_text()
    assert "| small-p |" in table and "| small-ub |" in table
    assert Path("report/fig6.png").stat().st_size > 0 and Path("report/fig7.png").stat().st_size > 0
    Image.fromarray(np.full((30, 44, 3), 120, np.uint8)).save("photo.jpg")
    r = runner.invoke(main, ["predict", "photo.jpg", "--model", "models/p/model.pt", "--out", "pred"])
    assert r.exit_code == 0, r.output
    png = Image.open("pred/photo.png")
    assert png.mode == "P" and png.size == (44, 30) and max(np.array(png).ravel()) < 5


def test_a_model_with_the_wrong_number_of_classes_is_refused(shards, tmp_path):
    from train.fit import load_model, train
    train(TINY, shards, tmp_path / "w", "p", progress=False)
    ckpt = torch.load(tmp_path / "w/model.pt", weights_only=False)
    ckpt["meta"]["num_classes"] = 9
    torch.save(ckpt, tmp_path / "w/bad.pt")
    with pytest.raises(InputError, match="bad.pt: state dict does not fit a small with 9 classes"):
        load_model(tmp_path / "w/bad.pt")
    with pytest.raises(InputError, match="model file not found"):
        load_model(tmp_path / "w/none.pt")


@pytest.mark.slow
def test_torchrun_ddp_two_processes_gloo(shards, tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(
        "import json, sys\n"
        "from pipeline.core.config import TrainConfig, build\n"
        "from train.fit import train\n"
        f"cfg = build(TrainConfig, json.loads({json.dumps(record(TINY))!r}), 'train')\n"
        f"s = train(cfg, {str(shards)!r}, {str(tmp_path / 'ddp')!r}, 'p+b+i', progress=False)\n"
        "import torch.distributed as dist\n"
        f"open({str(tmp_path)!r} + f'/rank{{dist.get_rank()}}.json', 'w').write(json.dumps(s))\n")
    repo = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))}
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                        "29517", str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    from train.fit import train
    single = train(TINY, shards, tmp_path / "single", "p+b+i", max_iterations=0, progress=False)
    # each rank gets a disjoint half of every epoch's batches
    assert r0["total_iterations"] == r1["total_iterations"] < single["total_iterations"]
    assert r0["iterations"] == r0["total_iterations"] and all(np.isfinite(r0["losses"] + r1["losses"]))
    assert (tmp_path / "ddp/model.pt").exists()


def test_learning_rate_warm_up_and_schedules_by_hand():
    from train.fit import lr_at
    c = TrainConfig(lr=0.1, warmup=10, schedule="constant")
    assert [round(lr_at(c, it, 100), 6) for it in (0, 4, 9, 10, 99)] == [0.01, 0.05, 0.1, 0.1, 0.1]
    # the warm-up never takes more than a fifth of the run: 20 iterations -> 4 warm-up iterations
    assert [round(lr_at(c, it, 20), 6) for it in (0, 1, 3, 4)] == [0.025, 0.05, 0.1, 0.1]
    poly = TrainConfig(lr=0.1, warmup=0, schedule="poly")
    assert lr_at(poly, 0, 100) == pytest.approx(0.1)
    assert lr_at(poly, 50, 100) == pytest.approx(0.1 * 0.5 ** 0.9)
    step = TrainConfig(lr=0.1, warmup=0, schedule="step")
    assert [lr_at(step, it, 90) for it in (0, 29, 30, 60)] == pytest.approx([0.1, 0.1, 0.01, 0.001])


def test_paper_mode_is_the_papers_setting_whatever_the_practical_defaults():
    c = build(TrainConfig, {"mode": "paper"}, "train")
    assert (c.batch_size, c.crop, c.sampling, c.reduction) == (1, None, "subset", "paper")
    assert (c.lr, c.schedule, c.warmup, c.momentum, c.weight_decay) == (1e-4, "constant", 0, 0.9, 5e-4)
    practical = build(TrainConfig, {}, "train")
    assert (practical.reduction, practical.sampling, practical.warmup) == ("mean", "mixed", 100)

"""Training, exact resume, evaluation, predict and DDP on tiny shards made by the real pipeline."""

import dataclasses
import json
import os
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
    run_labels(src / "images.json", src / "annotations.json", root / "split.json", root / "ucm", root / "labels",
               LabelsConfig(strategy="ucm", workers=1, shard_size=8), progress=False)
    return root / "labels"


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
    assert logs[0] == f"resuming p+b at iteration {stop_at}/6" and len(full) == 6
    assert first + rest == full  # bit-identical on CPU
    # the resumed run made exactly the samples the uninterrupted run made after its third batch: none twice
    assert loaded == full_loaded
    a = torch.load(tmp_path / "a/model.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "b/model.pt", weights_only=False)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_checkpoint_from_other_settings_is_not_resumed(shards, tmp_path):
    from train.fit import train
    train(TINY, shards, tmp_path / "c", "p", max_iterations=1, progress=False)
    logs = []
    summary = train(dataclasses.replace(TINY, lr=0.02), shards, tmp_path / "c", "p", progress=False,
                    log=logs.append)
    assert any("starting afresh" in m for m in logs)
    assert summary["iterations"] == summary["total_iterations"]


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
        assert 0 <= m["mIU"] <= 100 and 0 <= m["pAcc"] <= 100 and m["images"] == 4
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

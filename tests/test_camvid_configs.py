"""The real-photo configs (configs/camvid-*.yaml) and their table script
(benchmarks/camvid_table.py), on a CamVid-layout fixture written in the real format
(train/, trainannot/, val/, valannot/; RGB PNG photos, single-channel class maps 0-10, void 11)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from pipeline.core.config import build, load_config, record

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("camvid-*.yaml"))


def _module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_the_four_configs_are_what_the_generator_writes():
    gen = _module(REPO / "configs" / "make_camvid_configs.py", "make_camvid_configs")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    names = {p.stem for p in CONFIGS}
    assert names == {f"camvid-{n}-{r}" for n in gen.NETWORKS for r in gen.RATIOS}
    for net in gen.NETWORKS:
        for key, ratio in gen.RATIOS.items():
            text = (REPO / "configs" / f"camvid-{net}-{key}.yaml").read_text()
            assert yaml.safe_load(text) == gen.camvid_config(params, net, ratio), f"regenerate camvid-{net}-{key}"
            assert f"cp configs/camvid-{net}-{key}.yaml params.yaml && dvc repro" in text


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_pixel_a_real_class_every_class_boxed(path):
    cfg = load_config(path)
    cm = cfg.source.classmaps
    assert cfg.source.kind == "classmaps" and cfg.synthetic.out == ()
    assert len(cm.classes) == 11 and cm.void == 11 and cm.background is False and cm.things == ()
    assert [tuple(p) for p in cm.train] == [("train", "trainannot")] and [tuple(p) for p in cm.val] == [("val", "valannot")]
    assert cfg.split.ratio in ((1, 5, 10), (1, 2, 3))
    assert cfg.train.threads == 1 and cfg.train.variants == ("p", "p+i", "p+b", "p+b+i", "ub")
    if "lite0" in path.stem:
        assert (cfg.train.arch, cfg.train.pretrained) == ("efficientnet_lite0", "efficientnet-lite0")
    else:
        assert (cfg.train.arch, cfg.train.pretrained) == ("small", None)


def write_camvid(root: Path, n_train=8, n_val=2, h=48, w=64):
    """Street-like scenes: sky on top, road below, a building block, a car and a pedestrian."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", n_val)):
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir(parents=True)
        for k in range(n):
            cls = np.full((h, w), 3, np.uint8)                       # road
            cls[: h // 3] = 0                                        # sky
            x0 = int(rng.integers(0, w // 2))
            cls[h // 6: h // 2, x0: x0 + w // 3] = 1                 # building
            cls[h // 2 + 4: h // 2 + 12, 5 + k: 25 + k] = 8          # car
            cls[h // 2: h - 4, w - 10: w - 6] = 9                    # pedestrian
            cls[0, 0] = 11                                           # void
            colours = np.array([[120, 160, 230], [110, 90, 80], [200, 200, 200], [70, 70, 70], [150, 150, 120],
                                [40, 120, 40], [220, 200, 0], [120, 100, 60], [200, 30, 30], [230, 180, 150],
                                [20, 20, 200], [0, 0, 0]], np.uint8)
            rgb = np.clip(colours[cls].astype(int) + rng.integers(-12, 13, (h, w, 3)), 0, 255).astype(np.uint8)
            name = f"0001TP_{k:06d}" if split == "train" else f"0016E5_{k:05d}"
            Image.fromarray(rgb).save(root / split / f"{name}.png")
            Image.fromarray(cls, "L").save(root / f"{split}annot" / f"{name}.png")
    return root


@pytest.mark.slow
def test_table_script_runs_a_config_end_to_end_without_a_phantom_background(tmp_path):
    table = _module(REPO / "benchmarks" / "camvid_table.py", "camvid_table")
    root = write_camvid(tmp_path / "camvid")
    cfg = load_config(REPO / "configs" / "camvid-small-1-2-3.yaml")
    cfg = build(type(cfg), {**record(cfg), "source": {**record(cfg.source), "root": str(root)},
                            "ucm": {**record(cfg.ucm), "scales": [1.0]}})
    labels = table.prepare(cfg, tmp_path / "work", workers=1)
    from pipeline.core.shards import ShardReader
    reader = ShardReader(labels, split="train")
    assert reader.background is False
    for image_id in reader.ids_of_kind("box"):      # every box pixel a real class; none taught background
        assert not (reader.label(image_id) & 1).any()
    train = {**record(cfg.train), "epochs": 1, "crop": [32, 48], "warmup": 0, "batch_size": 2}
    train.pop("reduction", None)
    results = [table.run_one({"config": "camvid-small-1-2-3", "seed": 0, "variant": v, "equal": eq,
                              "train": {**train, "equal_iterations": eq}, "labels": str(labels),
                              "out": str(tmp_path / "models" / f"{v}-{eq}")})
               for v, eq in (("p", False), ("p", True), ("ub", False))]
    for r in results:
        assert r["per_class_iou"]["background"] is None      # never predicted, so never scored
        assert 0 <= r["metrics"]["mIU"] <= 100
    assert results[1]["iterations"] == results[2]["iterations"] > results[0]["iterations"]   # ub's schedule
    summary = table.summarise(results, ["p", "ub"])
    assert set(summary) == {"camvid-small-1-2-3", "camvid-small-1-2-3 equal-iterations"}
    text = table.markdown(summary)
    assert "| p |" in text and "| ub |" in text
    json.dumps(summary)

"""``mixseg inspect``: colours named after their classes, legends that say what is there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.core.palette import class_palette
from pipeline.core.shards import LabelMap, ShardReader
from pipeline.labels.inspect import UNCERTAIN_RGB, _legend, colorize


def test_classes_named_after_a_colour_are_drawn_in_it():
    pal = class_palette(["background", "red_stripes", "lime_waves", "violet_waves", "car", "gold_dots"])
    assert pal[0].tolist() == [0, 0, 0]
    assert pal[1].tolist() == [255, 0, 0] and pal[2].tolist() == [0, 255, 0]  # lime_waves is lime, not orange
    assert pal[3].tolist() == [238, 130, 238] and pal[5].tolist() == [255, 215, 0]
    assert pal[4].tolist() == [0, 0, 128]  # no colour word: the VOC palette colour of index 4
    assert len(class_palette([f"c{i}" for i in range(300)])) == 300  # any class count


def test_legend_lists_present_classes_and_ignored_only_when_some_pixel_is():
    classes = ["background", "red_stripes", "lime_waves"]
    pal = class_palette(classes) / 255
    labels = np.array([[1, 2], [2, 6]], np.uint8)  # background, red, red, red+lime
    assert [h.get_label() for h in _legend(labels, None, classes, pal)] == ["background", "red_stripes", "lime_waves"]
    labels[0, 0] = 0
    assert [h.get_label() for h in _legend(labels, labels, classes, pal)][-2:] == \
        ["white: ignored in the label (1 px)", "white: void in the truth (1 px)"]


def test_colorize_and_legend_for_151_classes_with_soft_pixels():
    """Classes 70 and 140 alone, the set {70, 140} the mean of their colours, ignored white."""
    classes = ["background"] + [f"c{k}" for k in range(1, 151)]
    pal = class_palette(classes)
    lm = LabelMap(np.array([[70, 140], [151, 255]], np.uint8), 151, [70, 140], [0, 2])
    rgb = colorize(lm, classes)
    assert rgb[0, 0].tolist() == pal[70].tolist() and rgb[0, 1].tolist() == pal[140].tolist()
    assert rgb[1, 0].tolist() == ((pal[70].astype(float) + pal[140]) / 2).astype(np.uint8).tolist()
    assert rgb[1, 1].tolist() == list(UNCERTAIN_RGB)
    names = [h.get_label() for h in _legend(lm, None, classes, pal / 255)]
    assert names == ["c70", "c140", "white: ignored in the label (1 px)"]


def test_inspect_renders_fig4_and_fig5(project):
    runner = CliRunner()
    for stage in ("source", "split", "ucm", "labels"):
        assert runner.invoke(main, [stage] + ([] if stage == "split" else ["--no-progress"])).exit_code == 0
    shard = sorted(Path("data/labels").glob("labels-train-*.h5"))[0]
    result = runner.invoke(main, ["inspect", str(shard), "--out", "inspect"])
    assert result.exit_code == 0, result.output
    pngs = sorted(p.name for p in Path("inspect").glob("*.png"))
    assert any(p.endswith("_fig5.png") for p in pngs) and any(p.endswith("_fig4.png") for p in pngs), pngs
    r = ShardReader(shard)
    assert "box" in {r.kind(i) for i in r.ids}
    r.close()

"""``mixseg inspect``: colours named after their classes, legends that say what is there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.core.palette import class_palette
from pipeline.core.shards import ShardReader
from pipeline.labels.inspect import _legend


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

"""`on_error: skip` at the ucm and labels stages (SPEC section 8): a bad image is left out,
listed with its reason in the stage's output folder (written with the shards, atomically)
and counted in the stage summary; the default `fail` stops with the file and the reason.

The labels-stage tests need the `labels.on_error` patch of pipeline/labels/stage.py."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.core.fileio import write_palette_png
from pipeline.core.shards import ShardReader, UcmReader
from pipeline.core.verify import verify

VOC = Path("data/raw/synthetic/VOCdevkit/VOC2012")


@pytest.fixture
def ucm_project(project):
    """The tiny project with the labels strategy pinned to ucm."""
    set_param("labels", strategy="ucm")
    return project


def invoke(*args):
    extra = ["--no-progress"] if args[0] in ("source", "ucm", "labels") else []
    return CliRunner().invoke(main, list(args) + extra)


def set_param(stage, **kw):
    params = yaml.safe_load(Path("params.yaml").read_text())
    params[stage].update(kw)
    Path("params.yaml").write_text(yaml.safe_dump(params))


def run_ok(*stages):
    for stage in stages:
        result = invoke(stage)
        assert result.exit_code == 0, result.output


def split_of(kind):
    return sorted(i for i, k in json.loads(Path("data/split.json").read_text())["assignment"].items() if k == kind)


def image_path(image_id):
    return next(r["path"] for r in json.loads(Path("data/source/images.json").read_text())["items"]
                if r["id"] == image_id)


def test_ucm_stage_fails_by_default_and_skips_with_on_error_skip(ucm_project):
    run_ok("source", "split")
    victim = split_of("box")[0]
    p = Path(image_path(victim))
    p.write_bytes(p.read_bytes()[:150])  # the image broke after the source stage
    result = invoke("ucm")
    assert result.exit_code == 2 and str(p) in result.output and "unreadable or truncated image" in result.output
    assert not Path("data/ucm").exists()

    set_param("ucm", on_error="skip")
    result = invoke("ucm")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["skipped"] == 1
    assert json.loads(Path("metrics/ucm.json").read_text())["skipped"] == 1  # the count is a DVC metric
    skipped = json.loads(Path("data/ucm/skipped.json").read_text())
    assert [s["id"] for s in skipped] == [victim] and skipped[0]["path"] == str(p)
    assert "unreadable or truncated image" in skipped[0]["reason"]
    r = UcmReader("data/ucm")
    assert victim not in r and len(r.ids) == 7 and "unreadable" in r.skipped[victim]
    r.close()
    assert verify(["data/ucm"]).problems == []


def test_a_clean_run_lists_no_skips_and_every_item_skipped_is_an_error(ucm_project):
    run_ok("source", "split", "ucm")
    assert json.loads(Path("data/ucm/skipped.json").read_text()) == []
    before = {p.name: p.read_bytes() for p in Path("data/ucm").iterdir()}
    set_param("ucm", on_error="skip", method="external", external_dir="nowhere_ucms")
    Path("nowhere_ucms").mkdir()
    result = invoke("ucm")
    assert result.exit_code == 2 and "every item was skipped (8; the first because: no external UCM" in result.output
    assert {p.name: p.read_bytes() for p in Path("data/ucm").iterdir()} == before  # old output kept
    set_param("ucm", on_error="maybe")
    result = invoke("ucm")
    assert result.exit_code == 2 and "params.yaml: ucm.on_error: expected one of fail, skip, got 'maybe'" in result.output


def test_labels_stage_skips_a_mis_sized_mask(ucm_project):
    run_ok("source", "split", "ucm")
    victim = split_of("pixel")[0]
    mask = VOC / f"SegmentationClass/{victim}.png"
    write_palette_png(mask, np.zeros((10, 10), np.uint8))  # changed after the source stage
    result = invoke("labels")
    assert result.exit_code == 2 and str(mask) in result.output and "mask is 10x10, image is 48x36" in result.output
    assert not Path("data/labels").exists()

    set_param("labels", on_error="skip")
    result = invoke("labels")
    assert result.exit_code == 0, result.output
    skipped = json.loads(Path("data/labels/skipped.json").read_text())
    assert skipped == [{"id": victim, "path": str(mask), "reason": "mask is 10x10, image is 48x36"}]
    metrics = json.loads(Path("metrics/labels.json").read_text())
    assert metrics["skipped"] == 1 and metrics["train"]["pixel"] == len(split_of("pixel")) - 1
    r = ShardReader("data/labels", split="train")
    assert victim not in r.ids and len(r.ids) == 7
    r.close()
    assert verify(["data/labels"]).problems == []


def test_an_image_the_ucm_stage_skipped_is_skipped_by_labels_with_the_reason(ucm_project):
    run_ok("source", "split")
    victim = split_of("box")[0]
    p = Path(image_path(victim))
    p.write_bytes(b"")
    set_param("ucm", on_error="skip")
    run_ok("ucm")
    result = invoke("labels")
    assert result.exit_code == 2 and f"no UCM for image {victim} (the ucm stage skipped it:" in result.output
    set_param("labels", on_error="skip")
    run_ok("labels")
    skipped = json.loads(Path("data/labels/skipped.json").read_text())
    assert [s["id"] for s in skipped] == [victim] and "the ucm stage skipped it" in skipped[0]["reason"]
    assert json.loads(Path("metrics/labels.json").read_text())["skipped"] == 1

"""Issue #14, end to end through the stages: non-ASCII image names, a deleted shard, a damaged
stored JPEG.  The tiny synthetic project of tests/conftest.py (8 train + 2 val images), four of
its images renamed to non-ASCII ids, runs source, split, ucm and labels; then each test damages
the outputs the way the issue describes."""

import json
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.core.errors import InputError
from pipeline.core.fileio import decode_image
from pipeline.core.shards import ShardReader, UcmReader

#: old id -> non-ASCII id (the VOC lists split lines on whitespace, so no spaces here;
#: tests/test_shards.py round-trips ids with spaces through the writers and readers)
RENAMED = {"syn_000000": "ünïcødé_€漢字", "syn_000001": "Ωmega-ß", "syn_000002": "😀emoji", "syn_000008": "vål漢"}
VOC = Path("data/raw/synthetic/VOCdevkit/VOC2012")


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def rename(old, new, lists=True):
    """Rename image ``old`` of the dataset to ``new``: the image, its masks, its XML (and the lists), consistently."""
    for folder in ("JPEGImages", "SegmentationClass", "SegmentationObject", "Annotations"):
        for f in (VOC / folder).glob(f"{old}.*"):
            f.rename(f.with_name(new + f.suffix))
    for text in [VOC / "Annotations" / f"{new}.xml"] + (sorted((VOC / "ImageSets").rglob("*.txt")) if lists else []):
        text.write_text(text.read_text(encoding="utf-8").replace(old, new), encoding="utf-8")


def run_stages():
    for stage in ("source", "split", "ucm", "labels"):
        result = invoke(stage, *(["--no-progress"] if stage != "split" else []))
        assert result.exit_code == 0, f"{stage}: {result.output} {result.exception!r}"


@pytest.fixture
def staged(project):
    """``project`` after source, split, ucm and labels, with non-ASCII ids of every kind."""
    for old, new in RENAMED.items():
        rename(old, new)
    run_stages()
    return project


def test_non_ascii_image_names_go_through_every_stage_and_read_back(staged):
    train = ShardReader("data/labels", split="train")
    ucm = UcmReader("data/ucm")
    ours = [i for i in RENAMED.values() if i in train.ids]
    assert len(ours) == 3 and {train.kind(i) for i in ours} == {"pixel", "box", "image"}
    for i in ours:
        np.testing.assert_array_equal(train.image(i), decode_image((VOC / "JPEGImages" / f"{i}.jpg").read_bytes(), i))
        assert train.image_bytes(i) == (VOC / "JPEGImages" / f"{i}.jpg").read_bytes()
        assert (train.label(i) is None) == (train.kind(i) == "image") and train.truth(i).shape == (36, 48)
        assert i in ucm and ucm[i].shape == (73, 97)
    val = ShardReader("data/labels", split="val")
    assert "vål漢" in val.ids and val.truth("vål漢").shape == (36, 48)
    for r in (train, ucm, val):
        r.close()
    result = invoke("verify", "data/ucm", "data/labels")
    assert result.exit_code == 0 and result.stdout == "", result.output


def test_the_issue_s_image_name_through_a_boxes_dataset(project):
    """The name of the report, space included: the ``boxes`` source takes ids from file stems."""
    name = "ünïcødé €漢字"
    rename("syn_000000", name, lists=False)
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["synthetic"]["out"] = []
    params["source"].update(kind="boxes", root=str(VOC), boxes="Annotations")
    params["source"]["boxes_source"].update(images="JPEGImages", masks="SegmentationClass", classes="classes.txt",
                                            val_list="ImageSets/Segmentation/val.txt")
    Path("params.yaml").write_text(yaml.safe_dump(params))
    run_stages()
    r = ShardReader("data/labels", split="train")
    assert name in r.ids and r.kind(name) == "box" and r.label(name).shape == (36, 48)
    assert r.image_bytes(name) == (VOC / "JPEGImages" / f"{name}.jpg").read_bytes()
    assert UcmReader("data/ucm")[name].shape == (73, 97)
    assert invoke("verify", "data/ucm", "data/labels").exit_code == 0


def test_a_deleted_label_shard_is_reported_by_verify_and_refused_by_the_reader(staged):
    Path("data/labels/labels-train-00003.h5").unlink()
    line = "data/labels/labels-train-00003.h5: listed in data/labels/manifest.json but missing: rerun the labels stage"
    result = invoke("verify", "data/labels")
    assert result.exit_code == 1 and result.stdout.splitlines() == [line], result.output
    with pytest.raises(InputError) as e:
        ShardReader("data/labels", split="train")  # what the trainer opens
    assert str(e.value) == line


def test_a_deleted_ucm_shard_stops_the_labels_stage_in_one_line(staged):
    before = {p.name: p.read_bytes() for p in Path("data/labels").iterdir()}
    Path("data/ucm/ucm-00005.h5").unlink()
    result = invoke("labels", "--no-progress")
    assert result.exit_code == 2
    assert result.output == ("mixseg labels: error: data/ucm/ucm-00005.h5: listed in data/ucm/manifest.json but "
                             "missing: rerun the ucm stage\n")
    assert {p.name: p.read_bytes() for p in Path("data/labels").iterdir()} == before  # the old output is kept


def test_flipped_bytes_in_a_stored_jpeg_are_caught_when_the_image_is_read(staged):
    labels = Path("data/labels")
    i = "ünïcødé_€漢字"
    r = ShardReader(labels, split="train")
    good, pixels = r.image_bytes(i), r.image(i)
    shard = r._shards.paths[r._where[i][0]]
    r.close()
    data = bytearray(shard.read_bytes())  # bit rot on disk: three bytes a third into the JPEG's scan data
    start = data.find(good)
    sos = good.find(b"\xff\xda")
    at = start + sos + (len(good) - sos) // 3
    data[at:at + 3] = bytes(b ^ 0x5A for b in data[at:at + 3])
    shard.write_bytes(bytes(data))

    bad = bytes(data[start:start + len(good)])
    assert np.any(decode_image(bad, i) != pixels, axis=2).mean() > 0.3  # decodes, a third of it or more wrong
    computed = zlib.crc32(bad)
    r = ShardReader(labels, split="train")
    with pytest.raises(InputError) as e:
        r.image(i)
    assert str(e.value) == (f"{shard}: image of {i}: checksum mismatch (stored {zlib.crc32(good):08x}, computed "
                            f"{computed:08x}): the shard is damaged; rerun the labels stage")
    others = [j for j in r.ids if j != i]
    assert all(r.image(j).shape == (36, 48, 3) for j in others)  # the rest of the folder still reads
    r.close()
    result = invoke("verify", labels)
    assert result.exit_code == 1
    assert f"{shard}: {i}: image checksum mismatch (stored {zlib.crc32(good):08x}" in result.stdout
    assert f"{shard}: file checksum mismatch (stored " in result.stdout


def test_each_stage_output_lists_its_shards(staged):
    for stage, pattern in (("ucm", "ucm-*.h5"), ("labels", "labels-*.h5")):
        folder = Path("data") / stage
        doc = json.loads((folder / "manifest.json").read_text())
        assert doc["stage"] == stage and doc["skipped"] == 0
        assert [e["name"] for e in doc["files"]] == sorted(p.name for p in folder.glob(pattern))
        assert all(e["bytes"] == (folder / e["name"]).stat().st_size for e in doc["files"])
        assert doc["images"] == sum(e["images"] for e in doc["files"]) == (8 if stage == "ucm" else 10)

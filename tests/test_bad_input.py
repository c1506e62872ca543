"""SPEC section 8 through the command line: a message naming the file and the reason,
exit status 2, and no output (or temporary file) left behind."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from pipeline.cli import main
from pipeline.core.fileio import write_palette_png

VOC = Path("data/raw/synthetic/VOCdevkit/VOC2012")







def invoke(*args):
    return CliRunner().invoke(main, list(args) + (["--no-progress"] if args[0] in
                                                 ("source", "ucm", "labels", "quality") else []))


def assert_fails(result, *fragments):
    assert result.exit_code == 2, result.output
    for frag in fragments:
        assert frag in result.output, result.output


def assert_nothing_left(*outputs):
    for out in outputs:
        assert not Path(out).exists(), f"{out} was written"
    for folder in (Path("data"), Path("data/source"), Path("metrics")):
        if folder.exists():
            assert not [p.name for p in folder.iterdir() if p.name.startswith(".")], "temporary files left"


def first_id(split="train"):
    return (VOC / f"ImageSets/Segmentation/{split}.txt").read_text().split()[0]


def edit_xml(image_id, old, new):
    p = VOC / f"Annotations/{image_id}.xml"
    text = p.read_text()
    assert old in text
    p.write_text(text.replace(old, new, 1))
    return p


def test_truncated_image(project):
    p = VOC / f"JPEGImages/{first_id()}.jpg"
    p.write_bytes(p.read_bytes()[:200])
    assert_fails(invoke("source"), str(p), "unreadable or truncated image")
    assert_nothing_left("data/source", "metrics/source.json")


def test_on_error_skip_lists_the_bad_image_and_counts_it(project):
    p = VOC / f"JPEGImages/{first_id()}.jpg"
    p.write_bytes(b"")
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["source"]["on_error"] = "skip"
    Path("params.yaml").write_text(yaml.safe_dump(params))
    result = invoke("source")
    assert result.exit_code == 0, result.output
    skipped = json.loads(Path("data/source/skipped.json").read_text())
    assert [s["id"] for s in skipped] == [first_id()] and skipped[0]["reason"] == "empty image file (0 bytes)"
    assert skipped[0]["path"] == str(p)
    assert json.loads(Path("metrics/source.json").read_text())["skipped"] == 1
    images = json.loads(Path("data/source/images.json").read_text())["items"]
    assert first_id() not in {r["id"] for r in images} and len(images) == 9


def test_missing_mask(project):
    p = VOC / f"SegmentationClass/{first_id()}.png"
    p.unlink()
    assert_fails(invoke("source"), first_id())
    assert_nothing_left("data/source")


def test_mis_sized_mask(project):
    p = VOC / f"SegmentationClass/{first_id()}.png"
    write_palette_png(p, np.zeros((10, 10), np.uint8))
    assert_fails(invoke("source"), str(p), "mask is 10x10 but image")
    assert_nothing_left("data/source")


def test_mask_value_beyond_the_class_list(project):
    p = VOC / f"SegmentationClass/{first_id()}.png"
    m = np.array(Image.open(p))
    m[0, 0] = 9  # 4 classes + background
    write_palette_png(p, m)
    assert_fails(invoke("source"), str(p), "class index 9 in mask")
    assert_nothing_left("data/source")


def test_box_outside_the_image(project):
    i = first_id()
    text = (VOC / f"Annotations/{i}.xml").read_text()
    xmin = text.split("<xmin>")[1].split("<")[0]
    xmax = text.split("<xmax>")[1].split("<")[0]
    p = edit_xml(i, f"<xmin>{xmin}</xmin>", "<xmin>200</xmin>")
    edit_xml(i, f"<xmax>{xmax}</xmax>", "<xmax>230</xmax>")
    assert_fails(invoke("source"), str(p), "lies outside image")
    assert_nothing_left("data/source")


def test_inverted_box(project):
    i = first_id()
    text = (VOC / f"Annotations/{i}.xml").read_text()
    xmax = text.split("<xmax>")[1].split("<")[0]
    p = edit_xml(i, f"<xmax>{xmax}</xmax>", "<xmax>0</xmax>")
    assert_fails(invoke("source"), str(p), "zero-area or inverted box")
    assert_nothing_left("data/source")


def test_unknown_class_name(project):
    i = first_id()
    text = (VOC / f"Annotations/{i}.xml").read_text()
    name = text.split("<name>")[1].split("<")[0]
    p = edit_xml(i, f"<name>{name}</name>", "<name>unicorn</name>")
    assert_fails(invoke("source"), str(p), "unicorn")
    assert_nothing_left("data/source")


def test_duplicate_ids(project):
    p = VOC / "ImageSets/Segmentation/val.txt"
    p.write_text(p.read_text() + first_id() + "\n")  # an image both in train and in val
    assert_fails(invoke("source"), "train.txt", f"image {first_id()} is also in the val list")
    assert_nothing_left("data/source")


def test_duplicate_ids_in_any_source_are_refused_by_the_index(tmp_path):
    from pipeline.core.errors import InputError
    from pipeline.core.index import Dataset, Item, write_index
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "a.jpg")
    ds = Dataset(["background", "x"], [Item("a", str(tmp_path / "a.png")), Item("a", str(tmp_path / "a.jpg"))])
    with pytest.raises(InputError, match=r"a.jpg: duplicate image id 'a' \(also .*a.png\)"):
        write_index(ds, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_empty_dataset(project):
    for split in ("train", "val"):
        (VOC / f"ImageSets/Segmentation/{split}.txt").write_text("")
    assert_fails(invoke("source"), "empty dataset")
    assert_nothing_left("data/source")


def test_split_counts_larger_than_the_data(project):
    assert invoke("source").exit_code == 0
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["split"]["counts"] = {"pixel": 4, "box": 4, "image": 4}
    Path("params.yaml").write_text(yaml.safe_dump(params))
    assert_fails(invoke("split"), "params.yaml", "add up to 12 but there are only 8 training images")
    assert_nothing_left("data/split.json")


def test_corrupt_ucm_shard_stops_the_labels_stage(project):
    for stage in ("source", "split", "ucm"):
        assert invoke(stage).exit_code == 0
    shard = sorted(Path("data/ucm").glob("ucm-*.h5"))[0]
    size = shard.stat().st_size
    shard.write_bytes(shard.read_bytes()[:100])  # the folder's manifest.json catches it before h5py opens it
    assert_fails(invoke("labels"), str(shard), f"100 bytes, data/ucm/manifest.json records {size}: the shard was "
                                              "changed after the ucm stage wrote it; rerun the ucm stage")
    assert_nothing_left("data/labels", "metrics/labels.json")
    Path("data/ucm/manifest.json").unlink()  # an older output without a manifest: h5py's own error
    assert_fails(invoke("labels"), str(shard), "corrupt or truncated shard")


def test_corrupt_label_shard_in_inspect(project, tmp_path):
    bad = tmp_path / "labels-train-00000.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 50)
    assert_fails(invoke("inspect", str(bad)), str(bad), "corrupt or truncated shard")


@pytest.mark.parametrize("bad_value, reason", [(np.nan, "NaN"), (np.inf, "NaN/inf")])
def test_nan_or_inf_in_an_imported_ucm(project, bad_value, reason):
    assert invoke("source").exit_code == 0
    ext = Path("ext_ucm")
    ext.mkdir()
    images = json.loads(Path("data/source/images.json").read_text())["items"]
    for r in images:
        u = np.zeros((2 * r["height"] + 1, 2 * r["width"] + 1), np.float32)
        np.save(ext / f"{r['id']}.npy", u)
    victim = ext / f"{images[0]['id']}.npy"
    u = np.load(victim)
    u[3, 4] = bad_value
    np.save(victim, u)
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["ucm"].update(method="external", external_dir=str(ext))
    Path("params.yaml").write_text(yaml.safe_dump(params))
    assert_fails(invoke("ucm"), str(victim), reason)
    assert_nothing_left("data/ucm")


def test_mis_shaped_imported_ucm(project):
    assert invoke("source").exit_code == 0
    ext = Path("ext_ucm")
    ext.mkdir()
    images = json.loads(Path("data/source/images.json").read_text())["items"]
    for r in images:
        np.save(ext / f"{r['id']}.npy", np.zeros((r["height"], r["width"]), np.float32))
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["ucm"].update(method="external", external_dir=str(ext))
    Path("params.yaml").write_text(yaml.safe_dump(params))
    result = invoke("ucm")
    assert_fails(result, str(ext / f"{images[0]['id']}.npy"))
    assert "2H+1" in result.output or "expected" in result.output
    assert_nothing_left("data/ucm")


def test_bad_params_are_named(project):
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["labels"]["strategy"] = "magic"
    Path("params.yaml").write_text(yaml.safe_dump(params))
    for stage in ("source", "split", "ucm", "labels"):  # the whole file is checked by every stage
        assert_fails(invoke(stage), "params.yaml", "labels.strategy: unknown box strategy 'magic'")
    Path("params.yaml").write_text("source: [unclosed")
    assert_fails(invoke("source"), "params.yaml", "not valid YAML")


def test_every_command_has_help():
    runner = CliRunner()
    for cmd in ("synthetic", "source", "split", "ucm", "labels", "quality", "inspect"):
        result = runner.invoke(main, [cmd, "--help"])
        assert result.exit_code == 0, result.output
        assert "Usage:" in result.output and "--help" in result.output

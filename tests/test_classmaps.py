"""The ``classmaps`` source (pipeline/sources/classmaps.py) on tiny fixtures in the real
formats: JPEG and PNG images, single-channel PNG class maps (grey, palette, 16-bit), MSRC's
layout (``images/`` + ``classmaps/``, void 255) and CamVid's (``train/`` + ``trainannot/``,
void 11); bad maps through the source stage; the whole chain source -> split -> ucm -> labels
-> quality from params only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from helpers import source
from pipeline.cli import main
from pipeline.core.errors import InputError
from pipeline.core.fileio import read_json, write_palette_png
from pipeline.core.index import read_mask, write_index
from pipeline.sources import load_source
from pipeline.sources.camvid import load_camvid
from pipeline.sources.classmaps import classmap_classes, load_classmaps

H, W = 24, 32
REPO = Path(__file__).resolve().parents[1]
MSRC = ["building", "grass", "cow", "sky", "car"]  # a cut-down MSRC class list: values 0..4


def write_image(path, seed=0, size=(H, W)):
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path, **({"quality": 95} if path.suffix == ".jpg" else {}))


def write_map(path, array, mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "P":
        write_palette_png(path, np.asarray(array, np.uint8))
    elif mode == "I;16":
        Image.fromarray(np.asarray(array, np.uint16)).save(path)
    else:
        Image.fromarray(np.asarray(array, np.uint8), mode="L").save(path)


def msrc_map():
    m = np.full((H, W), 1, np.uint8)  # grass
    m[:4] = 3  # sky
    m[4:10, 20:30] = 0  # building
    m[12:20, 2:10] = 2  # a cow, 64 px
    m[14:18, 14:24] = 4  # a car, 40 px
    m[22, 30:32] = 4  # a 2-px car: too small
    m[0, 0] = m[23, 0] = 255  # void
    return m


def make_msrc(root: Path) -> Path:
    """Three photos (JPEG) of scene groups 1, 2, 3 with their class maps."""
    for k, image_id in enumerate(("1_1_s", "2_1_s", "3_1_s")):
        write_image(root / "images" / f"{image_id}.jpg", seed=k)
        write_map(root / "classmaps" / f"{image_id}.png", msrc_map(), mode="P" if k == 1 else "L")
    return root


def msrc_source(root, **options):
    opts = {"classes": MSRC, "things": ["cow", "car"], "min_area": 10, **options}
    return source({"kind": "classmaps", "root": str(root), "classmaps": opts})


def by_id(ds):
    return {item.id: item for item in ds.items}


# --------------------------------------------------------------------------- reading


def test_msrc_layout_background_things_boxes_lut_and_val_list(tmp_path):
    root = make_msrc(tmp_path / "msrc")
    (root / "even.txt").write_text("2_1_s\n")
    ds = load_source(msrc_source(root, val_list="even.txt"))
    assert ds.classes == ["background", "cow", "car"]
    items = by_id(ds)
    assert {i: it.split for i, it in items.items()} == {"1_1_s": "train", "2_1_s": "val", "3_1_s": "train"}
    item = items["1_1_s"]
    assert item.image == str(root / "images" / "1_1_s.jpg")
    assert item.boxes == [(2, 12, 10, 20, 1), (14, 14, 24, 18, 2)]  # by thing, then component; the 2-px car dropped
    assert item.box_file == str(root / "classmaps" / "1_1_s.png")
    for image_id in items:  # grey and palette maps read alike
        mask = read_mask(items[image_id].mask)
        assert mask[15, 5] == 1 and mask[15, 15] == 2 and mask[22, 31] == 2  # cow, car (small ones too)
        assert mask[5, 25] == 0 and mask[2, 5] == 0 and mask[10, 0] == 0  # building, sky, grass: background
        assert mask[0, 0] == 255 and mask[23, 0] == 255
    assert by_id(load_source(msrc_source(root, min_area=1)))["1_1_s"].boxes[-1] == (30, 22, 32, 23, 2)


def test_things_default_to_every_class_and_tags_are_the_classes_present(tmp_path):
    root = make_msrc(tmp_path / "msrc")
    ds = load_classmaps(root, classes=MSRC, min_area=10)
    assert ds.classes == ["background"] + MSRC
    assert [b[4] for b in by_id(ds)["1_1_s"].boxes] == [1, 2, 3, 4, 5]  # one component of each class
    summary = write_index(ds, tmp_path / "index", progress=False)
    assert summary["images"] == 3 and summary["boxes"] == 15 and summary["with_mask"] == 3
    ann = read_json(tmp_path / "index" / "annotations.json")["items"]
    assert ann[0]["tags"] == [1, 2, 3, 4, 5]


def test_background_false_keeps_the_class_list(tmp_path):
    root = make_msrc(tmp_path / "msrc")
    ds = load_classmaps(root, classes=MSRC, background=False, min_area=10)
    # the index reserves class 0 for the background: one nobody has is put first, value k is class k + 1
    assert ds.classes == ["background"] + MSRC
    mask = read_mask(by_id(ds)["1_1_s"].mask)
    assert mask[5, 25] == 1 and mask[10, 0] == 2 and mask[15, 5] == 3 and mask[2, 5] == 4 and mask[15, 15] == 5
    assert mask[0, 0] == 255 and not (mask == 0).any()  # every labelled pixel keeps its class
    assert [b[4] for b in by_id(ds)["1_1_s"].boxes] == [1, 2, 3, 4, 5]
    things = load_classmaps(root, classes=MSRC, background=False, things=["car", "cow"], min_area=10)
    assert things.classes == ["background"] + MSRC  # every class stays a class; only things get boxes
    assert by_id(things)["1_1_s"].boxes == [(14, 14, 24, 18, 5), (2, 12, 10, 20, 3)]
    assert read_mask(by_id(things)["1_1_s"].mask)[5, 25] == 1  # building is still building
    summary = write_index(things, tmp_path / "index", progress=False)
    assert read_json(tmp_path / "index" / "annotations.json")["items"][0]["tags"] == [1, 2, 3, 4, 5]
    assert summary["boxes"] == 6
    # a list that starts with background is taken as it is: value k is class k
    names = ["background"] + MSRC[1:]
    ds0 = load_classmaps(root, classes=names, background=False, min_area=10)
    assert ds0.classes == names
    mask0 = read_mask(by_id(ds0)["1_1_s"].mask)
    assert mask0[5, 25] == 0 and mask0[15, 15] == 4 and (mask0 == read_mask(by_id(ds)["1_1_s"].mask) - 1)[1:-1].all()
    assert [b[4] for b in by_id(ds0)["1_1_s"].boxes] == [1, 2, 3, 4]  # no box of the background


def test_background_flag_reaches_the_index(tmp_path):
    from pipeline.core.index import index_background
    root = make_msrc(tmp_path / "msrc")
    # a placeholder class 0 no pixel has: no real background; a list starting with background: a real one
    for kwargs, want in (({"classes": MSRC, "background": False}, False),
                         ({"classes": ["background"] + MSRC[1:], "background": False}, True),
                         ({"classes": MSRC, "background": True}, True)):
        ds = load_classmaps(root, min_area=10, **kwargs)
        assert ds.background is want
        write_index(ds, tmp_path / "index", progress=False)
        assert read_json(tmp_path / "index" / "annotations.json")["background"] is want
        assert index_background(tmp_path / "index" / "annotations.json") is want


def test_camvid_layout_reads_exactly_as_the_camvid_reader(tmp_path):
    root = tmp_path / "camvid"
    for k, (split, name) in enumerate((("train", "0001TP_006690"), ("val", "0016E5_07959"))):
        write_image(root / split / f"{name}.png", seed=k)
        annot = np.full((H, W), 3, np.uint8)  # road
        annot[:3] = 0  # sky
        annot[4:8, 2:7] = 8  # car
        for i in range(4):  # a diagonal pedestrian: one 8-connected component
            annot[10 + i, 10 + i] = 9
        annot[0, 31] = 11  # void
        write_map(root / f"{split}annot" / f"{name}.png", annot)
    names = ["sky", "building", "pole", "road", "pavement", "tree", "signsymbol", "fence", "car", "pedestrian",
             "bicyclist"]
    ds = load_source(source({"kind": "classmaps", "root": str(root), "classmaps": {
        "train": [["train", "trainannot"]], "val": [["val", "valannot"]], "classes": names, "void": 11,
        "things": ["car", "pedestrian", "bicyclist"], "min_area": 4}}))
    ref = load_camvid(root, min_area=4)
    write_index(ds, tmp_path / "a", progress=False)
    write_index(ref, tmp_path / "b", progress=False)
    for name in ("images.json", "annotations.json"):
        assert read_json(tmp_path / "a" / name) == read_json(tmp_path / "b" / name)
    # a class named at the void value (CamVid's own list has "void" at 11) is no class
    ds12 = load_classmaps(root, train=[["train", "trainannot"]], classes=names + ["void"], void=11, min_area=4)
    assert "void" not in ds12.classes and len(ds12.classes) == 12


def test_sixteen_bit_maps_and_a_large_void(tmp_path):
    root = tmp_path / "ds"
    write_image(root / "images" / "a.png")
    m = np.zeros((H, W), np.uint16)
    m[5:10, 5:10] = 1
    m[0] = 65535
    write_map(root / "maps" / "a.png", m, mode="I;16")
    ds = load_classmaps(root, train=[["images", "maps"]], classes=["floor", "box"], void=65535, min_area=1)
    assert ds.classes == ["background", "floor", "box"] and ds.items[0].boxes == [(0, 1, 32, 24, 1), (5, 5, 10, 10, 2)]
    mask = read_mask(ds.items[0].mask)
    assert mask[0, 0] == 255 and mask[6, 6] == 2 and mask[20, 20] == 1


# --------------------------------------------------------------------------- bad input


def test_bad_value_names_the_map(tmp_path):
    root = make_msrc(tmp_path / "msrc")
    bad = msrc_map()
    bad[3, 3] = 7  # MSRC has 5 classes here (0..4), void 255
    write_map(root / "classmaps" / "2_1_s.png", bad)
    with pytest.raises(InputError) as err:
        load_source(msrc_source(root))
    assert err.value.path == str(root / "classmaps" / "2_1_s.png")
    assert err.value.reason == "class-map value 7 is neither a class (0..4) nor void (255)"
    assert "\n" not in str(err.value)


def test_wrong_size_map_names_the_map_in_the_source_stage(tmp_path):
    root = make_msrc(tmp_path / "msrc")
    write_map(root / "classmaps" / "3_1_s.png", msrc_map()[:, :30])
    ds = load_source(msrc_source(root))
    with pytest.raises(InputError, match=r"mask is 30x24 but image .*3_1_s.jpg is 32x24") as err:
        write_index(ds, tmp_path / "index", progress=False)
    assert err.value.path == str(root / "classmaps" / "3_1_s.png")
    summary = write_index(ds, tmp_path / "index", on_error="skip", progress=False)  # skippable, like any mask
    assert summary["images"] == 2 and summary["skipped"] == 1


@pytest.mark.parametrize("case, path, match", [
    ("no_map", "classmaps/3_1_s.png", "class map of image .*3_1_s.jpg not found"),
    ("orphan_map", "classmaps/9_9_s.png", "class map of id '9_9_s' has no image"),
    ("rgb_map", "classmaps/1_1_s.png", "label image must be single-channel or palette"),
    ("truncated_map", "classmaps/1_1_s.png", "unreadable or truncated mask"),
    ("two_images", "images/1_1_s.png", "two images share the id '1_1_s'"),
    ("no_folder", "maps", "class-map folder of .*images not found"),
    ("val_list", "val.txt", "image id '7_1_s' has no image in the dataset"),
])
def test_bad_files_name_the_file(tmp_path, case, path, match):
    root = make_msrc(tmp_path / "msrc")
    options = {}
    if case == "no_map":
        (root / "classmaps" / "3_1_s.png").unlink()
    elif case == "orphan_map":
        write_map(root / path, msrc_map())
    elif case == "rgb_map":
        Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(root / path)
    elif case == "truncated_map":
        (root / path).write_bytes((root / path).read_bytes()[:40])
    elif case == "two_images":
        write_image(root / path)
    elif case == "no_folder":
        options["train"] = [["images", "maps"]]
    elif case == "val_list":
        (root / path).write_text("2_1_s\n7_1_s\n")
        options["val_list"] = "val.txt"
    with pytest.raises(InputError, match=match) as err:
        load_source(msrc_source(root, **options))
    assert err.value.path == str(root / path)


def test_bad_class_options_name_params_yaml():
    for kwargs, match in [({"classes": ["a", "b", "a"]}, "'a' appears twice"),
                          ({"classes": ["background", "a"], "things": ["background"]}, "cannot be a thing"),
                          ({"classes": ["a", "void"], "things": ["void"], "void": 1}, "is the void value"),
                          ({"classes": ["background", "a"], "things": ["background"], "background": False},
                           "is the background")]:
        with pytest.raises(InputError, match=match) as err:
            classmap_classes(**kwargs)
        assert err.value.path == "params.yaml"


def test_unknown_thing_is_a_config_error(tmp_path):
    from pipeline.core.config import ConfigError, config_from_dict
    with pytest.raises((ConfigError, InputError), match="things"):
        config_from_dict({"source": {"kind": "classmaps", "root": str(tmp_path),
                                     "classmaps": {"classes": ["a"], "things": ["b"]}}})


# --------------------------------------------------------------------------- the whole chain, params only


@pytest.mark.slow
def test_source_split_ucm_labels_quality_from_params(tmp_path, monkeypatch):
    root = make_msrc(tmp_path / "msrc")
    for k, image_id in enumerate(("4_1_s", "5_1_s")):  # two more, PNG images this time
        write_image(root / "images" / f"{image_id}.png", seed=10 + k)
        write_map(root / "classmaps" / f"{image_id}.png", msrc_map())
    (root / "val.txt").write_text("5_1_s\n")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["synthetic"]["out"] = []
    params["source"].update(kind="classmaps", root=str(root), workers=1)
    params["source"]["classmaps"].update(classes=MSRC, things=["cow", "car"], min_area=10, val_list="val.txt")
    params["split"] = {"counts": {"pixel": 0, "box": 4, "image": 0}, "seed": 0}
    params["ucm"]["workers"] = params["labels"]["workers"] = 1
    params["quality"]["strategies"] = ["ucm", "raw_box"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    for args in (["source"], ["split"], ["ucm"], ["labels"], ["quality"]):
        extra = ["--no-progress"] if args[0] != "split" else []
        result = CliRunner().invoke(main, args + extra)
        assert result.exit_code == 0, (args, result.output)
    assert read_json("metrics/source.json")["boxes"] == 10 and read_json("metrics/source.json")["val"] == 1
    q = json.loads(Path("metrics/label_quality.json").read_text())
    assert q["images"] == 4
    for s in ("ucm", "raw_box"):
        assert 0 < q[s]["miou"] <= 100 and 0 < q[s]["miou_fair"] <= 100
        assert set(q[s]["per_class_iou"]) == {"background", "cow", "car"}
    assert q["raw_box"]["miou_fair"] == q["raw_box"]["miou"]
    assert sorted(p.name for p in Path("data/labels").glob("labels-*.h5"))


def test_box_labels_ignore_the_background_when_the_dataset_has_none(tmp_path):
    """Every pixel of such a dataset has a real class: what the boxes leave is ignored (no
    bit), never taught as a class-0 'background' no pixel has; the box pixels keep their class."""
    from pipeline.core.config import LabelsConfig
    from pipeline.core.shards import ShardReader
    from pipeline.labels.stage import image_record
    image = tmp_path / "a.png"
    write_image(image, seed=1)
    img = {"id": "a", "path": str(image), "height": H, "width": W}
    ann = {"mask": None, "boxes": [[2, 3, 10, 12, 1], [8, 5, 20, 9, 2]], "tags": [1, 2]}
    params = LabelsConfig(strategy="raw_box")
    with_bg = image_record(img, ann, "box", ["background", "a", "b"], params, {}, background=True)["label"]
    no_bg = image_record(img, ann, "box", ["background", "a", "b"], params, {}, background=False)
    label = no_bg["label"]
    assert with_bg[0, 0] == 1 and label[0, 0] == 0                 # outside every box: ignored
    assert label[4, 4] == 2 and label[6, 9] == 2 | 4 and label[6, 15] == 4   # boxes: their classes, soft overlap
    np.testing.assert_array_equal(label, with_bg & ~np.uint8(1))
    from pipeline.core.shards import write_label_shard
    write_label_shard(tmp_path / "s" / "labels-train-00000.h5", [no_bg], ["background", "a", "b"], "train",
                      background=False)
    assert ShardReader(tmp_path / "s").background is False


def test_quality_scores_no_background_labels_as_the_stage_writes_them(tmp_path):
    """background: false -- the quality stage ignores what the boxes leave (as the labels stage
    does), so the placeholder class 0 is never a label and is left out of the means."""
    from pipeline.core.config import LabelsConfig, QualityConfig
    from pipeline.labels.quality import run_quality
    root = make_msrc(tmp_path / "msrc")
    out = {}
    for background in (True, False):
        ds = load_classmaps(root, classes=MSRC, background=background, things=["cow", "car"], min_area=10)
        index = tmp_path / f"index{background}"
        write_index(ds, index, progress=False)
        ids = [item.id for item in ds.items]
        (tmp_path / "split.json").write_text(json.dumps({"format": "mixseg-split", "version": 1, "seed": 0,
                                                         "assignment": {i: "box" for i in ids}}))
        out[background] = run_quality(index / "images.json", index / "annotations.json", tmp_path / "split.json",
                                      None, LabelsConfig(), QualityConfig(strategies=("raw_box",)),
                                      progress=False)["raw_box"]
    assert out[True]["per_class_iou"]["background"] is not None
    assert out[False]["per_class_iou"]["background"] is None
    assert set(k for k, v in out[False]["per_class_iou"].items() if v is not None) <= set(MSRC)


def test_a_malformed_background_flag_is_one_line_naming_the_index(tmp_path):
    from pipeline.core.index import load_annotations
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps({"format": "mixseg-annotations", "version": 1, "classes": ["background", "a"],
                                "background": "no", "items": []}))
    with pytest.raises(InputError, match="'background' must be true or false") as e:
        load_annotations(path, with_background=True)
    assert str(path) in str(e.value)
    assert load_annotations(path)[0] == ["background", "a"]   # without the flag: read as before

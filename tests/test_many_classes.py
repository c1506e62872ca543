"""Any number of classes (issue #13): a COCO-JSON box dataset with COCO's 80 categories
(non-contiguous ids) and an ADE20K-style 150-class class-map dataset, through source, split, ucm,
labels, train, evaluate and report; `inspect` renders them and `verify` checks them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from pipeline.cli import main
from pipeline.core.config import SourceConfig, config_from_dict
from pipeline.core.errors import InputError
from pipeline.core.fileio import read_json
from pipeline.core.shards import LabelMap, ShardReader
from pipeline.sources import load_source
from pipeline.sources.coco import load_coco, read_coco

REPO = Path(__file__).resolve().parents[1]

# COCO 2017's 80 categories with their ids (1..90, ten ids unused) and supercategories
COCO_CATEGORIES = [
    (1, "person", "person"), (2, "bicycle", "vehicle"), (3, "car", "vehicle"), (4, "motorcycle", "vehicle"),
    (5, "airplane", "vehicle"), (6, "bus", "vehicle"), (7, "train", "vehicle"), (8, "truck", "vehicle"),
    (9, "boat", "vehicle"), (10, "traffic light", "outdoor"), (11, "fire hydrant", "outdoor"),
    (13, "stop sign", "outdoor"), (14, "parking meter", "outdoor"), (15, "bench", "outdoor"),
    (16, "bird", "animal"), (17, "cat", "animal"), (18, "dog", "animal"), (19, "horse", "animal"),
    (20, "sheep", "animal"), (21, "cow", "animal"), (22, "elephant", "animal"), (23, "bear", "animal"),
    (24, "zebra", "animal"), (25, "giraffe", "animal"), (27, "backpack", "accessory"),
    (28, "umbrella", "accessory"), (31, "handbag", "accessory"), (32, "tie", "accessory"),
    (33, "suitcase", "accessory"), (34, "frisbee", "sports"), (35, "skis", "sports"),
    (36, "snowboard", "sports"), (37, "sports ball", "sports"), (38, "kite", "sports"),
    (39, "baseball bat", "sports"), (40, "baseball glove", "sports"), (41, "skateboard", "sports"),
    (42, "surfboard", "sports"), (43, "tennis racket", "sports"), (44, "bottle", "kitchen"),
    (46, "wine glass", "kitchen"), (47, "cup", "kitchen"), (48, "fork", "kitchen"), (49, "knife", "kitchen"),
    (50, "spoon", "kitchen"), (51, "bowl", "kitchen"), (52, "banana", "food"), (53, "apple", "food"),
    (54, "sandwich", "food"), (55, "orange", "food"), (56, "broccoli", "food"), (57, "carrot", "food"),
    (58, "hot dog", "food"), (59, "pizza", "food"), (60, "donut", "food"), (61, "cake", "food"),
    (62, "chair", "furniture"), (63, "couch", "furniture"), (64, "potted plant", "furniture"),
    (65, "bed", "furniture"), (67, "dining table", "furniture"), (70, "toilet", "furniture"),
    (72, "tv", "electronic"), (73, "laptop", "electronic"), (74, "mouse", "electronic"),
    (75, "remote", "electronic"), (76, "keyboard", "electronic"), (77, "cell phone", "electronic"),
    (78, "microwave", "appliance"), (79, "oven", "appliance"), (80, "toaster", "appliance"),
    (81, "sink", "appliance"), (82, "refrigerator", "appliance"), (84, "book", "indoor"),
    (85, "clock", "indoor"), (86, "vase", "indoor"), (87, "scissors", "indoor"), (88, "teddy bear", "indoor"),
    (89, "hair drier", "indoor"), (90, "toothbrush", "indoor")]
H, W = 40, 48


def _colour(k: int) -> np.ndarray:
    """A class's own colour (class identity carried by appearance)."""
    rng = np.random.default_rng(1000 + k)
    return rng.integers(40, 256, 3)


def _scene(rng, classes: list[int], h=H, w=W):
    """(image, class map (0 = background), [(class, x0, y0, x1, y1 float box)]): a noisy background
    and one ellipse per class, overlapping at times."""
    image = rng.integers(0, 60, (h, w, 3)).astype(np.uint8)
    cmap = np.zeros((h, w), np.uint8)
    yy, xx = np.mgrid[:h, :w]
    objects = []
    for c in classes:
        cy, cx = rng.uniform(8, h - 8), rng.uniform(8, w - 8)
        ry, rx = rng.uniform(4, 10), rng.uniform(4, 12)
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        if not inside.any():
            continue
        image[inside] = np.clip(_colour(c) + rng.integers(-15, 15, (inside.sum(), 3)), 0, 255)
        cmap[inside] = c
        ys, xs = np.nonzero(inside)
        objects.append((c, xs.min() + rng.uniform(0, 0.4), ys.min() + rng.uniform(0, 0.4),
                        xs.max() + 1 - rng.uniform(0, 0.4), ys.max() + 1 - rng.uniform(0, 0.4)))
    return image, cmap, objects


def make_coco(root: Path, n_train=16, n_val=4, seed=0) -> Path:
    """COCO 2017's layout and JSON format: annotations/instances_{train,val}2017.json, train2017/,
    val2017/ (zero-padded 12-digit file names), and class-map PNGs in masks/ for evaluation."""
    rng = np.random.default_rng(seed)
    (root / "annotations").mkdir(parents=True)
    (root / "masks").mkdir()
    ann_id = 1
    index = {cid: k + 1 for k, (cid, _, _) in enumerate(COCO_CATEGORIES)}
    for split, n, first in (("train", n_train, 1), ("val", n_val, 5001)):
        (root / f"{split}2017").mkdir()
        images, annotations = [], []
        for k in range(n):
            image_id = first + 7 * k
            ks = rng.choice(len(COCO_CATEGORIES), size=int(rng.integers(1, 4)), replace=False)
            cats = [COCO_CATEGORIES[j][0] for j in ks]
            image, cmap, objects = _scene(rng, [index[c] for c in cats])
            name = f"{image_id:012d}.jpg"
            Image.fromarray(image).save(root / f"{split}2017" / name, quality=95)
            Image.fromarray(cmap).save(root / "masks" / f"{image_id:012d}.png")
            images.append({"license": 1, "file_name": name, "coco_url": f"http://images.cocodataset.org/{name}",
                           "height": H, "width": W, "date_captured": "2013-11-14 16:28:13",
                           "flickr_url": "http://farm4.staticflickr.com/x.jpg", "id": image_id})
            cat_of = {index[c]: c for c in cats}
            for c, x0, y0, x1, y1 in objects:
                if k == 0 and split == "train":
                    x1 = W + 0.3   # past the edge by a fraction of a pixel, as COCO has: clipped
                poly = [x0, y0, x1, y0, x1, y1, x0, y1]
                annotations.append({"segmentation": [[round(v, 2) for v in poly]],
                                    "area": float((x1 - x0) * (y1 - y0)), "iscrowd": 0, "image_id": image_id,
                                    "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                                    "category_id": cat_of[c], "id": ann_id})
                ann_id += 1
            if k == 1:   # a crowd region: skipped, as in COCO's detection protocol
                annotations.append({"segmentation": {"counts": [0, 10, 1910], "size": [H, W]}, "area": 10.0,
                                    "iscrowd": 1, "image_id": image_id, "bbox": [0.0, 0.0, 10.0, 1.0],
                                    "category_id": 90, "id": ann_id})
                ann_id += 1
        doc = {"info": {"description": "COCO 2017 Dataset (test fixture)", "version": "1.0", "year": 2017},
               "licenses": [{"url": "http://creativecommons.org/licenses/by-nc-sa/2.0/", "id": 1,
                             "name": "Attribution-NonCommercial-ShareAlike License"}],
               "images": images, "annotations": annotations,
               "categories": [{"supercategory": s, "id": i, "name": nm} for i, nm, s in COCO_CATEGORIES]}
        (root / "annotations" / f"instances_{split}2017.json").write_text(json.dumps(doc))
    return root


ADE_CLASSES = [f"ade{k:03d}" for k in range(150)]


def make_ade(root: Path, n_train=16, n_val=4, seed=1) -> Path:
    """An ADE20K-style scene-parsing set: images/ + annotations/ class maps, value k = class k of
    150, 255 unlabelled; every pixel of an object class or one of a few 'stuff' classes."""
    rng = np.random.default_rng(seed)
    for split, n in (("training", n_train), ("validation", n_val)):
        (root / "images" / split).mkdir(parents=True)
        (root / "annotations" / split).mkdir(parents=True)
        for k in range(n):
            classes = [int(c) + 1 for c in rng.choice(149, size=3, replace=False)]
            image, cmap, _ = _scene(rng, classes)
            stuff = int(rng.choice([0, 5, 149]))
            cmap = np.where(cmap == 0, stuff, cmap - 0).astype(np.uint8)
            cmap[:2, :3] = 255
            image[cmap == stuff] = np.clip(image[cmap == stuff] + _colour(stuff) // 3, 0, 255)
            Image.fromarray(image).save(root / "images" / split / f"ADE_{split}_{k:08d}.jpg", quality=95)
            Image.fromarray(cmap).save(root / "annotations" / split / f"ADE_{split}_{k:08d}.png")
    return root


def _params(tmp_path: Path, source: dict) -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["synthetic"]["out"] = []
    params["source"].update(workers=1, **source)
    params["split"] = {"ratio": [1, 2, 1], "counts": None, "seed": 0}
    for stage in ("ucm", "labels"):
        params[stage].update(workers=1, shard_size=8)
    params["quality"]["strategies"] = ["ucm", "raw_box", "hard"]
    params["train"].update(variants=["p+b+i"], epochs=1, batch_size=4, crop=[32, 32], threads=1, warmup=0,
                           amp=False, checkpoint_every=1000)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return params


def params_quality_strategies() -> list[str]:
    return yaml.safe_load(Path("params.yaml").read_text())["quality"]["strategies"]


def _chain(tmp_path, monkeypatch, params_source, num_classes, background=True):
    """Run the whole chain in tmp_path; check shards, verify, inspect, evaluation and report."""
    _params(tmp_path, params_source)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    for args in (["source"], ["split"], ["ucm"], ["labels"], ["quality"], ["train", "--variant", "p+b+i"],
                 ["evaluate", "--variant", "p+b+i"], ["report"]):
        extra = ["--no-progress"] if args[0] in ("source", "ucm", "labels", "quality", "train", "evaluate") else []
        result = runner.invoke(main, args + extra)
        assert result.exit_code == 0, (args, result.output, result.exception)
    assert read_json("metrics/source.json")["classes"] == num_classes
    quality = read_json("metrics/label_quality.json")
    assert quality["images"] > 0 and all(0 <= quality[s]["miou"] <= 100 for s in params_quality_strategies())
    train = ShardReader("data/labels", split="train")
    assert train.num_classes == num_classes and train.format_versions == [3] and train.background is background
    kinds = {train.kind(i) for i in train.ids}
    assert kinds == {"pixel", "box", "image"}
    soft = 0
    for i in train.ids_of_kind("box"):
        lm = train.label_map(i)
        assert isinstance(lm, LabelMap) and lm.codes.dtype == np.uint8 and lm.problem() is None
        assert lm.present()[np.flatnonzero(train.tags(i))].any() or not train.tags(i).any()
        soft += lm.num_sets
        boxes = train.boxes(i)
        assert len(boxes) and (boxes["strategy"] == 0).all() and boxes["cls"].max() < num_classes
    for i in train.ids_of_kind("pixel"):
        assert (train.label_map(i) == train.truth_map(i))
    train.close()
    assert soft > 0   # soft pixels whose class sets hold ids above 64 went through training
    result = runner.invoke(main, ["verify", "data/labels", "data/ucm"])
    assert result.exit_code == 0, result.output
    shard = sorted(Path("data/labels").glob("labels-train-*.h5"))[0]
    result = runner.invoke(main, ["inspect", str(shard), "--ucm", "data/ucm", "--out", "inspect"])
    assert result.exit_code == 0, result.output
    assert f"classes ({num_classes})" in result.output and "class ids + class sets (format 3)" in result.output
    assert any(p.name.endswith("_fig5.png") for p in Path("inspect").glob("*.png"))
    ev = read_json("metrics/eval/p+b+i.json")
    assert 0 <= ev["mIU"] <= 100 and 0 <= ev["pAcc"] <= 100
    detail = read_json("metrics/eval_classes/p+b+i.json")
    assert len(detail["per_class_iou"]) == num_classes
    assert Path("report/results.md").is_file() and Path("report/fig7.png").is_file()
    return soft


@pytest.mark.slow
def test_coco_json_with_80_categories_end_to_end(tmp_path, monkeypatch):
    root = make_coco(tmp_path / "coco")
    soft = _chain(tmp_path, monkeypatch, {"kind": "coco", "root": str(root),
                                          "coco": {"train_json": "annotations/instances_train2017.json",
                                                   "train_images": "train2017",
                                                   "val_json": "annotations/instances_val2017.json",
                                                   "val_images": "val2017", "masks": "masks"}}, 81)
    classes = read_json("data/source/annotations.json")["classes"]
    assert classes[0] == "background" and classes[1:] == [n for _, n, _ in COCO_CATEGORIES]
    assert classes.index("toothbrush") == 80 and classes.index("dining table") == 61   # ids 90 and 67
    assert soft > 0


@pytest.mark.slow
def test_ade_style_150_class_maps_end_to_end(tmp_path, monkeypatch):
    root = make_ade(tmp_path / "ade")
    _chain(tmp_path, monkeypatch, {"kind": "classmaps", "root": str(root),
                                   "classmaps": {"train": [["images/training", "annotations/training"]],
                                                 "val": [["images/validation", "annotations/validation"]],
                                                 "val_list": None, "classes": ADE_CLASSES, "void": 255,
                                                 "things": [], "min_area": 4, "background": False}},
           151, background=False)


# ----------------------------------------------------------------------------- the COCO reader


def test_coco_reader_maps_non_contiguous_ids_clips_boxes_and_skips_crowds(tmp_path):
    root = make_coco(tmp_path / "coco", n_train=3, n_val=2)
    cats, records = read_coco(root / "annotations/instances_train2017.json")
    assert len(cats) == 80 and cats[-1] == (90, "toothbrush") and cats[11] == (13, "stop sign")
    doc = json.loads((root / "annotations/instances_train2017.json").read_text())
    first = [a for a in doc["annotations"] if a["image_id"] == 1]
    x, y, w, h = first[0]["bbox"]
    assert x + w > W and records[0]["objects"][0][1] == (int(np.floor(x)), int(np.floor(y)), W,
                                                         int(np.ceil(y + h)))
    assert all(c != 90 or box != (0, 0, 10, 1) for r in records for c, box in r["objects"])   # the crowd
    ds = load_coco(root, masks="masks")
    assert len(ds.classes) == 81 and [it.split for it in ds.items].count("val") == 2
    item = next(it for it in ds.items if it.id == "000000000001")
    index = {cid: k + 1 for k, (cid, _, _) in enumerate(COCO_CATEGORIES)}
    assert [b[4] for b in item.boxes] == [index[a["category_id"]] for a in first]
    assert item.mask is not None and item.image.endswith("train2017/000000000001.jpg")


def test_coco_through_params(tmp_path):
    root = make_coco(tmp_path / "coco", n_train=2, n_val=1)
    cfg = config_from_dict({"synthetic": {"out": []},
                            "source": {"kind": "coco", "root": str(root), "coco": {"val_json": None,
                                                                                   "val_images": None}}}).source
    ds = load_source(cfg)
    assert len(ds.items) == 2 and {it.split for it in ds.items} == {"train"} and len(ds.classes) == 81
    with pytest.raises(InputError, match="kind 'coco' reads its boxes"):
        load_source(SourceConfig(kind="coco", root=str(root), boxes="x.json"))


@pytest.mark.parametrize("case,match", [
    ("no_categories", "needs a list 'categories'"),
    ("dup_category", "duplicate or empty category"),
    ("unknown_category", "category_id 12 not in 'categories'"),
    ("unknown_image", "image_id 99999 not in 'images'"),
    ("bad_bbox", "bbox must be 4 numbers"),
    ("zero_bbox", "zero-area or inverted bbox"),
    ("outside", "lies outside the 48x40 image"),
    ("missing_image", "not found in"),
    ("val_categories", "categories differ from those of"),
])
def test_bad_coco_files_are_one_line_errors_naming_the_file(tmp_path, case, match):
    root = make_coco(tmp_path / "coco", n_train=2, n_val=1)
    path = root / "annotations" / ("instances_val2017.json" if case == "val_categories"
                                   else "instances_train2017.json")
    doc = json.loads(path.read_text())
    if case == "no_categories":
        del doc["categories"]
    elif case == "dup_category":
        doc["categories"].append({"supercategory": "x", "id": 91, "name": "person"})
    elif case == "unknown_category":
        doc["annotations"][0]["category_id"] = 12
    elif case == "unknown_image":
        doc["annotations"][0]["image_id"] = 99999
    elif case == "bad_bbox":
        doc["annotations"][0]["bbox"] = [1, 2, 3]
    elif case == "zero_bbox":
        doc["annotations"][0]["bbox"] = [1, 2, 0, 3]
    elif case == "outside":
        doc["annotations"][0]["bbox"] = [50, 2, 3, 3]
    elif case == "missing_image":
        (root / "train2017" / doc["images"][0]["file_name"]).unlink()
    elif case == "val_categories":
        doc["categories"][0]["name"] = "human"
    path.write_text(json.dumps(doc))
    with pytest.raises(InputError, match=match) as err:
        load_coco(root)
    assert err.value.path == str(path) and "\n" not in str(err.value)


def test_an_image_with_more_than_63_box_classes_is_refused(tmp_path):
    """Beyond 64 classes the box strategies label an image's own classes as local bits 1..63."""
    from pipeline.core.config import LabelsConfig
    from pipeline.labels.stage import image_record
    image = tmp_path / "many.png"
    Image.fromarray(np.zeros((8, 80, 3), np.uint8)).save(image)
    img = {"id": "many", "path": str(image), "height": 8, "width": 80}
    classes = ["background"] + [f"c{k}" for k in range(1, 81)]
    ok = {"mask": None, "boxes": [[k, 0, k + 2, 8, 1 + k] for k in range(63)], "tags": []}
    rec = image_record(img, ok, "box", classes, LabelsConfig(strategy="raw_box"), {})
    lm = rec["label"]
    assert isinstance(lm, LabelMap) and lm.codes[0, 0] == 1 and lm.class_set(int(lm.codes[0, 1]) - 81).tolist() \
        == [1, 2]
    assert lm.codes[0, 70] == 0   # outside every box: background
    bad = {"mask": None, "boxes": [[k, 0, k + 2, 8, 1 + k] for k in range(64)], "tags": []}
    with pytest.raises(InputError, match="image many has boxes of 64 classes; the box strategies label at most 63"):
        image_record(img, bad, "box", classes, LabelsConfig(strategy="raw_box"), {})


def test_labels_beyond_64_classes_equal_the_global_labels_of_the_same_boxes(tmp_path):
    """The local-class wrapper gives what a global bitset would for the same boxes: classes 5 and
    70 of an 81-class dataset vs classes 1 and 2 of a 3-class one, with the raw_box strategy."""
    from pipeline.core.config import LabelsConfig
    from pipeline.core.shards import encode_bitsets
    from pipeline.labels.stage import image_record
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(image)
    img = {"id": "a", "path": str(image), "height": 12, "width": 16}
    params = LabelsConfig(strategy="raw_box")
    small = image_record(img, {"mask": None, "boxes": [[1, 1, 9, 9, 2], [5, 3, 14, 11, 1]], "tags": []}, "box",
                         ["background", "x", "y"], params, {})["label"]
    big = image_record(img, {"mask": None, "boxes": [[1, 1, 9, 9, 70], [5, 3, 14, 11, 5]], "tags": []}, "box",
                       ["background"] + [f"c{k}" for k in range(1, 81)], params, {})["label"]
    want = encode_bitsets(small, 81, classes_of_bits=[0, 5, 70])
    assert big == want


def test_the_index_accepts_up_to_max_classes(tmp_path):
    from pipeline.core.index import Dataset, Item, write_index
    from pipeline.core.schema import MAX_CLASSES
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(image)
    items = [Item(id="a", image=str(image), boxes=[(0, 0, 2, 2, 1203)])]
    classes = ["background"] + [f"lvis{k}" for k in range(1, 1204)]    # LVIS: 1,203 categories
    assert write_index(Dataset(classes, items), tmp_path / "ok", progress=False)["boxes"] == 1
    too_many = ["background"] + [f"c{k}" for k in range(1, MAX_CLASSES + 1)]
    with pytest.raises(InputError, match=f"{MAX_CLASSES + 1} classes \\(background included\\); at most {MAX_CLASSES}"):
        write_index(Dataset(too_many, items, root=str(tmp_path)), tmp_path / "no", progress=False)

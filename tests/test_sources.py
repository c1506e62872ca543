"""Dataset readers on tiny fixtures written in the real on-disk formats.

VOC: palette PNGs, VOC XML (written by pipeline.sources.vocxml and by hand), SBD .mat structs
(GTcls.Segmentation, GTinst.Segmentation + Categories) written by scipy.io.savemat.
SIFT Flow: the Images/SemanticLabels folder layout with S in .mat files and TestSet1.txt.
Boxes: COCO JSON and folders of VOC XML.  CamVid: SegNet folder layout with grey PNGs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.sparse
from PIL import Image

from pipeline.sources.boxfiles import coco_box, load_boxes
from pipeline.sources.camvid import load_camvid
from pipeline.core.errors import InputError
from pipeline.core.fileio import read_json, write_palette_png
from pipeline.core.index import read_mask, write_index
from pipeline.sources.siftflow import CATEGORY_FOLDER, SIFTFLOW_CLASSES, load_siftflow
from helpers import source
from pipeline.core.config import config_from_dict
from pipeline.sources import load_source
from pipeline.sources.voc import VOC_CLASSES, load_voc, sbd_instance_boxes
from pipeline.sources.vocxml import write_voc_xml

H, W = 24, 32
A, B, C, D, E = "2007_000001", "2007_000002", "2007_000003", "2008_000010", "2008_000011"
CLS = {name: i for i, name in enumerate(VOC_CLASSES)}


def write_jpeg(path, seed=0, size=(H, W)):
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path, quality=90)


def write_grey_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, np.uint8), mode="L").save(path)


def write_lines(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))


def save_sbd_cls(path, seg):
    """SBD cls/*.mat: struct GTcls with Segmentation, Boundaries (cell of sparse), CategoriesPresent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    boundaries = np.empty((20, 1), object)
    for i in range(20):
        boundaries[i, 0] = scipy.sparse.csc_matrix(seg.shape, dtype=np.uint8)
    present = np.unique(seg[(seg > 0) & (seg < 255)]).astype(np.uint8).reshape(-1, 1)
    scipy.io.savemat(path, {"GTcls": {"Segmentation": seg.astype(np.uint8), "Boundaries": boundaries,
                                      "CategoriesPresent": present}})


def save_sbd_inst(path, inst, categories):
    """SBD inst/*.mat: struct GTinst with Segmentation and Categories (n, 1)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"GTinst": {"Segmentation": inst.astype(np.uint8),
                                       "Categories": np.asarray(categories, np.uint8).reshape(-1, 1)}})


HAND_XML = """<annotation>
\t<folder>VOC2012</folder>
\t<filename>2008_000011.jpg</filename>
\t<source>
\t\t<database>The VOC2008 Database</database>
\t\t<annotation>PASCAL VOC2008</annotation>
\t\t<image>flickr</image>
\t</source>
\t<size>
\t\t<width>32</width>
\t\t<height>24</height>
\t\t<depth>3</depth>
\t</size>
\t<segmented>0</segmented>
\t<object>
\t\t<name>cat</name>
\t\t<pose>Left</pose>
\t\t<truncated>0</truncated>
\t\t<occluded>0</occluded>
\t\t<bndbox>
\t\t\t<xmin>1</xmin>
\t\t\t<ymin>2</ymin>
\t\t\t<xmax>10</xmax>
\t\t\t<ymax>12</ymax>
\t\t</bndbox>
\t\t<difficult>0</difficult>
\t</object>
\t<object>
\t\t<name>person</name>
\t\t<pose>Unspecified</pose>
\t\t<truncated>1</truncated>
\t\t<bndbox>
\t\t\t<xmin>20</xmin>
\t\t\t<ymin>5</ymin>
\t\t\t<xmax>32</xmax>
\t\t\t<ymax>24</ymax>
\t\t</bndbox>
\t\t<difficult>1</difficult>
\t\t<part>
\t\t\t<name>head</name>
\t\t\t<bndbox>
\t\t\t\t<xmin>22</xmin>
\t\t\t\t<ymin>5</ymin>
\t\t\t\t<xmax>26</xmax>
\t\t\t\t<ymax>9</ymax>
\t\t\t</bndbox>
\t\t</part>
\t</object>
</annotation>
"""


def make_voc(root: Path, sbd: bool = True) -> Path:
    """A tiny VOC2012 (+ SBD) tree.

    VOC seg train: A, B; VOC seg val: C; SBD train: D, A; SBD val: E, C.
    A: class + object PNGs and XML; B: class + object PNGs, no XML; C: class + object PNGs
    and XML; D: SBD cls + inst .mat only; E: SBD cls + inst .mat and a hand-written XML.
    """
    voc = root / "VOCdevkit" / "VOC2012"
    for k, image_id in enumerate((A, B, C, D, E)):
        write_jpeg(voc / "JPEGImages" / f"{image_id}.jpg", seed=k)
    write_lines(voc / "ImageSets" / "Segmentation" / "train.txt", [A, B])
    write_lines(voc / "ImageSets" / "Segmentation" / "val.txt", [C])

    # A: a person (rows 2..9, cols 3..11) with a void ring, and a dog (rows 12..19, cols 15..27).
    cls_a = np.zeros((H, W), np.uint8)
    obj_a = np.zeros((H, W), np.uint8)
    cls_a[1:11, 2:13] = 255
    obj_a[1:11, 2:13] = 255
    cls_a[2:10, 3:12] = CLS["person"]
    obj_a[2:10, 3:12] = 1
    cls_a[12:20, 15:28] = CLS["dog"]
    obj_a[12:20, 15:28] = 2
    write_palette_png(voc / "SegmentationClass" / f"{A}.png", cls_a)
    write_palette_png(voc / "SegmentationObject" / f"{A}.png", obj_a)
    write_voc_xml(voc / "Annotations" / f"{A}.xml", f"{A}.jpg", W, H,
                  [("person", (3, 2, 12, 10)), ("dog", (15, 12, 28, 20))])

    # B: one car instance (rows 4..15, cols 6..19) whose class pixels are mostly void
    # (rows 4..11), then car with two stray person pixels: the non-void majority is car.
    cls_b = np.zeros((H, W), np.uint8)
    obj_b = np.zeros((H, W), np.uint8)
    obj_b[4:16, 6:20] = 1
    cls_b[4:16, 6:20] = CLS["car"]
    cls_b[4:12, 6:20] = 255
    cls_b[13, 10:12] = CLS["person"]
    write_palette_png(voc / "SegmentationClass" / f"{B}.png", cls_b)
    write_palette_png(voc / "SegmentationObject" / f"{B}.png", obj_b)

    cls_c = np.zeros((H, W), np.uint8)
    cls_c[0:5, 0:5] = CLS["bird"]
    write_palette_png(voc / "SegmentationClass" / f"{C}.png", cls_c)
    write_palette_png(voc / "SegmentationObject" / f"{C}.png", (cls_c > 0).astype(np.uint8))
    write_voc_xml(voc / "Annotations" / f"{C}.xml", f"{C}.jpg", W, H, [("bird", (0, 0, 5, 5))])

    (voc / "Annotations" / f"{E}.xml").write_text(HAND_XML)

    if sbd:
        bench = root / "benchmark_RELEASE" / "dataset"
        write_lines(bench / "train.txt", [D, A])
        write_lines(bench / "val.txt", [E, C])
        # D: a boat (rows 0..3, cols 0..7) and a bus (rows 10..23, cols 20..31).
        seg_d = np.zeros((H, W), np.uint8)
        inst_d = np.zeros((H, W), np.uint8)
        seg_d[0:4, 0:8] = CLS["boat"]
        inst_d[0:4, 0:8] = 1
        seg_d[10:24, 20:32] = CLS["bus"]
        inst_d[10:24, 20:32] = 2
        save_sbd_cls(bench / "cls" / f"{D}.mat", seg_d)
        save_sbd_inst(bench / "inst" / f"{D}.mat", inst_d, [CLS["boat"], CLS["bus"]])
        seg_e = np.zeros((H, W), np.uint8)
        seg_e[1:12, 0:10] = CLS["cat"]
        save_sbd_cls(bench / "cls" / f"{E}.mat", seg_e)
        save_sbd_inst(bench / "inst" / f"{E}.mat", (seg_e > 0).astype(np.uint8), [CLS["cat"]])
        for image_id, seg in ((A, cls_a), (C, cls_c)):
            save_sbd_cls(bench / "cls" / f"{image_id}.mat", np.where(seg == 255, 0, seg))
    return root


def by_id(dataset):
    return {item.id: item for item in dataset.items}


def split_ids(dataset, split):
    return {item.id for item in dataset.items if item.split == split}


# --------------------------------------------------------------------------- VOC


@pytest.fixture
def voc_root(tmp_path):
    return make_voc(tmp_path / "voc")


def test_voc_train_aug_is_sbd_train_val_and_voc_train_minus_voc_val(voc_root):
    ds = load_voc(voc_root)
    assert ds.classes == VOC_CLASSES and len(ds.classes) == 21
    assert split_ids(ds, "train") == {A, B, D, E}  # C is in SBD val but also VOC val
    assert split_ids(ds, "val") == {C}
    assert [item.id for item in ds.items] == sorted([A, B, C, D, E])


def test_voc_without_sbd_uses_imagesets_lists(voc_root, tmp_path):
    ds = load_voc(voc_root, sbd=False)
    assert split_ids(ds, "train") == {A, B} and split_ids(ds, "val") == {C}
    no_sbd = make_voc(tmp_path / "plain", sbd=False)
    ds = load_voc(no_sbd, sbd=True)  # no benchmark_RELEASE folder: same as sbd=False
    assert split_ids(ds, "train") == {A, B} and split_ids(ds, "val") == {C}


def test_voc_masks_prefer_png_then_sbd_mat(voc_root):
    items = by_id(load_voc(voc_root))
    assert items[A].mask.format == "png" and items[A].mask.path.endswith(f"SegmentationClass/{A}.png")
    assert items[D].mask.format == "sbd_cls" and items[D].mask.path.endswith(f"cls/{D}.mat")
    mask_d = read_mask(items[D].mask)
    assert mask_d.shape == (H, W) and mask_d[0, 0] == CLS["boat"] and mask_d[20, 25] == CLS["bus"]
    mask_a = read_mask(items[A].mask)
    assert mask_a[1, 2] == 255 and mask_a[5, 5] == CLS["person"]


def test_voc_auto_boxes_come_from_xml_then_object_png_then_sbd_inst(voc_root):
    items = by_id(load_voc(voc_root))
    assert items[A].box_file.endswith(f"Annotations/{A}.xml")
    assert items[A].boxes == [(3, 2, 12, 10, CLS["person"]), (15, 12, 28, 20, CLS["dog"])]
    assert items[B].box_file.endswith(f"SegmentationObject/{B}.png")
    assert items[D].box_file.endswith(f"inst/{D}.mat")
    assert items[D].boxes == [(0, 0, 8, 4, CLS["boat"]), (20, 10, 32, 24, CLS["bus"])]
    assert items[C].boxes == [(0, 0, 5, 5, CLS["bird"])]


def test_voc_boxes_from_xml_and_from_instances_agree(voc_root):
    # B's instance is car over rows 4..15, cols 6..19: its XML box, written 1-based by hand.
    (voc_root / "VOCdevkit" / "VOC2012" / "Annotations" / f"{B}.xml").write_text(
        f"<annotation><filename>{B}.jpg</filename><size><width>{W}</width><height>{H}</height></size>"
        "<object><name>car</name><bndbox><xmin>7</xmin><ymin>5</ymin><xmax>20</xmax><ymax>16</ymax>"
        "</bndbox></object></annotation>")
    from_xml = by_id(load_voc(voc_root, boxes="xml", sbd=False))
    from_instances = by_id(load_voc(voc_root, boxes="instances", sbd=False))
    assert from_xml[A].box_file != from_instances[A].box_file
    assert from_xml[A].boxes == from_instances[A].boxes == [(3, 2, 12, 10, 15), (15, 12, 28, 20, 12)]
    assert from_xml[B].boxes == from_instances[B].boxes == [(6, 4, 20, 16, CLS["car"])]
    assert from_xml[C].boxes == from_instances[C].boxes == [(0, 0, 5, 5, CLS["bird"])]


def test_hand_written_xml_one_based_inclusive_coordinates(voc_root):
    e = by_id(load_voc(voc_root))[E]
    # cat xmin=1 ymin=2 xmax=10 ymax=12 -> x0=0 y0=1 x1=10 y1=12; the person's <part> is not an object
    assert e.boxes == [(0, 1, 10, 12, CLS["cat"]), (19, 4, 32, 24, CLS["person"])]
    assert e.box_file.endswith(f"Annotations/{E}.xml")


def test_instance_class_is_majority_of_class_png_ignoring_void(voc_root):
    b = by_id(load_voc(voc_root))[B]
    assert b.boxes == [(6, 4, 20, 16, CLS["car"])]


def test_sbd_inst_single_instance_has_scalar_categories(tmp_path):
    inst = np.zeros((H, W), np.uint8)
    inst[3:7, 10:12] = 1
    save_sbd_inst(tmp_path / "x.mat", inst, [CLS["sheep"]])
    assert sbd_instance_boxes(tmp_path / "x.mat", 21) == [(10, 3, 12, 7, CLS["sheep"])]


def test_voc_classes_txt_overrides_the_voc_names(tmp_path):
    root = tmp_path / "synth"
    voc = root / "VOCdevkit" / "VOC2012"
    write_jpeg(voc / "JPEGImages" / "s0.jpg")
    write_jpeg(voc / "JPEGImages" / "s1.jpg", seed=1)
    write_lines(voc / "classes.txt", ["background", "square", "disc"])
    write_lines(voc / "ImageSets" / "Segmentation" / "train.txt", ["s0"])
    write_lines(voc / "ImageSets" / "Segmentation" / "val.txt", ["s1"])
    for image_id in ("s0", "s1"):
        write_palette_png(voc / "SegmentationClass" / f"{image_id}.png", np.full((H, W), 2, np.uint8))
        write_voc_xml(voc / "Annotations" / f"{image_id}.xml", f"{image_id}.jpg", W, H, [("disc", (0, 0, W, H))])
    ds = load_voc(root)
    assert ds.classes == ["background", "square", "disc"]
    assert by_id(ds)["s0"].boxes == [(0, 0, W, H, 2)]
    write_voc_xml(voc / "Annotations" / "s1.xml", "s1.jpg", W, H, [("dog", (0, 0, 4, 4))])
    with pytest.raises(InputError, match="unknown class name 'dog'") as err:
        load_voc(root)
    assert err.value.path.endswith("s1.xml")


def test_voc_index_validates_end_to_end(voc_root, tmp_path):
    summary = write_index(load_voc(voc_root), tmp_path / "out", progress=False)
    assert summary["images"] == 5 and summary["train"] == 4 and summary["val"] == 1
    annotations = {a["id"]: a for a in read_json(tmp_path / "out" / "annotations.json")["items"]}
    assert annotations[D]["tags"] == [CLS["boat"], CLS["bus"]]
    assert annotations[A]["boxes"] == [[3, 2, 12, 10, 15], [15, 12, 28, 20, 12]]


@pytest.mark.parametrize("remove, named", [
    ("VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt", "val.txt"),
    ("VOCdevkit/VOC2012/ImageSets/Segmentation/train.txt", "train.txt"),
    ("benchmark_RELEASE/dataset/train.txt", "dataset/train.txt"),
    (f"VOCdevkit/VOC2012/JPEGImages/{D}.jpg", f"{D}.jpg"),
    (f"benchmark_RELEASE/dataset/cls/{D}.mat", f"SegmentationClass/{D}.png"),
])
def test_voc_missing_file_is_named(voc_root, remove, named):
    (voc_root / remove).unlink()
    with pytest.raises(InputError) as err:
        load_voc(voc_root)
    assert err.value.path.endswith(named)


def test_voc_missing_folder(tmp_path):
    with pytest.raises(InputError, match="VOC 2012 folder not found") as err:
        load_voc(tmp_path)
    assert err.value.path.endswith("VOCdevkit/VOC2012")


def test_voc_unknown_class_name_in_xml(voc_root):
    xml = voc_root / "VOCdevkit" / "VOC2012" / "Annotations" / f"{E}.xml"
    xml.write_text(HAND_XML.replace("<name>cat</name>", "<name>kitten</name>"))
    with pytest.raises(InputError, match="kitten") as err:
        load_voc(voc_root)
    assert err.value.path == str(xml)


def test_voc_malformed_xml(voc_root):
    xml = voc_root / "VOCdevkit" / "VOC2012" / "Annotations" / f"{C}.xml"
    xml.write_text("<annotation><object><name>bird</name>")
    with pytest.raises(InputError, match="not valid XML") as err:
        load_voc(voc_root)
    assert err.value.path == str(xml)


def test_voc_xml_mode_requires_xml(voc_root):
    with pytest.raises(InputError, match="not found") as err:
        load_voc(voc_root, boxes="xml")
    assert err.value.path.endswith(f"Annotations/{B}.xml")


def test_voc_instances_mode_requires_instance_masks(voc_root):
    (voc_root / "VOCdevkit" / "VOC2012" / "SegmentationObject" / f"{C}.png").unlink()
    with pytest.raises(InputError, match="no boxes") as err:
        load_voc(voc_root, boxes="instances")
    assert err.value.path.endswith(f"SegmentationObject/{C}.png")
    (voc_root / "VOCdevkit" / "VOC2012" / "Annotations" / f"{C}.xml").unlink()
    with pytest.raises(InputError, match="no boxes") as err:  # auto, with no source at all
        load_voc(voc_root)
    assert err.value.path.endswith(f"Annotations/{C}.xml")


def test_voc_instance_on_void_only_is_an_error(voc_root):
    voc = voc_root / "VOCdevkit" / "VOC2012"
    write_palette_png(voc / "SegmentationClass" / f"{B}.png", np.full((H, W), 255, np.uint8))
    with pytest.raises(InputError, match="instance 1 covers no object class") as err:
        load_voc(voc_root)
    assert err.value.path.endswith(f"SegmentationObject/{B}.png")


def test_voc_instance_and_class_png_sizes_must_match(voc_root):
    voc = voc_root / "VOCdevkit" / "VOC2012"
    write_palette_png(voc / "SegmentationObject" / f"{B}.png", np.ones((H - 1, W), np.uint8))
    with pytest.raises(InputError, match="instance mask is 32x23") as err:
        load_voc(voc_root)
    assert err.value.path.endswith(f"SegmentationObject/{B}.png")


def test_sbd_inst_category_missing_and_corrupt_mat(voc_root):
    inst_mat = voc_root / "benchmark_RELEASE" / "dataset" / "inst" / f"{D}.mat"
    inst = np.zeros((H, W), np.uint8)
    inst[0:2, 0:2] = 1
    inst[5:7, 5:7] = 2
    save_sbd_inst(inst_mat, inst, [CLS["boat"]])
    with pytest.raises(InputError, match="instance 2 has no entry in GTinst.Categories") as err:
        load_voc(voc_root)
    assert err.value.path == str(inst_mat)
    inst_mat.write_bytes(b"MATLAB 5.0 MAT-file, truncated")
    with pytest.raises(InputError, match="unreadable .mat") as err:
        load_voc(voc_root)
    assert err.value.path == str(inst_mat)


# --------------------------------------------------------------------------- SIFT Flow

SF_IDS = ["coast_arnat59", "forest_for114", "street_par177"]


def make_siftflow(parent: Path, test_line: str = "street_par177") -> Path:
    root = parent / "SiftFlowDataset"
    for k, image_id in enumerate(SF_IDS):
        write_jpeg(root / "Images" / CATEGORY_FOLDER / f"{image_id}.jpg", seed=k)
        s = np.zeros((H, W))  # MATLAB double, as in the distribution
        s[:12] = 28  # sky
        s[12:, :16] = k + 1
        label = root / "SemanticLabels" / CATEGORY_FOLDER / f"{image_id}.mat"
        label.parent.mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(label, {"S": s, "names": np.array(SIFTFLOW_CLASSES[1:], dtype=object)})
    (root / "TestSet1.txt").write_text(test_line + "\r\n")
    return root


@pytest.mark.parametrize("line", [
    "street_par177",
    "street_par177.jpg",
    "Images\\spatial_envelope_256x256_static_8outdoorcategories\\street_par177.jpg",
    "spatial_envelope_256x256_static_8outdoorcategories/street_par177.jpg",
])
def test_siftflow_splits_and_classes(tmp_path, line):
    make_siftflow(tmp_path, line)
    ds = load_siftflow(tmp_path)  # the parent of SiftFlowDataset/ works too
    assert len(ds.classes) == 34 and ds.classes[0] == "background"
    assert ds.classes[1] == "awning" and ds.classes[28] == "sky" and ds.classes[33] == "window"
    assert split_ids(ds, "val") == {"street_par177"}
    assert split_ids(ds, "train") == {"coast_arnat59", "forest_for114"}
    assert all(item.boxes == [] and item.mask.format == "siftflow_mat" for item in ds.items)


def test_siftflow_mask_maps_zero_to_void(tmp_path):
    root = make_siftflow(tmp_path)
    item = by_id(load_siftflow(root))["forest_for114"]
    mask = read_mask(item.mask)
    assert mask[0, 0] == 28 and mask[20, 3] == 2 and mask[20, 20] == 255


def test_siftflow_errors_name_the_file(tmp_path):
    root = make_siftflow(tmp_path, "street_par999")
    with pytest.raises(InputError, match="street_par999") as err:
        load_siftflow(root)
    assert err.value.path == str(root / "TestSet1.txt")
    (root / "TestSet1.txt").write_text("street_par177\n")
    label = root / "SemanticLabels" / CATEGORY_FOLDER / "coast_arnat59.mat"
    label.unlink()
    with pytest.raises(InputError, match="label file") as err:
        load_siftflow(root)
    assert err.value.path == str(label)
    (root / "TestSet1.txt").unlink()
    with pytest.raises(InputError, match="test list not found") as err:
        load_siftflow(root)
    assert err.value.path.endswith("TestSet1.txt")
    with pytest.raises(InputError, match="image folder not found") as err:
        load_siftflow(tmp_path / "nowhere")
    assert CATEGORY_FOLDER in err.value.path


# --------------------------------------------------------------------------- boxes (COCO / XML)


def make_box_dataset(root: Path) -> Path:
    write_jpeg(root / "images" / "img1.jpg", seed=1)
    write_jpeg(root / "images" / "img3.jpg", seed=3)
    rgb = np.random.default_rng(2).integers(0, 256, (H, W, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(root / "images" / "img2.png")
    coco = {
        "images": [{"id": 10, "file_name": "img1.jpg", "width": W, "height": H},
                   {"id": 20, "file_name": "img2.png", "width": W, "height": H}],
        "annotations": [
            {"id": 1, "image_id": 10, "bbox": [1.5, 2.2, 10.1, 5.0], "category_id": 2, "iscrowd": 0, "area": 50.5},
            {"id": 2, "image_id": 10, "bbox": [0, 0, 30, 20], "category_id": 5, "iscrowd": 1, "area": 600},
            {"id": 3, "image_id": 20, "bbox": [0.0, 0.0, 8.0, 6.0], "category_id": 5, "iscrowd": 0, "area": 48},
        ],
        "categories": [{"id": 5, "name": "dog", "supercategory": "animal"},
                       {"id": 2, "name": "cat", "supercategory": "animal"}],
    }
    (root / "annotations.json").write_text(json.dumps(coco))
    return root


def test_coco_box_conversion_by_hand():
    assert coco_box([1.5, 2.2, 10.1, 5.0], "a.json", 1) == (1, 2, 12, 8)
    assert coco_box([3, 4, 5, 6], "a.json", 1) == (3, 4, 8, 10)
    with pytest.raises(InputError, match="zero-area"):
        coco_box([3, 4, 0, 6], "a.json", 1)
    with pytest.raises(InputError, match="4 numbers"):
        coco_box([3, 4, 5], "a.json", 1)


def test_load_boxes_from_coco(tmp_path):
    root = make_box_dataset(tmp_path / "b")
    ds = load_boxes(root, "annotations.json")
    assert ds.classes == ["background", "cat", "dog"]  # categories sorted by id: 2 cat, 5 dog
    items = by_id(ds)
    assert items["img1"].boxes == [(1, 2, 12, 8, 1)]  # the crowd dog is skipped
    assert items["img2"].boxes == [(0, 0, 8, 6, 2)]
    assert items["img3"].boxes == [] and items["img3"].box_file is None  # unannotated image still an item
    assert items["img1"].box_file == str(root / "annotations.json")
    assert {item.split for item in ds.items} == {"train"}


def test_load_boxes_with_classes_tags_masks_and_val_list(tmp_path):
    root = make_box_dataset(tmp_path / "b")
    write_lines(root / "classes.txt", ["background", "dog", "cat", "bird"])
    (root / "tags.json").write_text(json.dumps({"img3": ["bird", "dog"], "img1": []}))
    write_grey_png(root / "masks" / "img2.png", np.full((H, W), 1))
    write_lines(root / "val.txt", ["img2"])
    ds = load_boxes(root, "annotations.json", masks="masks", tags="tags.json", classes="classes.txt",
                    val_list="val.txt")
    items = by_id(ds)
    assert ds.classes == ["background", "dog", "cat", "bird"]
    assert items["img1"].boxes == [(1, 2, 12, 8, 2)] and items["img2"].boxes == [(0, 0, 8, 6, 1)]
    assert items["img3"].tags == [1, 3] and items["img1"].tags == [] and items["img2"].tags is None
    assert items["img2"].mask.path == str(root / "masks" / "img2.png") and items["img1"].mask is None
    assert split_ids(ds, "val") == {"img2"}
    summary = write_index(ds, tmp_path / "out", progress=False)
    assert summary == {"images": 3, "train": 2, "val": 1, "boxes": 2, "with_mask": 1, "skipped": 0}


def test_class_list_without_background_gets_it_prepended(tmp_path):
    root = make_box_dataset(tmp_path / "b")
    write_lines(root / "classes.txt", ["cat", "dog"])
    assert load_boxes(root, "annotations.json", classes="classes.txt").classes == ["background", "cat", "dog"]


def test_load_boxes_from_xml_folder(tmp_path):
    root = make_box_dataset(tmp_path / "b")
    write_voc_xml(root / "xml" / "img1.xml", "img1.jpg", W, H, [("zebra", (2, 3, 9, 10)), ("ant", (0, 0, 4, 4))])
    write_voc_xml(root / "xml" / "img2.xml", "img2.png", W, H, [("ant", (5, 5, 7, 9))])
    ds = load_boxes(root, "xml")
    assert ds.classes == ["background", "ant", "zebra"]
    items = by_id(ds)
    assert items["img1"].boxes == [(2, 3, 9, 10, 2), (0, 0, 4, 4, 1)]
    assert items["img2"].boxes == [(5, 5, 7, 9, 1)]
    assert items["img1"].box_file == str(root / "xml" / "img1.xml")


@pytest.mark.parametrize("edit, match", [
    (lambda d: d["images"].append({"id": 30, "file_name": "gone.jpg"}), "gone.jpg"),
    (lambda d: d["annotations"].append({"id": 9, "image_id": 99, "bbox": [0, 0, 1, 1], "category_id": 2}),
     "image_id 99"),
    (lambda d: d["annotations"].append({"id": 9, "image_id": 10, "bbox": [0, 0, 1, 1], "category_id": 7}),
     "category_id 7"),
    (lambda d: d["annotations"].append({"id": 9, "image_id": 10, "bbox": [0, 0, -1, 1], "category_id": 2}),
     "zero-area"),
    (lambda d: d.pop("categories"), "not a COCO annotation file"),
])
def test_bad_coco_names_the_json(tmp_path, edit, match):
    root = make_box_dataset(tmp_path / "b")
    doc = json.loads((root / "annotations.json").read_text())
    edit(doc)
    (root / "annotations.json").write_text(json.dumps(doc))
    with pytest.raises(InputError, match=match) as err:
        load_boxes(root, "annotations.json")
    assert err.value.path == str(root / "annotations.json")


def test_malformed_json_and_xml(tmp_path):
    root = make_box_dataset(tmp_path / "b")
    (root / "annotations.json").write_text('{"images": [')
    with pytest.raises(InputError, match="not valid JSON") as err:
        load_boxes(root, "annotations.json")
    assert err.value.path == str(root / "annotations.json")
    (root / "xml").mkdir()
    (root / "xml" / "img1.xml").write_text("<annotation><object>")
    with pytest.raises(InputError, match="not valid XML") as err:
        load_boxes(root, "xml")
    assert err.value.path == str(root / "xml" / "img1.xml")


def test_xml_naming_a_missing_image(tmp_path):
    root = make_box_dataset(tmp_path / "b")
    write_voc_xml(root / "xml" / "img9.xml", "img9.jpg", W, H, [("ant", (0, 0, 2, 2))])
    with pytest.raises(InputError, match="img9.jpg") as err:
        load_boxes(root, "xml")
    assert err.value.path == str(root / "xml" / "img9.xml")


def test_unknown_class_names_against_class_list_and_tags(tmp_path):
    root = make_box_dataset(tmp_path / "b")
    write_lines(root / "classes.txt", ["cat"])
    with pytest.raises(InputError, match="unknown class name 'dog'") as err:
        load_boxes(root, "annotations.json", classes="classes.txt")
    assert err.value.path == str(root / "annotations.json")
    (root / "tags.json").write_text(json.dumps({"img3": ["unicorn"]}))
    with pytest.raises(InputError, match="unicorn") as err:
        load_boxes(root, "annotations.json", tags="tags.json")
    assert err.value.path == str(root / "tags.json")
    (root / "tags.json").write_text(json.dumps({"img7": ["cat"]}))
    with pytest.raises(InputError, match="img7") as err:
        load_boxes(root, "annotations.json", tags="tags.json")
    assert err.value.path == str(root / "tags.json")


def test_bad_val_list_mask_and_folders(tmp_path):
    root = make_box_dataset(tmp_path / "b")
    write_lines(root / "val.txt", ["img2", "img8"])
    with pytest.raises(InputError, match="img8") as err:
        load_boxes(root, "annotations.json", val_list="val.txt")
    assert err.value.path == str(root / "val.txt")
    write_grey_png(root / "masks" / "img5.png", np.zeros((H, W)))
    with pytest.raises(InputError, match="img5") as err:
        load_boxes(root, "annotations.json", masks="masks")
    assert err.value.path == str(root / "masks" / "img5.png")
    with pytest.raises(InputError, match="image folder not found") as err:
        load_boxes(root, "annotations.json", images="pictures")
    assert err.value.path == str(root / "pictures")
    with pytest.raises(InputError, match="COCO .json file or a folder") as err:
        load_boxes(root, "nothing_here")
    assert err.value.path == str(root / "nothing_here")


# --------------------------------------------------------------------------- CamVid


def make_camvid(root: Path) -> Path:
    for k, (split, name) in enumerate((("train", "0001TP_006690"), ("val", "0016E5_07959"))):
        rgb = np.random.default_rng(k).integers(0, 256, (H, W, 3), dtype=np.uint8)
        (root / split).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(root / split / f"{name}.png")
        annot = np.full((H, W), 3, np.uint8)  # road
        annot[:3] = 0  # sky
        annot[4:8, 2:7] = 8  # car, 20 px
        annot[20, 0:2] = 8  # car, 2 px: too small
        for i in range(4):  # a diagonal pedestrian: one 8-connected component of 4 px
            annot[10 + i, 10 + i] = 9
        annot[0, 31] = 11  # void
        write_grey_png(root / f"{split}annot" / f"{name}.png", annot)
    return root


def test_camvid_boxes_lut_and_splits(tmp_path):
    root = make_camvid(tmp_path / "camvid")
    ds = load_camvid(root, min_area=4)
    assert ds.classes == ["background", "car", "pedestrian", "bicyclist"]
    items = by_id(ds)
    assert split_ids(ds, "train") == {"0001TP_006690"} and split_ids(ds, "val") == {"0016E5_07959"}
    item = items["0001TP_006690"]
    assert item.boxes == [(2, 4, 7, 8, 1), (10, 10, 14, 14, 2)]
    assert item.box_file == str(root / "trainannot" / "0001TP_006690.png")
    mask = read_mask(item.mask)
    assert mask[5, 3] == 1 and mask[11, 11] == 2 and mask[0, 31] == 255 and mask[0, 0] == 0 and mask[15, 20] == 0
    assert len(item.mask.lut) == 256
    assert by_id(load_camvid(root, min_area=21))["0001TP_006690"].boxes == []
    assert by_id(load_camvid(root, min_area=2))["0001TP_006690"].boxes[1] == (0, 20, 2, 21, 1)


def test_camvid_custom_things_and_dirs(tmp_path):
    root = make_camvid(tmp_path / "camvid")
    ds = load_camvid(root, things=("pedestrian", "Sign/Symbol"), min_area=1,
                     train_dirs=("train", "absent"), val_dirs=("test",))
    assert ds.classes == ["background", "pedestrian", "Sign/Symbol"]
    assert [item.id for item in ds.items] == ["0001TP_006690"]  # val/ is not listed, test/ is absent
    assert ds.items[0].boxes == [(10, 10, 14, 14, 1)]
    assert read_mask(ds.items[0].mask)[5, 3] == 0  # cars are background now


def test_camvid_errors(tmp_path):
    root = make_camvid(tmp_path / "camvid")
    with pytest.raises(InputError, match="none of the CamVid folders") as err:
        load_camvid(root, train_dirs=("nope",), val_dirs=())
    assert err.value.path == str(root)
    with pytest.raises(InputError, match="unknown CamVid class 'truck'"):
        load_camvid(root, things=("car", "truck"))
    (root / "valannot" / "0016E5_07959.png").unlink()
    with pytest.raises(InputError, match="annotation of image") as err:
        load_camvid(root)
    assert err.value.path == str(root / "valannot" / "0016E5_07959.png")


# --------------------------------------------------------------------------- load_source


def test_load_source_dispatch(voc_root, tmp_path):
    synthetic = load_source(source({"kind": "synthetic", "root": str(voc_root)}))
    assert split_ids(synthetic, "train") == {A, B}  # synthetic never reads SBD
    voc = load_source(source({"kind": "voc2012", "root": str(voc_root)}))
    assert split_ids(voc, "train") == {A, B, D, E}
    voc_plain = load_source(source({"kind": "voc2012", "root": str(voc_root), "voc2012": {"sbd": False}}))
    assert split_ids(voc_plain, "train") == {A, B}
    instances = load_source(source({"kind": "voc2012", "root": str(voc_root), "boxes": "instances"}))
    assert by_id(instances)[A].box_file.endswith(f"SegmentationObject/{A}.png")
    sift = load_source(source({"kind": "siftflow", "root": str(make_siftflow(tmp_path / "sf"))}))
    assert len(sift.classes) == 34
    camvid = load_source(source({"kind": "camvid", "root": str(make_camvid(tmp_path / "cv")),
                          "camvid": {"min_area": 4, "things": ["car"]}}))
    assert camvid.classes == ["background", "car"] and len(camvid.items) == 2
    boxes_root = make_box_dataset(tmp_path / "bx")
    write_lines(boxes_root / "val.txt", ["img1"])
    boxes = load_source(source({"kind": "boxes", "root": str(boxes_root), "boxes": "annotations.json",
                         "boxes_source": {"val_list": "val.txt"}}))
    assert split_ids(boxes, "val") == {"img1"} and boxes.classes == ["background", "cat", "dog"]


def test_load_source_bad_params_name_params_yaml(voc_root):
    for params, match in [({"kind": "kitti", "root": str(voc_root)}, "source.kind: expected one of .*'kitti'"),
                          ({"kind": "voc2012", "root": ""}, "source.root: expected a string"),
                          ({"kind": "boxes", "root": str(voc_root)}, "must name a COCO"),
                          ({"kind": "voc2012", "root": str(voc_root), "boxes": "polygons"}, "polygons"),
                          ({"kind": "siftflow", "root": str(voc_root), "boxes": "xml"}, "VOC-layout"),
                          ({"kind": "camvid", "root": str(voc_root), "camvid": {"colour": 1}},
                           "source.camvid.colour: unknown key")]:
        with pytest.raises(InputError, match=match) as err:
            load_source(config_from_dict({"source": params, "synthetic": {"out": []}}).source)
        assert err.value.path == "params.yaml"


def test_voc_boxes_overridden_by_coco_json_and_xml_folder(voc_root, tmp_path):
    coco = {"images": [{"id": 1, "file_name": f"{A}.jpg"}, {"id": 2, "file_name": "2012_999999.jpg"}],
            "annotations": [{"id": 1, "image_id": 1, "bbox": [0.5, 1.0, 4.0, 4.5], "category_id": 1},
                            {"id": 2, "image_id": 2, "bbox": [0, 0, 4, 4], "category_id": 1}],
            "categories": [{"id": 1, "name": "horse"}]}
    path = tmp_path / "new_boxes.json"
    path.write_text(json.dumps(coco))
    items = by_id(load_source(source({"kind": "voc2012", "root": str(voc_root), "boxes": str(path)})))
    assert items[A].boxes == [(0, 1, 5, 6, CLS["horse"])] and items[A].box_file == str(path)
    assert items[C].boxes == [] and items[C].box_file is None  # not annotated in the override
    assert items[D].mask.format == "sbd_cls"  # masks still come from the dataset

    xml_dir = tmp_path / "xmls"
    write_voc_xml(xml_dir / f"{C}.xml", f"{C}.jpg", W, H, [("cow", (1, 1, 3, 3))])
    items = by_id(load_source(source({"kind": "synthetic", "root": str(voc_root), "boxes": str(xml_dir)})))
    assert items[C].boxes == [(1, 1, 3, 3, CLS["cow"])] and items[A].boxes == []

    coco["categories"] = [{"id": 1, "name": "airplane"}]
    path.write_text(json.dumps(coco))
    with pytest.raises(InputError, match="unknown class name 'airplane'") as err:
        load_source(source({"kind": "voc2012", "root": str(voc_root), "boxes": str(path)}))
    assert err.value.path == str(path)
    coco["images"] = [{"id": 1, "file_name": "other.jpg"}]
    coco["annotations"] = []
    path.write_text(json.dumps(coco))
    with pytest.raises(InputError, match="none of its 1 annotated images") as err:
        load_source(source({"kind": "voc2012", "root": str(voc_root), "boxes": str(path)}))
    assert err.value.path == str(path)


def test_camvid_boxes_overridden_by_coco(tmp_path):
    root = make_camvid(tmp_path / "cv")
    coco = {"images": [{"id": 1, "file_name": "0016E5_07959.png"}],
            "annotations": [{"id": 1, "image_id": 1, "bbox": [1, 1, 2, 2], "category_id": 3}],
            "categories": [{"id": 3, "name": "pedestrian"}]}
    (root / "boxes.json").write_text(json.dumps(coco))
    items = by_id(load_source(source({"kind": "camvid", "root": str(root), "boxes": "boxes.json"})))
    assert items["0016E5_07959"].boxes == [(1, 1, 3, 3, 2)]
    assert items["0001TP_006690"].boxes == []

"""The synthetic default dataset: exact VOC layout, formats, labels, determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.sources import synthetic
from pipeline.core.fileio import read_label_png, voc_palette
from pipeline.sources.vocxml import read_voc_xml

H, W, C, SEED = 48, 64, 12, 3
N_TRAIN, N_VAL = 10, 4


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    stats = synthetic.generate(root, num_train=N_TRAIN, num_val=N_VAL, height=H, width=W,
                               num_classes=C, seed=SEED, n_jobs=1, progress=False)
    voc = root / "VOCdevkit" / "VOC2012"
    ids = (voc / "ImageSets/Segmentation/train.txt").read_text().split() + \
        (voc / "ImageSets/Segmentation/val.txt").read_text().split()
    return root, voc, stats, ids


def _load(voc, image_id):
    cls = read_label_png(voc / "SegmentationClass" / f"{image_id}.png")
    obj = read_label_png(voc / "SegmentationObject" / f"{image_id}.png")
    ann = read_voc_xml(voc / "Annotations" / f"{image_id}.xml")
    return cls, obj, ann


def test_layout_is_voc(dataset):
    root, voc, stats, ids = dataset
    assert stats["root"] == str(voc)
    expected = [f"syn_{i:06d}" for i in range(N_TRAIN + N_VAL)]
    sets = voc / "ImageSets" / "Segmentation"
    assert (sets / "train.txt").read_text().split() == expected[:N_TRAIN]
    assert (sets / "val.txt").read_text().split() == expected[N_TRAIN:]
    assert (sets / "trainval.txt").read_text().split() == expected
    for folder, ext in (("JPEGImages", "jpg"), ("SegmentationClass", "png"),
                        ("SegmentationObject", "png"), ("Annotations", "xml")):
        assert sorted(p.name for p in (voc / folder).iterdir()) == [f"{i}.{ext}" for i in expected], folder
    lines = (voc / "classes.txt").read_text().splitlines()
    assert lines == synthetic.class_names(C)
    assert lines[0] == "background" and len(lines) == C + 1 and len(set(lines)) == C + 1
    # nothing half-written or temporary is left behind
    assert not [p for p in root.rglob("*") if ".tmp-" in p.name]
    assert (stats["images"], stats["train"], stats["val"]) == (N_TRAIN + N_VAL, N_TRAIN, N_VAL)


def test_file_formats(dataset):
    _, voc, _, ids = dataset
    pal = voc_palette().ravel().tolist()
    for image_id in ids:
        with Image.open(voc / "JPEGImages" / f"{image_id}.jpg") as im:
            assert im.format == "JPEG" and im.mode == "RGB" and im.size == (W, H)
        for folder in ("SegmentationClass", "SegmentationObject"):
            with Image.open(voc / folder / f"{image_id}.png") as im:
                assert im.format == "PNG" and im.mode == "P" and im.size == (W, H)
                assert im.getpalette()[:len(pal)] == pal
        ann = read_voc_xml(voc / "Annotations" / f"{image_id}.xml")
        assert ann["filename"] == f"{image_id}.jpg"
        assert (ann["width"], ann["height"]) == (W, H)


def test_boxes_are_tight_boxes_of_instance_masks(dataset):
    _, voc, _, ids = dataset
    names = synthetic.class_names(C)
    for image_id in ids:
        cls, obj, ann = _load(voc, image_id)
        objects = ann["objects"]
        assert 1 <= len(objects) <= synthetic.MAX_OBJECTS
        present = set(np.unique(obj).tolist()) - {0, 255}
        assert present == set(range(1, len(objects) + 1)), image_id
        for k, o in enumerate(objects, 1):
            ys, xs = np.nonzero(obj == k)
            assert o["box"] == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1), (image_id, k)
            # the class map agrees with the instance's class name
            assert set(np.unique(cls[obj == k]).tolist()) == {names.index(o["name"])}
        # class and object maps agree on background and void
        assert np.array_equal(cls == 0, obj == 0)
        assert np.array_equal(cls == 255, obj == 255)


def test_class_indices_in_range(dataset):
    _, voc, stats, ids = dataset
    seen = set()
    for image_id in ids:
        cls, _, _ = _load(voc, image_id)
        values = set(np.unique(cls).tolist())
        assert values <= set(range(C + 1)) | {255}
        seen |= values - {0, 255}
    assert len(seen) >= 5  # many classes occur even in a tiny set
    assert sum(stats["objects_per_class"].values()) == stats["objects"]


def test_void_band_on_object_boundaries(dataset):
    _, voc, stats, ids = dataset
    for image_id in ids:
        _, obj, _ = _load(voc, image_id)
        void = obj == 255
        assert void.any(), image_id
        # no labelled object pixel touches a pixel of another label (background or another
        # object) directly: a void band always separates them
        for a, b in ((obj[:, :-1], obj[:, 1:]), (obj[:-1, :], obj[1:, :])):
            touching = (a != b) & (a != 255) & (b != 255) & ((a > 0) | (b > 0))
            assert not touching.any(), image_id
        # the band is thin and hugs the objects: every void pixel is within 2 px of an object
        labelled = (obj > 0) & (obj < 255)
        near = np.zeros_like(labelled)
        pad = np.pad(labelled, 2)
        for dy in range(5):
            for dx in range(5):
                near |= pad[dy:dy + H, dx:dx + W]
        assert near[void].all(), image_id
    assert 0.005 < stats["void_fraction"] < 0.15


def test_every_image_has_objects_and_some_overlap(dataset):
    _, voc, stats, ids = dataset
    overlapping_images = 0
    pairs = 0
    for image_id in ids:
        objects = read_voc_xml(voc / "Annotations" / f"{image_id}.xml")["objects"]
        assert objects, image_id
        hit = False
        for i in range(len(objects)):
            for j in range(i + 1, len(objects)):
                a, b = objects[i]["box"], objects[j]["box"]
                if min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1]):
                    pairs += 1
                    hit |= objects[i]["name"] != objects[j]["name"]
        overlapping_images += hit
    assert overlapping_images >= 1
    assert overlapping_images == stats["images_with_overlap"]
    assert pairs == stats["overlapping_pairs"]
    assert sum(stats["objects_per_image"].values()) == len(ids)


def test_rerun_and_two_workers_are_byte_identical(dataset, tmp_path):
    root, _, stats, _ = dataset
    stats2 = synthetic.generate(tmp_path, num_train=N_TRAIN, num_val=N_VAL, height=H, width=W,
                                num_classes=C, seed=SEED, n_jobs=2, progress=False)
    a, b = _tree(root), _tree(tmp_path)
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []
    assert {k: v for k, v in stats2.items() if k != "root"} == {k: v for k, v in stats.items() if k != "root"}
    # a rerun over an existing tree replaces it, still identical
    synthetic.generate(tmp_path, num_train=N_TRAIN, num_val=N_VAL, height=H, width=W,
                       num_classes=C, seed=SEED, n_jobs=1, progress=False)
    assert _tree(tmp_path) == a


def test_seed_changes_the_data(tmp_path):
    synthetic.generate(tmp_path / "a", num_train=2, num_val=0, height=H, width=W, seed=0, progress=False)
    synthetic.generate(tmp_path / "b", num_train=2, num_val=0, height=H, width=W, seed=1, progress=False)
    img = "VOCdevkit/VOC2012/JPEGImages/syn_000000.jpg"
    assert (tmp_path / "a" / img).read_bytes() != (tmp_path / "b" / img).read_bytes()


def test_render_sample_matches_files_and_depends_only_on_seed_and_index(dataset):
    _, voc, _, ids = dataset
    s = synthetic.render_sample(SEED, 5, H, W, C)
    cls, obj, ann = _load(voc, ids[5])
    assert np.array_equal(s.class_map, cls) and np.array_equal(s.object_map, obj)
    assert [b for _, b in s.objects] == [o["box"] for o in ann["objects"]]
    again = synthetic.render_sample(SEED, 5, H, W, C)
    assert np.array_equal(again.image, s.image)
    other = synthetic.render_sample(SEED, 6, H, W, C)
    assert not np.array_equal(other.image, s.image)


def test_objects_are_textured_and_not_boxes():
    fills, stds = [], []
    for i in range(40):
        s = synthetic.render_sample(11, i, 120, 160, C)
        grey = s.image.astype(np.float32).mean(2)
        for k, (_, (x0, y0, x1, y1)) in enumerate(s.objects, 1):
            inside = s.object_map == k
            fills.append(inside[y0:y1, x0:x1].mean())
            if inside.sum() >= 200:
                stds.append(grey[inside].std())
    # shapes are not boxes: on average a box is far from full of its object
    assert np.mean(fills) < 0.7
    assert np.min(fills) < 0.4
    # objects carry texture, not a flat colour
    assert np.median(stds) > 12


def test_large_size_works():
    s = synthetic.render_sample(0, 0, 375, 500, C)
    assert s.image.shape == (375, 500, 3) and s.image.dtype == np.uint8
    assert s.class_map.shape == s.object_map.shape == (375, 500)
    assert 1 <= len(s.objects) <= synthetic.MAX_OBJECTS


@pytest.mark.parametrize("kwargs", [
    {"num_classes": 0}, {"num_classes": len(synthetic.CLASS_STYLES) + 1},
    {"num_train": 0, "num_val": 0}, {"num_train": -1}, {"height": 8}, {"seed": -1},
])
def test_bad_arguments_are_refused(tmp_path, kwargs):
    args = dict(num_train=1, num_val=0, height=H, width=W, progress=False) | kwargs
    with pytest.raises(ValueError):
        synthetic.generate(tmp_path, **args)
    assert not (tmp_path / "VOCdevkit").exists()


def test_render_preview(dataset, tmp_path):
    root, _, _, _ = dataset
    out = synthetic.render_preview(root, tmp_path / "preview.png", n=6, cols=3)
    with Image.open(out) as im:
        arr = np.asarray(im.convert("RGB"))
    # 3 columns of (image | 2 px | class map) and 2 rows, with gaps and a legend
    assert arr.shape[1] >= 3 * (2 * W + 2)
    assert arr.shape[0] >= 2 * H
    assert len(np.unique(arr.reshape(-1, 3), axis=0)) > 50

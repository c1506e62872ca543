"""Box strategies beside ``ucm`` / ``raw_box``: grabcut, hard, single thresholds, external,
and the enclosed rule's span / band refinements -- each on a case whose answer is known by hand."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from helpers import soft_labels
from pipeline.core.config import ConfigError, LabelsConfig, config_from_dict, parse_strategy
from pipeline.cli import main
from pipeline.core.errors import InputError
from pipeline.labels.external import ExternalMasks, load_external_masks
from pipeline.core.shards import ShardReader, bit_count
from test_ucm_rules import l_shape_scene, nested_squares, ucm_from_regions


# ----------------------------------------------------------------------------- grabcut

def red_on_green(seed=0):
    """60x80 noisy green image with a red 20x30 rectangle at rows 20:40, cols 25:55."""
    rng = np.random.default_rng(seed)
    im = np.zeros((60, 80, 3), np.int64)
    im[:] = (30, 160, 40)
    im[20:40, 25:55] = (200, 30, 30)
    im += rng.integers(-10, 10, im.shape)
    return np.clip(im, 0, 255).astype(np.uint8)


def test_grabcut_cuts_the_object_out_of_a_loose_box():
    im = red_on_green()
    box = [[20, 15, 60, 45, 2]]  # 40x30 box around the 30x20 object
    labels, info = soft_labels(None, box, 3, "grabcut", image=im)
    expect = np.ones((60, 80), np.uint8)
    expect[20:40, 25:55] = 0b100
    np.testing.assert_array_equal(labels, expect)
    assert np.isnan(info[0, 0]) and tuple(info[0, 1:]) == (0, 1200, 600, 0)
    again, _ = soft_labels(None, box, 3, "grabcut", image=im)  # seeded: the same again
    np.testing.assert_array_equal(labels, again)


def test_grabcut_without_background_falls_back_to_the_whole_box():
    im = red_on_green()
    labels, info = soft_labels(None, [[0, 0, 80, 60, 1], [20, 15, 60, 45, 2]], 3, "grabcut", image=im)
    assert tuple(info[:, 1]) == (1, 0)  # the whole-image box has nothing to learn the background from
    assert info[0, 3] == 80 * 60
    assert np.all(labels & 0b10)  # box 0 covers everything
    assert labels[30, 40] == 0b110 and labels[5, 5] == 0b10


def test_grabcut_needs_the_image():
    with pytest.raises(ValueError, match="needs the image"):
        soft_labels(None, [[0, 0, 2, 2, 1]], 2, "grabcut", shape=(4, 4))


# ----------------------------------------------------------------------------- hard

def test_hard_gives_uncertain_pixels_the_box_class_and_ignores_nothing():
    r, obj, u = l_shape_scene(object_edge=200, halo_edge=80)
    soft, _ = soft_labels(u, [[2, 2, 13, 13, 1]], 2, "ucm", rule="enclosed")
    hard, info = soft_labels(u, [[2, 2, 13, 13, 1]], 2, "hard", rule="enclosed")
    halo = r == 2
    assert np.all(soft[halo] == 0)  # ucm: the halo is uncertain
    expect = np.where(obj | halo, 0b10, 0b01)
    np.testing.assert_array_equal(hard, expect)
    assert tuple(info[0]) == (0.75, 0, 121, 57, halo.sum())


def test_hard_picks_one_class_per_overlapped_pixel_with_a_seeded_draw():
    u = np.zeros((2 * 30 + 1, 2 * 30 + 1), np.uint8)  # no contour: every box is all confident
    boxes = [[0, 0, 20, 20, 1], [10, 10, 30, 30, 3]]  # overlap [10:20, 10:20], 100 px
    soft, _ = soft_labels(u, boxes, 4, "ucm")
    assert np.all(soft[10:20, 10:20] == 0b1010)
    a, _ = soft_labels(u, boxes, 4, "hard", seed=0)
    b, _ = soft_labels(u, boxes, 4, "hard", seed=0)
    c, _ = soft_labels(u, boxes, 4, "hard", seed=1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.all(bit_count(a) == 1)
    ov = a[10:20, 10:20]
    assert np.all(np.isin(ov, [0b10, 0b1000]))
    assert 25 <= np.sum(ov == 0b10) <= 75  # a fair draw between the two classes
    outside = soft.copy()
    outside[10:20, 10:20] = 0
    a2 = a.copy()
    a2[10:20, 10:20] = 0
    np.testing.assert_array_equal(a2, outside)  # single-class pixels are untouched


# ----------------------------------------------------------------------------- single thresholds

@pytest.mark.parametrize("t, expect", [
    # nested squares, strengths ring0|1 240, 1|2 170, 2|3 130, 3|core 100; alpha 0.3 -> 36.3 px
    (0.75, (0.75, 0, 121, 81, 0)),            # 180: [1:10] = 81 px at once
    (0.5, (130 / 240, 1, 121, 49, 0)),        # 120: [3:8] 25 px < alpha -> grown past 130 -> 49 px
    (0.25, (130 / 240, 1, 121, 49, 0)),       # 60: core 9 px -> grown the same way
])
def test_single_threshold_variants_of_the_paper_rule(t, expect):
    _, u = nested_squares([240, 170, 130, 100])
    box = [[0, 0, 11, 11, 1]]
    labels, info = soft_labels(u, box, 2, thresholds=[t], alpha=0.3, rule="paper")
    assert tuple(info[0]) == pytest.approx(expect)
    named, named_info = soft_labels(u, box, 2, f"ucm_t{t}", alpha=0.3, rule="paper")
    np.testing.assert_array_equal(labels, named)
    np.testing.assert_array_equal(info, named_info)
    assert np.sum(labels == 0) == 0  # one threshold: nothing uncertain


def test_single_threshold_variants_of_the_enclosed_rule():
    r, obj, u = l_shape_scene(object_edge=200, halo_edge=80)
    box = [[2, 2, 13, 13, 1]]
    weak, info = soft_labels(u, box, 2, "ucm_t0.25", rule="enclosed")  # 50: the 80-contour encloses
    np.testing.assert_array_equal(weak == 0b10, obj | (r == 2))
    assert tuple(info[0]) == (0.25, 0, 121, 57 + (r == 2).sum(), 0)
    strong, _ = soft_labels(u, box, 2, "ucm_t0.75", rule="enclosed")  # 150: the object only
    np.testing.assert_array_equal(strong == 0b10, obj)
    assert np.sum(strong == 0) == 0


def test_strategy_names_and_params():
    assert parse_strategy("ucm") == ("ucm", {})
    assert parse_strategy("raw_box") == ("raw_box", {})
    assert parse_strategy("ucm_t0.5") == ("ucm", {"thresholds": (0.5,)})
    assert parse_strategy("hard_paper_t0.25_t0.75_a0.3") == ("hard", {"rule": "paper", "thresholds": (0.25, 0.75),
                                                                       "alpha": 0.3})
    for bad in ("magic", "raw_box_t0.5", "ucm_x1", "ucm_tfoo", "ucmx"):
        with pytest.raises(ValueError):
            parse_strategy(bad)
    p = config_from_dict({"labels": {"strategy": "ucm", "thresholds": [0.5]}}).labels
    assert p.thresholds == (0.5,) and p.box.thresholds == (0.5,)
    s = config_from_dict({"labels": {"strategy": "ucm_paper_t0.75_a0.3"}}).labels.box
    assert (s.name, s.base, s.rule, s.thresholds, s.alpha) == ("ucm_paper_t0.75_a0.3", "ucm", "paper", (0.75,), 0.3)
    for bad, key in (({"strategy": "ucm_t0.9_t0.5"}, "labels.strategy"), ({"strategy": "grabcut_t0.5"}, "labels.strategy"),
                     ({"span": 2}, "labels.span"), ({"external_format": "rgb"}, "labels.external_format"),
                     ({"grabcut": {"iterations": 0}}, "labels.grabcut.iterations")):
        with pytest.raises(InputError, match=f"^params.yaml: {key}: "):
            config_from_dict({"labels": bad})


# ----------------------------------------------------------------------------- span and band

def test_span_rejects_a_strong_contour_around_part_of_the_object():
    # box [2:13, 2:13] = the object (outer contour 100); inside it a 5x7 part [4:9, 4:11] with a 240 contour
    r = np.zeros((15, 15), int)
    r[2:13, 2:13] = 1
    r[4:9, 4:11] = 2
    u = ucm_from_regions(r, lambda a, b: {(0, 1): 100, (1, 2): 240, (0, 2): 240}[(min(a, b), max(a, b))])
    box = [[2, 2, 13, 13, 1]]
    # without span: t = 3/4 (180) encloses the part, 35 px >= 0.25 * 121: confident; t = 1/4 the rest -> uncertain
    plain, info = soft_labels(u, box, 2, alpha=0.25, rule="enclosed")
    assert tuple(info[0]) == (0.75, 0, 121, 35, 86)
    # with span 0.82 the part (5/11 of the height) does not qualify; t = 1/4 (60) encloses the whole object
    spanned, info = soft_labels(u, box, 2, alpha=0.25, rule="enclosed", span=0.82)
    assert tuple(info[0]) == (0.25, 0, 121, 121, 0)
    assert np.all(spanned[2:13, 2:13] == 0b10)


def test_band_keeps_an_uncertain_margin_after_the_fallback():
    # object 9 px (contour 200) inside a 49-px halo (contour 40) inside an 81-px ring (contour 35)
    r = np.zeros((15, 15), int)
    r[3:12, 3:12] = 3
    r[4:11, 4:11] = 2
    r[6:9, 6:9] = 1
    strength = {(0, 3): 35, (2, 3): 40, (1, 2): 200}
    u = ucm_from_regions(r, lambda a, b: strength.get((min(a, b), max(a, b)), 0))
    box = [[2, 2, 13, 13, 1]]
    # thresholds of m = 200: 50 / 100 / 150 enclose the object only (9 < 0.25 * 121): level lowered to 40
    labels, info = soft_labels(u, box, 2, alpha=0.25, rule="enclosed")
    assert tuple(info[0]) == pytest.approx((40 / 200, 1, 121, 49, 0))
    # band 0.75: contours >= 30 bound the uncertain region: the 35-ring's 32 extra pixels
    banded, info = soft_labels(u, box, 2, alpha=0.25, rule="enclosed", band=0.75)
    assert tuple(info[0]) == pytest.approx((40 / 200, 1, 121, 49, 32))
    np.testing.assert_array_equal(banded == 0, r == 3)
    np.testing.assert_array_equal(banded == 0b10, (r == 1) | (r == 2))


def test_small_boxes_get_no_background_through_the_labels_config():
    # the L-shaped object (57 px) in its 121-px box: enclosed rule, confident object, 64 px background
    r, obj, u = l_shape_scene()
    box = np.array([[2, 2, 13, 13, 1]])
    from pipeline.labels.strategies import box_soft_labels
    for small, background in ((0, 64), (121, 64), (122, 0)):
        s = LabelsConfig(span=0.0, band=None, small_box=small).box_strategy("ucm")
        assert s.small_box == small
        labels, info = box_soft_labels(box, 2, s, (15, 15), {"ucm2": u})
        np.testing.assert_array_equal(labels == 0b10, obj)
        inside = labels[2:13, 2:13]
        assert (inside == 1).sum() == background and (inside == 0).sum() == 64 - background
        assert tuple(info[0]) == (0.75, 0, 121, 57, 64 - background)
    # hard: uncertain pixels take the box class, so a small box is labelled whole
    s = LabelsConfig(span=0.0, band=None, small_box=122).box_strategy("hard")
    labels, _ = box_soft_labels(box, 2, s, (15, 15), {"ucm2": u})
    assert np.all(labels[2:13, 2:13] == 0b10)
    with pytest.raises(InputError, match="labels.small_box"):
        config_from_dict({"labels": {"small_box": -1}})


def test_second_reading_through_the_labels_config():
    # object 49 px (contour 200) inside an 81-px halo (contour 40), box 121 px
    r = np.zeros((15, 15), int)
    r[3:12, 3:12] = 2
    r[4:11, 4:11] = 1
    strength = {(0, 2): 40, (1, 2): 200}
    u = ucm_from_regions(r, lambda a, b: strength.get((min(a, b), max(a, b)), 0))
    box = np.array([[2, 2, 13, 13, 1]])
    from pipeline.labels.strategies import box_soft_labels
    # alpha 0.5 (60.5 px): 150 / 100 / 50 enclose the object only, the level is lowered to the halo's 40
    s = LabelsConfig(span=0.0, band=None, clear=0.0, floor=None, small_box=0.0, alpha=0.5,
                     low_alpha=0.0).box_strategy("ucm")
    assert s.low_alpha == 0.0
    _, info = box_soft_labels(box, 2, s, (15, 15), {"ucm2": u})
    assert tuple(info[0]) == pytest.approx((40 / 200, 1, 121, 81, 0))
    # low_alpha 0.25: the object at 3/4 (150); 40 < 0.7 x 150 and it spans 7/11 >= 0.6 of the box: the object
    s = LabelsConfig(span=0.0, band=None, clear=0.0, floor=None, small_box=0.0, alpha=0.5, low_alpha=0.25, low_span=0.6, low_max=0).box_strategy("ucm")
    assert (s.low_alpha, s.low_ratio, s.low_span, s.low_max) == (0.25, 0.7, 0.6, 0)
    labels, info = box_soft_labels(box, 2, s, (15, 15), {"ucm2": u})
    assert tuple(info[0]) == (0.75, 0, 121, 49, 0)
    np.testing.assert_array_equal(labels[2:13, 2:13] == 0b10, r[2:13, 2:13] == 1)
    assert (labels[2:13, 2:13] == 1).sum() == 121 - 49
    # the defaults: low_span 0.9 (7/11 is not enough) -> the alpha region again
    s = LabelsConfig(span=0.0, band=None, clear=0.0, floor=None, small_box=0.0, alpha=0.5, low_alpha=0.25).box_strategy("ucm")
    assert box_soft_labels(box, 2, s, (15, 15), {"ucm2": u})[1][0, 3] == 81
    with pytest.raises(InputError, match="labels.low_alpha"):
        config_from_dict({"labels": {"low_alpha": 1.5}})


# ----------------------------------------------------------------------------- external

def test_external_class_map():
    m = np.zeros((10, 12), np.uint8)
    m[2:6, 3:7] = 2       # the object, class 2
    m[2:6, 7] = 255       # void column next to it
    m[7:9, 0:4] = 1       # a class-1 object elsewhere, outside the box
    ext = ExternalMasks.class_map(m)
    labels, info = soft_labels(None, [[2, 1, 9, 7, 2]], 3, "external", external=ext)
    expect = np.ones((10, 12), np.uint8)
    expect[2:6, 3:7] = 0b100
    expect[2:6, 7] = 0  # void inside the box -> ignored
    np.testing.assert_array_equal(labels, expect)
    assert tuple(info[0, 1:]) == (0, 42, 16, 4)


def test_external_instance_map_takes_the_biggest_instance_in_the_box():
    m = np.zeros((10, 10), np.uint8)
    m[1:4, 1:4] = 5   # 9 px
    m[4:9, 4:9] = 7   # 25 px
    labels, info = soft_labels(None, [[0, 0, 10, 10, 1]], 2, "external", external=ExternalMasks.instance_map(m))
    np.testing.assert_array_equal(labels == 0b10, m == 7)
    assert info[0, 3] == 25


def test_external_proposals_best_box_iou_or_box_index_and_fallback():
    masks = np.zeros((3, 10, 10), bool)
    masks[0, 0:3, 0:3] = True   # matches box A [0:4, 0:4] best
    masks[1, 5:10, 5:10] = True  # matches box B [5:10, 5:10] exactly
    masks[2, 0:10, 0:10] = True  # a big one that fits neither box as well
    boxes = [[0, 0, 4, 4, 1], [5, 5, 10, 10, 2]]
    labels, info = soft_labels(None, boxes, 3, "external", external=ExternalMasks.proposals(masks))
    assert np.all(labels[0:3, 0:3] == 0b10) and labels[3, 3] == 1
    assert np.all(labels[5:10, 5:10] == 0b100)
    assert tuple(info[:, 3]) == (9, 25) and tuple(info[:, 1]) == (0, 0)
    # box_index: box 0 takes mask 2 (clipped to the box), box 1 has no mask -> whole box, a fallback
    labels, info = soft_labels(None, boxes, 3, "external", external=ExternalMasks.proposals(masks, [2, 0, 0]))
    assert tuple(info[:, 1]) == (0, 1) and tuple(info[:, 3]) == (16, 25)
    assert np.all(labels[0:4, 0:4] & 0b10) and np.all(labels[5:10, 5:10] == 0b100)


def test_external_files_and_their_errors(tmp_path):
    m = np.zeros((6, 8), np.uint8)
    m[1:4, 2:5] = 1
    Image.fromarray(m, mode="L").save(tmp_path / "a.png")
    ext = load_external_masks(tmp_path, "a", 6, 8)
    assert ext.kind == "class"
    assert load_external_masks(tmp_path, "a", 6, 8, "instance").kind == "instance"
    np.savez(tmp_path / "b.npz", masks=m[None] > 0, box_index=np.array([0]))
    assert load_external_masks(tmp_path, "b", 6, 8, num_boxes=1).kind == "proposals"
    with pytest.raises(InputError, match="not found") as e:
        load_external_masks(tmp_path, "missing", 6, 8)
    assert "missing.png" in str(e.value)
    with pytest.raises(InputError, match="8x6") as e:
        load_external_masks(tmp_path, "a", 7, 8)
    assert str(tmp_path / "a.png") in str(e.value)
    np.savez(tmp_path / "c.npz", other=np.zeros(3))
    with pytest.raises(InputError, match="no array 'masks'"):
        load_external_masks(tmp_path, "c", 6, 8)
    (tmp_path / "d.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="unreadable"):
        load_external_masks(tmp_path, "d", 6, 8)
    with pytest.raises(InputError, match="box_index"):
        load_external_masks(tmp_path, "b", 6, 8, num_boxes=0)
    with pytest.raises(InputError, match="external_dir not found"):
        load_external_masks(tmp_path / "nope", "a", 6, 8)


# ----------------------------------------------------------------------------- the stages

@pytest.fixture
def staged(project):
    """The tiny project with source, split and ucm run."""
    runner = CliRunner()
    for stage in ("source", "split", "ucm"):
        assert runner.invoke(main, [stage, "--no-progress"] if stage != "split" else [stage]).exit_code == 0
    return project


def set_labels(**kw):
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["labels"].update(kw)
    Path("params.yaml").write_text(yaml.safe_dump(params))


def test_labels_and_quality_stages_run_every_strategy(staged):
    runner = CliRunner()
    strategies = ["ucm", "raw_box", "grabcut", "hard", "ucm_t0.5", "ucm_paper_a0.3"]
    args = ["quality", "--no-progress"] + [a for s in strategies for a in ("--strategy", s)]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    q = json.loads(Path("metrics/label_quality.json").read_text())
    assert set(strategies) <= set(q)
    assert q["hard"]["box_ignored"] == 0 and q["raw_box"]["box_ignored"] == 0
    for strategy, code in (("grabcut", 2), ("hard", 3), ("ucm_t0.5", 0)):
        set_labels(strategy=strategy)
        result = runner.invoke(main, ["labels", "--no-progress"])
        assert result.exit_code == 0, result.output
        r = ShardReader("data/labels", split="train")
        box_ids = r.ids_of_kind("box")
        assert box_ids and all((r.boxes(i)["strategy"] == code).all() for i in box_ids)
        r.close()


def test_external_strategy_through_the_labels_stage(staged):
    images = {r["id"]: r for r in json.loads(Path("data/source/images.json").read_text())["items"]}
    split = json.loads(Path("data/split.json").read_text())["assignment"]
    missing = sorted(i for i, k in split.items() if k == "box")[0]
    ext = Path("ext")
    ext.mkdir()

    def write(i):
        Image.fromarray(np.zeros((images[i]["height"], images[i]["width"]), np.uint8), mode="L").save(ext / f"{i}.png")

    for i in images:
        if i != missing:
            write(i)
    set_labels(strategy="external", external_dir=str(ext))
    result = CliRunner().invoke(main, ["labels", "--no-progress"])
    assert result.exit_code == 2, result.output
    assert str(ext / f"{missing}.png") in result.output and "not found" in result.output
    assert not Path("data/labels").exists()
    write(missing)
    result = CliRunner().invoke(main, ["labels", "--no-progress"])
    assert result.exit_code == 0, result.output
    set_labels(external_dir=None)
    result = CliRunner().invoke(main, ["labels", "--no-progress"])
    assert result.exit_code == 2 and "external_dir" in result.output

"""The coverage-fair label score of ``mixseg quality`` (pipeline/labels/quality.py): every
ignored pixel inside a box counts as that box's class (the smallest box's when several hold
it), so leaving pixels out cannot pass for accuracy.  Expectations computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.core.config import LabelsConfig
from pipeline.core.index import MaskRef
from pipeline.labels import quality
from pipeline.labels.quality import box_owner, fill_ignored, score_strategies

BG, A, B = 1, 2, 4  # bitsets of background, class 1, class 2
IGN = 0


def test_box_owner_smallest_box_wins_and_ties_go_to_the_first():
    boxes = np.array([[0, 0, 4, 4, 1],    # 16 px, class 1
                      [1, 1, 3, 3, 2],    # 4 px inside it, class 2
                      [3, 3, 5, 5, 1],    # 4 px, class 1 ...
                      [3, 3, 5, 5, 2]])   # ... and the same box as class 2: the first listed wins
    owner = box_owner(boxes, (5, 6))
    assert owner.tolist() == [[1, 1, 1, 1, 0, 0],
                              [1, 2, 2, 1, 0, 0],
                              [1, 2, 2, 1, 0, 0],
                              [1, 1, 1, 1, 1, 0],
                              [0, 0, 0, 1, 1, 0]]
    # the order of the boxes does not matter, only their size (and, on a tie, their order)
    assert box_owner(boxes[[1, 0, 2, 3]], (5, 6)).tolist() == owner.tolist()
    assert box_owner(boxes[[3, 2, 0, 1]], (5, 6))[4, 4] == 2
    assert box_owner(np.zeros((0, 5), np.int64), (2, 2)).tolist() == [[0, 0], [0, 0]]


def test_fill_ignored_sets_only_ignored_pixels_inside_boxes():
    labels = np.array([[IGN, A | B, IGN],
                       [BG, IGN, IGN]], np.uint8)
    owner = np.array([[1, 1, 0],
                      [1, 2, 0]])
    out = fill_ignored(labels, owner)
    assert out.tolist() == [[A, A | B, IGN],   # soft pixel kept, ignored outside every box kept
                            [BG, B, IGN]]
    assert out.dtype == labels.dtype and labels[0, 0] == IGN  # a copy
    wide = np.array([[IGN]], np.uint64)  # 64-class bitsets
    assert fill_ignored(wide, np.array([[63]]))[0, 0] == np.uint64(1) << np.uint64(63)


def _score(monkeypatch, truth, boxes, labels, classes=("background", "a", "b")):
    """score_strategies on one image whose labels are ``labels``, whatever the strategy."""
    h, w = truth.shape
    monkeypatch.setattr(quality, "read_mask", lambda ref: truth)
    fake = lambda b, n, s, shape, inputs, *rest, **kw: (labels, np.zeros((len(b), 5)))  # noqa: E731
    # score_strategies labels through stage.box_labels where it exists (any class count), else box_soft_labels
    monkeypatch.setattr(quality, "box_labels" if hasattr(quality, "box_labels") else "box_soft_labels", fake)
    image = {"id": "x", "path": "x.png", "height": h, "width": w}
    ann = {"mask": MaskRef("x.png"), "boxes": boxes}
    s = LabelsConfig().box_strategy("raw_box")  # needs nothing: no UCM is read
    return score_strategies([(image, ann)], list(classes), [s], {}, progress=False)["raw_box"]


def test_fair_score_counts_ignored_box_pixels_as_the_box_class(monkeypatch):
    truth = np.array([[1, 1, 0, 0],
                      [1, 1, 0, 255]], np.uint8)
    boxes = [[0, 0, 3, 2, 1]]  # 6 px: columns 0-2
    labels = np.array([[A, A, IGN, BG],
                       [IGN, A, IGN, BG]], np.uint8)
    r = _score(monkeypatch, truth, boxes, labels)
    # labelled pixels only: 3 x (1 -> 1), 1 x (0 -> 0) (the void one is out): both IoUs are 1
    assert r["miou"] == 100.0 and r["per_class_iou"] == {"background": 100.0, "a": 100.0, "b": None}
    assert r["fg_precision"] == 100.0 and r["fg_recall"] == 75.0  # 3 of the 4 true pixels of a
    assert r["box_ignored"] == 50.0 and r["box_labelled"] == 50.0  # 3 of 6 box pixels
    # fair: the three ignored pixels become a: (1 -> a) once, (0 -> a) twice
    # conf = [[1, 2], [0, 4]]: IoU bg = 1 / (3 + 1 - 1), IoU a = 4 / (4 + 6 - 4)
    assert r["miou_fair"] == pytest.approx(100 * (1 / 3 + 4 / 6) / 2, abs=0.01)
    assert r["per_class_iou_fair"]["background"] == pytest.approx(100 / 3, abs=0.01)
    assert r["per_class_iou_fair"]["a"] == pytest.approx(400 / 6, abs=0.01)
    assert r["fg_precision_fair"] == pytest.approx(400 / 6, abs=0.01) and r["fg_recall_fair"] == 100.0


def test_fair_score_uses_the_smallest_box_and_keeps_soft_pixels_soft(monkeypatch):
    truth = np.array([[1, 1, 1, 1],
                      [1, 2, 2, 1]], np.uint8)
    boxes = [[0, 0, 4, 2, 1],   # 8 px, class a
             [1, 1, 3, 2, 2]]   # 2 px inside it, class b
    labels = np.array([[A, A | B, A, A],
                       [A, IGN, IGN, A]], np.uint8)
    r = _score(monkeypatch, truth, boxes, labels)
    # labelled: 5 x (a -> a), 1 soft pixel (a -> a 1/2, a -> b 1/2)
    # IoU a = 5.5 / 6 (its row sums to 6, its column to 5.5); IoU b = 0 / 0.5
    assert r["miou"] == pytest.approx(100 * (5.5 / 6 + 0) / 2, abs=0.01)
    # fair: both ignored pixels are in the small box (class b), and both are truly b: IoU b = 2 / 2.5
    assert r["per_class_iou_fair"]["b"] == pytest.approx(80.0)
    assert r["per_class_iou_fair"]["a"] == pytest.approx(100 * 5.5 / 6, abs=0.01)
    assert r["box_ignored"] == 25.0  # 2 of the 8 pixels of the union of the boxes
    assert r["fg_recall"] == 75.0 and r["fg_recall_fair"] == 100.0


def test_nothing_ignored_scores_the_same_on_both(monkeypatch):
    truth = np.array([[0, 1, 1], [0, 1, 0]], np.uint8)
    labels = np.array([[A, A, A], [A, A, BG]], np.uint8)
    r = _score(monkeypatch, truth, [[0, 0, 3, 2, 1]], labels)
    assert r["miou_fair"] == r["miou"] and r["per_class_iou_fair"] == r["per_class_iou"]
    assert (r["fg_precision_fair"], r["fg_recall_fair"]) == (r["fg_precision"], r["fg_recall"])
    assert r["box_ignored"] == 0.0


def _contour(ucm2, y0, x0, y1, x1, v):
    """A closed contour of strength ``v`` around the pixels [y0, y1) x [x0, x1) of a ucm2."""
    ucm2[2 * y0 + 1:2 * y1, 2 * x0] = ucm2[2 * y0 + 1:2 * y1, 2 * x1] = v
    ucm2[2 * y0, 2 * x0 + 1:2 * x1] = ucm2[2 * y1, 2 * x0 + 1:2 * x1] = v


def test_real_strategies_report_both_scores(monkeypatch):
    """Through the real box strategies: a strong contour around the object (6 x 8 px) and a
    weak one a pixel outside it, in a 12 x 10 box.  The ucm rule (span off) takes the object
    as confident and ignores the 32-px ring: perfect on the pixels it labels, but the fair
    score counts the ring as the box's class.  raw_box ignores nothing: fair = plain."""
    h, w = 12, 16
    truth = np.zeros((h, w), np.uint8)
    truth[3:9, 4:12] = 1
    ucm2 = np.zeros((2 * h + 1, 2 * w + 1), np.uint8)
    _contour(ucm2, 3, 4, 9, 12, 200)
    _contour(ucm2, 2, 3, 10, 13, 120)
    image = {"id": "x", "path": "x.png", "height": h, "width": w}
    ann = {"mask": MaskRef("x.png"), "boxes": [[2, 1, 14, 11, 1]]}
    cfg = LabelsConfig(span=0.0, alpha=0.25, clear=0.0, floor=None, small_box=0.0, low_alpha=0.0)  # the base rule
    monkeypatch.setattr(quality, "read_mask", lambda ref: truth)
    res = score_strategies([(image, ann)], ["background", "a"], [cfg.box_strategy("raw_box"),
                           cfg.box_strategy("ucm")], {"x": ucm2}, progress=False)
    raw, ucm = res["raw_box"], res["ucm"]
    assert ucm["miou"] == 100.0 and ucm["box_ignored"] == pytest.approx(100 * 32 / 120, abs=0.01)
    assert ucm["fg_precision"] == 100.0 and ucm["fg_recall"] == 100.0
    # fair: a = 48 / (48 + 32), background = (192 - 80) / (192 - 48)
    assert ucm["per_class_iou_fair"] == {"background": pytest.approx(100 * 112 / 144, abs=0.01),
                                         "a": pytest.approx(60.0)}
    assert ucm["miou_fair"] == pytest.approx(50 * (112 / 144 + 0.6), abs=0.01)
    assert ucm["fg_precision_fair"] == 60.0 and ucm["fg_recall_fair"] == 100.0
    # raw_box: the whole 120-px box is a: a = 48 / 120, background = 72 / 144
    assert raw["box_ignored"] == 0 and raw["miou_fair"] == raw["miou"] == pytest.approx(50 * (0.4 + 0.5))


# --------------------------------------------------------------------------- what the fair score led to
# The default ucm labels' box-confidence knobs (pipeline/labels/ucm_rules.py: clear, prior, prior_band,
# floor), chosen with the coverage-fair score on real photos; by hand on tiny UCMs.

from pipeline.labels.ucm_rules import ucm_box_masks  # noqa: E402

T = (0.25, 0.5, 0.75)


def _masks(ucm2, box, rule="enclosed", **knobs):
    conf, unc, info = ucm_box_masks(ucm2, np.array([box], np.int64), np.uint8, T, 0.25, rule, 0.1, 0.0, None,
                                    **knobs)
    x0, y0, x1, y1 = box[:4]
    return conf[y0:y1, x0:x1] != 0, (unc[y0:y1, x0:x1] != 0) & (conf[y0:y1, x0:x1] == 0), tuple(info[0])


def test_a_box_without_contours_gets_the_box_prior():
    ucm2 = np.zeros((2 * 10 + 1, 2 * 12 + 1), np.uint8)
    # 4 x 4 box, no contour (e = 0): score = r, the distance to the nearest side over half the size:
    # 0.25 on the outer ring, 0.75 inside.  >= 0.35 + 0.05 confident, 0.30..0.40 uncertain
    conf, unc, info = _masks(ucm2, (3, 2, 7, 6, 1), clear=0.235)
    assert conf.tolist() == [[False] * 4, [False, True, True, False], [False, True, True, False], [False] * 4]
    assert not unc.any() and info == (0.0, 1.0, 16.0, 4.0, 0.0)
    # 5 x 5: rings at r = 0.2, 0.6, 1.0; a prior of 0.55 +- 0.1 leaves the middle ring uncertain
    conf, unc, info = _masks(ucm2, (3, 2, 8, 7, 1), clear=0.235, prior=0.55, prior_band=0.1)
    assert conf.sum() == 1 and conf[2, 2] and unc.sum() == 8 and info[3:] == (1.0, 8.0)
    # clear off (the previous rule): no boundary anywhere near the box, all of it
    conf, unc, info = _masks(ucm2, (3, 2, 7, 6, 1))
    assert conf.all() and info == (0.75, 0.0, 16.0, 16.0, 0.0)


def test_a_weak_confident_contour_hands_the_box_to_the_prior():
    h, w = 12, 16
    ucm2 = np.zeros((2 * h + 1, 2 * w + 1), np.uint8)
    _contour(ucm2, 3, 4, 9, 12, 40)  # the object, enclosed by a contour of 40: at level 0.75 x 40 = 30 < 0.235 x 255
    box = (2, 1, 14, 11, 1)
    conf, unc, info = _masks(ucm2, box)  # clear off: the contour is the object whatever its strength
    assert conf.sum() == 48 and info[:2] == (0.75, 0.0)
    conf, unc, info = _masks(ucm2, box, clear=0.235)
    assert info[1] == 1.0  # counted as a fallback
    # the object is enclosed at full strength (e / m = 1): confident; outside it only the centre distance
    # counts, at most 2.5 / 5 px = 0.5 >= 0.4 in the ring around it, and the outer ring is background
    assert conf[2:8, 2:10].all() and not conf[0].any() and not conf[:, 0].any()
    conf2, _, info2 = _masks(ucm2, box, clear=30 / 255 - 1e-6)  # strong enough now
    assert conf2.sum() == 48 and info2[1] == 0.0


def test_floor_leaves_what_only_a_much_weaker_contour_encloses_to_the_background():
    h, w = 12, 16
    ucm2 = np.zeros((2 * h + 1, 2 * w + 1), np.uint8)
    _contour(ucm2, 3, 4, 9, 12, 200)   # object: 48 px
    _contour(ucm2, 2, 3, 10, 13, 80)   # a weaker halo around it: 32 px more
    box = (2, 1, 14, 11, 1)
    conf, unc, info = _masks(ucm2, box)
    assert conf.sum() == 48 and unc.sum() == 32  # the weakest threshold (50) encloses the halo
    # the confident level is t = 3/4 of 200 = 150; the halo's 80 < 0.65 x 150: background
    conf, unc, info = _masks(ucm2, box, floor=0.65)
    assert conf.sum() == 48 and unc.sum() == 0 and info[3:] == (48.0, 0.0)
    conf, unc, info = _masks(ucm2, box, floor=0.5)  # 80 >= 75: still uncertain
    assert unc.sum() == 32


def test_box_confidence_knobs_leave_the_paper_rule_alone():
    h, w = 12, 16
    ucm2 = np.zeros((2 * h + 1, 2 * w + 1), np.uint8)
    _contour(ucm2, 3, 4, 9, 12, 40)
    _contour(ucm2, 2, 3, 10, 13, 20)
    box = (2, 1, 14, 11, 1)
    plain = _masks(ucm2, box, rule="paper")
    knobs = _masks(ucm2, box, rule="paper", clear=0.9, prior=0.1, prior_band=0.3, floor=0.99)
    for a, b in zip(plain[:2], knobs[:2]):
        np.testing.assert_array_equal(a, b)
    assert plain[2] == knobs[2]


def test_small_box_leaves_nothing_to_the_background():
    h, w = 12, 16
    ucm2 = np.zeros((2 * h + 1, 2 * w + 1), np.uint8)
    _contour(ucm2, 3, 4, 9, 12, 200)  # object: 6 x 8 = 48 px in a 10 x 12 = 120-px box
    box = (2, 1, 14, 11, 1)
    conf, unc, info = _masks(ucm2, box)
    assert conf.sum() == 48 and unc.sum() == 0 and info == (0.75, 0.0, 120.0, 48.0, 0.0)  # 72 px background
    # under ``small_box`` px the 72 px the rule leaves out are ignored instead; the confident region is the same
    conf2, unc2, info2 = _masks(ucm2, box, small_box=121)
    np.testing.assert_array_equal(conf2, conf)
    assert (conf2 | unc2).all() and unc2.sum() == 72 and info2 == (0.75, 0.0, 120.0, 48.0, 72.0)
    # a box of exactly ``small_box`` px is not small
    assert _masks(ucm2, box, small_box=120)[2] == info
    # with the box prior (clear): 4 x 4 box without contours, 4 px confident, the other 12 uncertain
    empty = np.zeros_like(ucm2)
    conf, unc, info = _masks(empty, (3, 2, 7, 6, 1), clear=0.235, small_box=17)
    assert conf.sum() == 4 and unc.sum() == 12 and info == (0.0, 1.0, 16.0, 4.0, 12.0)


def test_small_leaves_the_paper_rule_alone():
    h, w = 12, 16
    ucm2 = np.zeros((2 * h + 1, 2 * w + 1), np.uint8)
    _contour(ucm2, 3, 4, 9, 12, 200)
    box = (2, 1, 14, 11, 1)
    plain = _masks(ucm2, box, rule="paper")
    knobs = _masks(ucm2, box, rule="paper", small_box=10 ** 6)
    for a, b in zip(plain[:2], knobs[:2]):
        np.testing.assert_array_equal(a, b)
    assert plain[2] == knobs[2] and plain[0].sum() == 48 and not plain[1].any()


def _masks_a(ucm2, box, alpha, rule="enclosed", band=None, **knobs):
    conf, unc, info = ucm_box_masks(ucm2, np.array([box], np.int64), np.uint8, T, alpha, rule, 0.1, 0.0, band,
                                    **knobs)
    x0, y0, x1, y1 = box[:4]
    return conf[y0:y1, x0:x1] != 0, (unc[y0:y1, x0:x1] != 0) & (conf[y0:y1, x0:x1] == 0), tuple(info[0])


def test_second_reading_takes_the_strongly_enclosed_smaller_region():
    h, w = 12, 16
    ucm2 = np.zeros((2 * h + 1, 2 * w + 1), np.uint8)
    _contour(ucm2, 3, 4, 9, 12, 200)   # object: 48 px (40 % of the box), m = 200
    _contour(ucm2, 2, 3, 10, 13, 40)   # a weak halo around it: 80 px in all
    box = (2, 1, 14, 11, 1)            # 120 px
    # alpha 0.5 (60 px): no threshold (150, 100, 50) encloses 60 px; lowered to the halo's 40: 80 px
    conf, unc, info = _masks_a(ucm2, box, 0.5)
    assert conf.sum() == 80 and not unc.any() and info == (0.2, 1.0, 120.0, 80.0, 0.0)
    # low_alpha 0.25 (30 px): the object at t = 3/4 (150); the halo's 40 < 0.7 x 150 = 105: the object wins
    knobs = dict(low_alpha=0.25, low_ratio=0.7, low_span=0.0, low_max=0.0)
    conf, unc, info = _masks_a(ucm2, box, 0.5, **knobs)
    assert conf.sum() == 48 and conf[2:8, 2:10].all() and not unc.any() and info == (0.75, 0.0, 120.0, 48.0, 0.0)
    # a ratio of 0.25: 40 >= 0.25 x 150 = 37.5, the halo's contour is not much weaker: the alpha region stays
    assert _masks_a(ucm2, box, 0.5, **{**knobs, "low_ratio": 0.25})[2] == (0.2, 1.0, 120.0, 80.0, 0.0)
    # band 0.2 would leave what contours >= 30 enclose (the halo, 32 px) uncertain; the second reading cuts the
    # uncertain region to contours >= 0.7 x 150: the halo is background
    conf, unc, info = _masks_a(ucm2, box, 0.5, band=0.2, **knobs)
    assert conf.sum() == 48 and not unc.any() and info[3:] == (48.0, 0.0)
    assert _masks_a(ucm2, box, 0.25, band=0.2)[1].sum() == 32  # the plain rule at alpha 0.25 keeps it uncertain
    # low_span: the object reaches across 6 of 10 rows and 8 of 12 columns; 0.6 is enough, 0.7 is not
    assert _masks_a(ucm2, box, 0.5, **{**knobs, "low_span": 0.6})[2][3] == 48.0
    assert _masks_a(ucm2, box, 0.5, **{**knobs, "low_span": 0.7})[2][3] == 80.0
    # low_max: only boxes under that many px
    assert _masks_a(ucm2, box, 0.5, **{**knobs, "low_max": 121})[2][3] == 48.0
    assert _masks_a(ucm2, box, 0.5, **{**knobs, "low_max": 120})[2][3] == 80.0
    # low_alpha >= alpha: off
    assert _masks_a(ucm2, box, 0.5, **{**knobs, "low_alpha": 0.5})[2][3] == 80.0


def test_second_reading_leaves_the_paper_rule_alone():
    h, w = 12, 16
    ucm2 = np.zeros((2 * h + 1, 2 * w + 1), np.uint8)
    _contour(ucm2, 3, 4, 9, 12, 200)
    _contour(ucm2, 2, 3, 10, 13, 40)
    box = (2, 1, 14, 11, 1)
    plain = _masks_a(ucm2, box, 0.5, rule="paper")
    knobs = _masks_a(ucm2, box, 0.5, rule="paper", low_alpha=0.25, low_ratio=1.0, low_span=0.0, low_max=0.0)
    for a, b in zip(plain[:2], knobs[:2]):
        np.testing.assert_array_equal(a, b)
    assert plain[2] == knobs[2]

"""The paper's box -> soft label rule, on UCMs built by hand."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import soft_labels
from pipeline.labels.ucm_rules import box_scale_masks
from pipeline.core.shards import bit_count, decode_bitsets


def ucm_from_regions(regions: np.ndarray, strength) -> np.ndarray:
    """ucm2 (uint8) whose edge between differently labelled 4-neighbours is
    ``strength(a, b)`` (vertices: max of incident edges)."""
    h, w = regions.shape
    u = np.zeros((2 * h + 1, 2 * w + 1), np.uint8)
    for y in range(h):
        for x in range(w - 1):
            a, b = regions[y, x], regions[y, x + 1]
            if a != b:
                u[2 * y + 1, 2 * x + 2] = strength(a, b)
    for y in range(h - 1):
        for x in range(w):
            a, b = regions[y, x], regions[y + 1, x]
            if a != b:
                u[2 * y + 2, 2 * x + 1] = strength(a, b)
    return u


def nested_squares(levels):
    """11x11 regions: 0 outermost ring ... len(levels) the core; ``levels[k]`` is
    the strength between ring k and ring k+1 (outer to inner)."""
    r = np.zeros((11, 11), int)  # ring k spans [k, 11 - k)
    for k in range(1, len(levels) + 1):
        r[k:11 - k, k:11 - k] = k
    return r, ucm_from_regions(r, lambda a, b: levels[min(a, b)])


def test_alpha_rule_picks_the_smallest_threshold_that_is_large_enough():
    # rings: [0:11] outer, [1:10], [2:9], [3:8], [4:7] core (9 px)
    # core|ring3 = 100 (0.42 of max 240): the core alone (9 px) is < 0.3*121 at t=1/4,
    # at t=1/2 (120) the core joins ring3 and ring2? ring3|ring2 = 130 > 120, so F = [3:8] = 25 px < 36.3.
    # at t=3/4 (180) ring2|ring1 = 170 < 180 joins: F = [1:10] = 81 px -> confident, t = 3/4.
    regions, u = nested_squares([240, 170, 130, 100])
    labels, info = soft_labels(u, [[0, 0, 11, 11, 3]], num_classes=5)
    t, fallback, area, conf, unc = info[0]
    assert (t, fallback, area, conf, unc) == (0.75, 0, 121, 81, 0)
    assert np.all(labels[1:10, 1:10] == 1 << 3)
    ring0 = regions == 0
    assert np.all(labels[ring0] == 1)  # rest of the box: background


def test_alpha_rule_first_threshold_and_uncertain_region_is_ignored():
    # core [2:9] (49 px >= 36.3) is cut off by 150 > 0.25*240 -> confident at t = 1/4;
    # at t = 3/4 (180) it joins ring [1:10] (boundary 150): uncertain = 81 - 49 = 32 px.
    r, u = nested_squares([240, 150])  # ring [1:10], core [2:9]; boundaries 240 (outer), 150
    labels, info = soft_labels(u, [[0, 0, 11, 11, 2]], num_classes=3)
    assert tuple(info[0]) == (0.25, 0, 121, 49, 32)
    assert np.all(labels[2:9, 2:9] == 0b100)
    ring = (r == 1)
    assert np.all(labels[ring] == 0)  # uncertain -> no bit -> ignored
    assert decode_bitsets(labels[ring], 3).any() == False  # noqa: E712
    assert np.all(labels[r == 0] == 1)


def test_fallback_grows_weakest_boundary_first():
    # core 9 px, every boundary above 3/4 of the max (240): no threshold reaches alpha.
    # Growing: +ring3 at 200 -> 25 px, +ring2 at 220 -> 49 px >= 36.3: stop before the 240 ring.
    regions, u = nested_squares([240, 240, 220, 200])
    labels, info = soft_labels(u, [[0, 0, 11, 11, 1]], num_classes=2)
    t, fallback, area, conf, unc = info[0]
    assert fallback == 1 and area == 121 and conf == 49 and unc == 0
    assert t == pytest.approx(220 / 240)
    assert np.all(labels[2:9, 2:9] == 0b10)
    assert np.all(labels[regions <= 1] == 0b01)


def test_enclosed_holes_are_filled_but_open_ones_are_not():
    r = np.zeros((11, 11), int)
    r[2:4, 2:4] = 1          # a hole inside the centre's region
    r[0:3, 8:11] = 2         # a pocket touching the box border: not enclosed
    u = ucm_from_regions(r, lambda a, b: 255)
    labels, info = soft_labels(u, [[0, 0, 11, 11, 1]], num_classes=2)
    assert info[0][3] == 121 - 9  # everything but the open pocket
    assert np.all(labels[2:4, 2:4] == 0b10)
    assert np.all(labels[0:3, 8:11] == 0b01)


def test_box_without_inner_boundary_is_all_confident():
    u = np.zeros((2 * 8 + 1, 2 * 9 + 1), np.uint8)
    u[:, 7] = 255  # a boundary outside the box only
    labels, info = soft_labels(u, [[4, 1, 9, 6, 2]], num_classes=3)
    assert np.all(labels[1:6, 4:9] == 0b100)
    assert labels.sum() - labels[1:6, 4:9].sum() == (8 * 9 - 25)  # background elsewhere
    assert info[0][3] == 25


def test_two_overlapping_boxes_of_different_classes_give_a_two_bit_pixel():
    for strategy in ("raw_box", "ucm"):
        u = np.zeros((2 * 10 + 1, 2 * 10 + 1), np.uint8)
        labels, _ = soft_labels(u, [[0, 0, 6, 6, 1], [3, 3, 9, 9, 4]], num_classes=6, strategy=strategy)
        assert labels[4, 4] == (1 << 1) | (1 << 4)
        assert bit_count(labels)[4, 4] == 2
        assert labels[1, 1] == 1 << 1 and labels[8, 8] == 1 << 4 and labels[9, 9] == 1


def test_confident_beats_uncertain_across_boxes():
    r, u = nested_squares([240, 150])  # ring [1:10], core [2:9]; boundaries 240 (outer), 150
    # box A leaves ring 1 uncertain; box B (class 1) over the left strip labels part of that ring
    labels, _ = soft_labels(u, [[0, 0, 11, 11, 2]], num_classes=3)
    assert labels[1, 5] == 0
    labels_b, _ = soft_labels(u, [[0, 0, 11, 11, 2], [0, 0, 3, 11, 1]], num_classes=3)
    assert labels_b[5, 1] == 0b010  # confident class 1 wins over box A's uncertain ring
    # in B's crop ring 1 is 11 px (x=1, plus x=2 at y=1 and 9) >= 0.3*33: confident at t=1/4,
    # so the core column x=2 is only uncertain for B and keeps A's confident class
    assert labels_b[5, 2] == 0b100


def test_raw_box_strategy_needs_no_ucm():
    labels, info = soft_labels(None, [[2, 1, 5, 3, 7]], num_classes=8, strategy="raw_box", shape=(4, 6))
    expect = np.ones((4, 6), np.uint8)
    expect[1:3, 2:5] = 1 << 7
    np.testing.assert_array_equal(labels, expect)
    assert labels.dtype == np.uint8
    assert tuple(info[0]) == (1.0, 0, 6, 6, 0)


def test_bitset_dtype_follows_class_count():
    u = np.zeros((7, 7), np.uint8)
    for n, dt in ((8, np.uint8), (9, np.uint16), (21, np.uint32), (64, np.uint64)):
        labels, _ = soft_labels(u, [[0, 0, 3, 3, n - 1]], num_classes=n)
        assert labels.dtype == dt and labels[0, 0] == np.array(1, dt) << np.array(n - 1, dt)


def test_one_pixel_wide_boxes_and_boxes_on_the_border():
    u = np.full((2 * 5 + 1, 2 * 6 + 1), 200, np.uint8)
    labels, info = soft_labels(u, [[5, 0, 6, 5, 1], [0, 4, 6, 5, 2]], num_classes=3)
    assert info[:, 3].min() >= 1
    assert labels[2, 5] & 0b10 and labels[4, 0] & 0b100


def test_scale_masks_are_nested_and_match_the_chosen_label():
    regions, u = nested_squares([240, 170, 130, 100])
    masks = box_scale_masks(u, (0, 0, 11, 11))
    assert [m.sum() for m in masks] == [9, 25, 81]
    assert np.all(masks[0] <= masks[1]) and np.all(masks[1] <= masks[2])


def test_unknown_strategy_and_bad_thresholds_are_refused():
    u = np.zeros((5, 5), np.uint8)
    with pytest.raises(ValueError, match="strategy"):
        soft_labels(u, [[0, 0, 1, 1, 1]], 2, strategy="magic")
    with pytest.raises(ValueError, match="thresholds"):
        soft_labels(u, [[0, 0, 1, 1, 1]], 2, thresholds=[0.5, 0.25])


@settings(max_examples=60, deadline=None)
@given(st.integers(4, 14), st.integers(4, 14), st.integers(0, 2**31 - 1), st.floats(0.05, 1.0))
def test_random_ucms_and_boxes_keep_the_invariants(h, w, seed, alpha):
    rng = np.random.default_rng(seed)
    regions = rng.integers(0, 5, size=(h, w))
    strengths = rng.integers(1, 256, size=(5, 5))
    u = ucm_from_regions(regions, lambda a, b: strengths[min(a, b), max(a, b)])
    x0, x1 = sorted(rng.choice(w + 1, 2, replace=False))
    y0, y1 = sorted(rng.choice(h + 1, 2, replace=False))
    c = int(rng.integers(1, 4))
    labels, info = soft_labels(u, [[x0, y0, x1, y1, c]], num_classes=4, alpha=alpha)
    t, fallback, area, conf, unc = info[0]
    inside = labels[y0:y1, x0:x1]
    assert area == (x1 - x0) * (y1 - y0)
    assert conf >= alpha * area - 1e-9 and conf + unc <= area
    assert np.sum(inside == 1 << c) == conf and np.sum(inside == 0) == unc
    assert np.all(np.isin(inside, [0, 1, 1 << c]))
    outside = np.ones((h, w), bool)
    outside[y0:y1, x0:x1] = False
    assert np.all(labels[outside] == 1)
    masks = box_scale_masks(u, (x0, y0, x1, y1))
    assert np.all(masks[:-1] <= masks[1:])
    cy, cx = (y1 - y0 - 1) // 2, (x1 - x0 - 1) // 2
    assert masks[0][cy, cx]  # the centre is always in its own region


# ----------------------------------------------------------------------------- the enclosed rule

def l_shape_scene(object_edge=200, halo_edge=None):
    """15x15 image, box [2, 2, 13, 13]; the object is an L (left 3 columns and bottom 3 rows
    of the box), so the box centre (7, 7) lies on background connected to the outside.
    With ``halo_edge`` a weaker contour also encloses the object plus a 2-px band."""
    r = np.zeros((15, 15), int)
    obj = np.zeros((15, 15), bool)
    obj[2:13, 2:5] = True
    obj[10:13, 2:13] = True
    r[obj] = 1
    if halo_edge is not None:
        halo = np.zeros((15, 15), bool)
        halo[2:13, 2:7] = True
        halo[8:13, 2:13] = True
        r[halo & ~obj] = 2
    table = {(0, 1): object_edge, (1, 2): object_edge, (0, 2): halo_edge or 0}
    return r, obj, ucm_from_regions(r, lambda a, b: table[(min(a, b), max(a, b))])


def test_enclosed_rule_finds_an_object_whose_box_centre_is_background():
    r, obj, u = l_shape_scene()
    box = [[2, 2, 13, 13, 1]]
    labels, info = soft_labels(u, box, num_classes=2, rule="enclosed")
    assert tuple(info[0]) == (0.75, 0, 121, 57, 0)  # 33 + 24 object pixels
    np.testing.assert_array_equal(labels == 0b10, obj)
    # the paper's centre rule starts on the background and labels it as the object
    paper, _ = soft_labels(u, box, num_classes=2, rule="paper")
    assert paper[7, 7] == 0b10 and paper[11, 3] != 0b10


def test_enclosed_rule_strongest_contour_is_confident_weaker_one_uncertain():
    r, obj, u = l_shape_scene(object_edge=200, halo_edge=80)
    labels, info = soft_labels(u, [[2, 2, 13, 13, 1]], num_classes=2, rule="enclosed")
    halo = r == 2
    # t = 3/4 (150): only the object is cut off; t = 1/4 (50): the 80-contour encloses the halo too
    assert tuple(info[0]) == (0.75, 0, 121, 57, halo.sum())
    np.testing.assert_array_equal(labels == 0b10, obj)
    np.testing.assert_array_equal(labels == 0, halo)
    assert np.all(labels[(r == 0)] == 1)


def test_enclosed_rule_lowers_the_level_when_nothing_is_large_enough():
    r = np.zeros((15, 15), int)
    r[6:9, 6:9] = 1  # a 9-px object in a 121-px box: below alpha at every threshold
    u = ucm_from_regions(r, lambda a, b: 200)
    labels, info = soft_labels(u, [[2, 2, 13, 13, 1]], num_classes=2, rule="enclosed")
    t, fallback, area, conf, unc = info[0]
    assert fallback == 1 and conf == 121 and unc == 0 and t == 0
    assert np.all(labels[2:13, 2:13] == 0b10)


def test_enclosed_rule_without_an_outside_uses_the_paper_rule():
    regions, u = nested_squares([240, 170, 130, 100])  # the box is the whole 11x11 image
    a, ia = soft_labels(u, [[0, 0, 11, 11, 3]], num_classes=5, rule="enclosed")
    b, ib = soft_labels(u, [[0, 0, 11, 11, 3]], num_classes=5, rule="paper")
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ia, ib)


def test_enclosed_scale_masks_shrink_with_the_threshold():
    r, obj, u = l_shape_scene(object_edge=200, halo_edge=80)
    masks = box_scale_masks(u, (2, 2, 13, 13), rule="enclosed")
    assert np.all(masks[1:] <= masks[:-1])
    np.testing.assert_array_equal(masks[-1], obj[2:13, 2:13])
    np.testing.assert_array_equal(masks[0], (r > 0)[2:13, 2:13])


@settings(max_examples=60, deadline=None)
@given(st.integers(4, 14), st.integers(4, 14), st.integers(0, 2**31 - 1), st.floats(0.05, 1.0),
       st.floats(0.0, 0.5))
def test_enclosed_rule_random_invariants(h, w, seed, alpha, margin):
    rng = np.random.default_rng(seed)
    regions = rng.integers(0, 5, size=(h, w))
    strengths = rng.integers(1, 256, size=(5, 5))
    u = ucm_from_regions(regions, lambda a, b: strengths[min(a, b), max(a, b)])
    x0, x1 = sorted(rng.choice(w + 1, 2, replace=False))
    y0, y1 = sorted(rng.choice(h + 1, 2, replace=False))
    labels, info = soft_labels(u, [[x0, y0, x1, y1, 2]], num_classes=3, alpha=alpha, rule="enclosed",
                                   margin=margin)
    t, fallback, area, conf, unc = info[0]
    inside = labels[y0:y1, x0:x1]
    assert conf >= alpha * area - 1e-9 and conf + unc <= area
    assert np.sum(inside == 0b100) == conf and np.sum(inside == 0) == unc
    outside = np.ones((h, w), bool)
    outside[y0:y1, x0:x1] = False
    assert np.all(labels[outside] == 1)

"""Fuzzing the box -> label rule and the shard round trip with hypothesis.

Random boxes (1-pixel, full-image, touching the border, many overlapping), random UCMs
(uniform, sparse, all-0, all-255, a real one) and random bitsets: nothing crashes, label
bitsets never have bits >= num_classes, confident pixels lie inside a box of their class,
the rest of the image is background, and the shards give back exactly what was written."""

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from helpers import soft_labels
from pipeline.core.shards import (BOX_DTYPE, ShardReader, UcmReader, bitset_dtype, encode_tags, write_label_shard,
                             write_ucm_shard)
from pipeline.ucm.algorithm import ucm2 as compute_ucm2
from pipeline.core.verify import verify

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def boxes_in(draw, h, w, num_classes, max_boxes=8):
    """(M, 5) boxes inside an h x w image, with the degenerate cases drawn often."""
    out = []
    for _ in range(draw(st.integers(0, max_boxes))):
        shape = draw(st.sampled_from(["any", "pixel", "full", "border", "repeat"]))
        if shape == "repeat" and out:
            out.append(list(out[-1]))  # an exact duplicate: many overlapping boxes
            continue
        if shape == "pixel":
            x0, y0 = draw(st.integers(0, w - 1)), draw(st.integers(0, h - 1))
            x1, y1 = x0 + 1, y0 + 1
        elif shape == "full":
            x0, y0, x1, y1 = 0, 0, w, h
        else:
            x0 = draw(st.integers(0, w - 1))
            x1 = draw(st.integers(x0 + 1, w))
            y0 = draw(st.integers(0, h - 1))
            y1 = draw(st.integers(y0 + 1, h))
            if shape == "border":
                side = draw(st.integers(0, 3))
                x0, y0, x1, y1 = (0, y0, x1, y1) if side == 0 else (x0, 0, x1, y1) if side == 1 else \
                    (x0, y0, w, y1) if side == 2 else (x0, y0, x1, h)
        out.append([x0, y0, x1, y1, draw(st.integers(1, num_classes - 1))])
    return np.array(out, np.int64).reshape(-1, 5)


def make_ucm(kind, h, w, seed):
    rng = np.random.default_rng(seed)
    shape = (2 * h + 1, 2 * w + 1)
    if kind == "zeros":
        return np.zeros(shape, np.uint8)
    if kind == "full":
        return np.full(shape, 255, np.uint8)
    if kind == "uniform":
        return rng.integers(0, 256, shape, dtype=np.uint8)
    if kind == "sparse":
        u = np.zeros(shape, np.uint8)
        mask = rng.random(shape) < 0.1
        u[mask] = rng.integers(1, 256, int(mask.sum()), dtype=np.uint8)
        return u
    image = (rng.random((h, w, 3)) * 255).astype(np.uint8)  # "real": what the ucm stage makes
    image[: h // 2] //= 3
    return compute_ucm2(image)


@st.composite
def label_cases(draw):
    h, w = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    num_classes = draw(st.sampled_from([2, 3, 8, 9, 21, 33, 64]))
    boxes = draw(boxes_in(h, w, num_classes))
    ucm_kind = draw(st.sampled_from(["zeros", "full", "uniform", "sparse", "real"]))
    return h, w, num_classes, boxes, make_ucm(ucm_kind, h, w, draw(st.integers(0, 2**31)))


def check_labels(labels, info, h, w, num_classes, boxes):
    dt = bitset_dtype(num_classes)
    assert labels.shape == (h, w) and labels.dtype == dt
    b = labels.astype(np.uint64)
    if num_classes < 64:
        assert not np.any(b >> np.uint64(num_classes)), "a bit at or above num_classes"
    inside_any = np.zeros((h, w), bool)
    allowed = np.zeros((h, w), np.uint64)  # bits a pixel may carry: background + its boxes' classes
    for x0, y0, x1, y1, c in boxes:
        inside_any[y0:y1, x0:x1] = True
        allowed[y0:y1, x0:x1] |= np.uint64(1) << np.uint64(c)
    assert np.all(b[~inside_any] == 1), "a pixel outside every box is not plain background"
    fg = b & ~np.uint64(1)
    assert not np.any(fg & ~allowed), "a confident pixel of class c outside every box of class c"
    assert info.shape == (len(boxes), 5)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    np.testing.assert_array_equal(info[:, 2], area)
    assert np.all(info[:, 3] >= 0) and np.all(info[:, 4] >= 0)
    assert np.all(info[:, 3] + info[:, 4] <= area), "confident + uncertain area exceeds the box"


@FUZZ
@given(label_cases(), st.sampled_from(["paper", "enclosed"]),
       st.sampled_from([(0.25, 0.5, 0.75), (0.5,), (0.1, 1.0)]), st.sampled_from([0.05, 0.3, 1.0]),
       st.sampled_from([0.0, 0.1, 1.0]))
def test_ucm_strategy_never_crashes_and_keeps_labels_inside_the_boxes(case, rule, thresholds, alpha, margin):
    h, w, num_classes, boxes, ucm2 = case
    labels, info = soft_labels(ucm2, boxes, num_classes, "ucm", thresholds, alpha, rule=rule, margin=margin)
    check_labels(labels, info, h, w, num_classes, boxes)
    again, info2 = soft_labels(ucm2.copy(), boxes.copy(), num_classes, "ucm", thresholds, alpha, rule=rule,
                                   margin=margin)
    np.testing.assert_array_equal(again, labels)  # no dependence on uninitialised work memory
    np.testing.assert_array_equal(info2, info)


@FUZZ
@given(label_cases(), st.sampled_from(["paper", "enclosed"]))
def test_raw_box_strategy_marks_every_box_pixel_with_its_class(case, rule):
    h, w, num_classes, boxes, ucm2 = case
    labels, info = soft_labels(None, boxes, num_classes, "raw_box", shape=(h, w), rule=rule)
    check_labels(labels, info, h, w, num_classes, boxes)
    b = labels.astype(np.uint64)
    for x0, y0, x1, y1, c in boxes:
        assert np.all(b[y0:y1, x0:x1] & (np.uint64(1) << np.uint64(c)))
    assert not np.any(b == 0)  # raw boxes leave nothing uncertain


# ----------------------------------------------------------------------------- shards


@st.composite
def shard_cases(draw):
    num_classes = draw(st.integers(2, 64))
    dt = bitset_dtype(num_classes)
    n = draw(st.integers(0, 4))
    ids = sorted(draw(st.sets(st.text("abcdefghij_0123456789", min_size=1, max_size=8), min_size=n, max_size=n)))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    recs = []
    for i in ids:
        h, w = draw(st.integers(1, 20)), draw(st.integers(1, 20))
        kind = draw(st.sampled_from(["pixel", "box", "image"]))
        bitmode = draw(st.sampled_from(["random", "zero", "all", "single"]))
        if bitmode == "random":
            lab = rng.integers(0, 2**63, (h, w), dtype=np.uint64)
        elif bitmode == "zero":
            lab = np.zeros((h, w), np.uint64)
        elif bitmode == "all":
            lab = np.full((h, w), np.uint64(2**64 - 1))
        else:
            lab = np.uint64(1) << rng.integers(0, num_classes, (h, w)).astype(np.uint64)
        if num_classes < 64:
            lab &= np.uint64((1 << num_classes) - 1)
        cls_map = rng.integers(0, num_classes + 1, (h, w))
        truth = np.where(cls_map < num_classes, np.uint64(1) << np.minimum(cls_map, 63).astype(np.uint64), 0)
        boxes = np.zeros(draw(st.integers(0, 3)), BOX_DTYPE)
        for b in boxes:
            b["x0"], b["y0"] = rng.integers(0, w), rng.integers(0, h)
            b["x1"], b["y1"] = rng.integers(b["x0"] + 1, w + 1), rng.integers(b["y0"] + 1, h + 1)
            b["cls"] = rng.integers(1, num_classes) if num_classes > 1 else 1
            b["box_area"] = (b["x1"] - b["x0"]) * (b["y1"] - b["y0"])
            b["strategy"] = 255
        recs.append({"id": i, "kind": kind, "height": h, "width": w,
                     "tags": sorted(set(rng.integers(1, num_classes, 3).tolist())) if num_classes > 1 else [],
                     "image_bytes": rng.bytes(int(rng.integers(0, 50))),
                     "label": lab.astype(dt) if kind != "image" else None,
                     "truth": truth.astype(dt) if draw(st.booleans()) else None, "boxes": boxes})
    return num_classes, recs


@settings(max_examples=60, deadline=None)
@given(shard_cases())
def test_label_shard_round_trip_of_random_bitsets(case):
    num_classes, recs = case
    classes = ["background"] + [f"c{k}" for k in range(1, num_classes)]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "labels-train-00000.h5"
        write_label_shard(path, recs, classes, "train")
        r = ShardReader(path)
        assert r.ids == [x["id"] for x in recs] and r.num_classes == num_classes
        for x in recs:
            assert r.kind(x["id"]) == x["kind"] and r.image_bytes(x["id"]) == x["image_bytes"]
            for name in ("label", "truth"):
                got = getattr(r, name)(x["id"])
                if x[name] is None:
                    assert got is None
                else:
                    assert got.dtype == bitset_dtype(num_classes)
                    np.testing.assert_array_equal(got, x[name])
            want = np.zeros(num_classes, bool)
            want[x["tags"]] = True
            np.testing.assert_array_equal(r.tags(x["id"]), want)
            np.testing.assert_array_equal(r.boxes(x["id"]), x["boxes"])
        r.close()
        report = verify([path], decode_images=False)  # random image bytes are not images
        assert report.problems == [], [str(p) for p in report.problems]


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 63), st.integers(0, 2**31))
def test_the_writer_refuses_bits_at_or_above_num_classes(num_classes, seed):
    rng = np.random.default_rng(seed)
    dt = bitset_dtype(num_classes)
    assume(num_classes < dt.itemsize * 8)  # otherwise the dtype has no spare bit
    lab = np.ones((3, 4), dt)
    lab[rng.integers(0, 3), rng.integers(0, 4)] |= dt.type(1) << dt.type(rng.integers(num_classes, dt.itemsize * 8))
    rec = {"id": "x", "kind": "box", "height": 3, "width": 4, "tags": [], "image_bytes": b"", "label": lab}
    with tempfile.TemporaryDirectory() as d:
        with pytest.raises(ValueError, match="at or above num_classes"):
            write_label_shard(Path(d) / "labels-train-00000.h5", [rec], [f"c{k}" for k in range(num_classes)],
                              "train")
        assert list(Path(d).iterdir()) == []
    assert encode_tags([num_classes - 1], num_classes) == dt.type(1) << dt.type(num_classes - 1)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 12), st.integers(1, 12), st.sampled_from(["zeros", "full", "uniform"]),
                          st.integers(0, 2**31)), min_size=1, max_size=4))
def test_ucm_shard_round_trip_of_random_ucms(specs):
    ids = [f"im{k}" for k in range(len(specs))]
    ucms = [make_ucm(kind, h, w, seed) for h, w, kind, seed in specs]
    with tempfile.TemporaryDirectory() as d:
        write_ucm_shard(Path(d) / "ucm-00000.h5", ids, ucms)
        r = UcmReader(d)
        for i, u in zip(ids, ucms):
            np.testing.assert_array_equal(r[i], u)
        r.close()
        assert verify([d]).problems == []

"""Bitset encoding and the label/UCM shard round trip."""

import io

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from pipeline.core.errors import InputError
from pipeline.core.shards import (BOX_DTYPE, ShardReader, UcmReader, bit_count, bitset_dtype, bitsets_to_class_map,
                             decode_bitsets, encode_class_map, encode_tags, write_label_shard, write_ucm_shard)


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 64).flatmap(lambda n: st.tuples(st.just(n), st.lists(
    st.lists(st.booleans(), min_size=n, max_size=n), min_size=1, max_size=20))))
def test_bitsets_round_trip_for_up_to_64_classes(case):
    n, rows = case
    onehot = np.array(rows, bool)
    dt = bitset_dtype(n)
    bits = np.array([sum(1 << c for c in range(n) if r[c]) for r in rows], dtype=np.uint64).astype(dt)
    np.testing.assert_array_equal(decode_bitsets(bits, n), onehot)
    np.testing.assert_array_equal(bit_count(bits), onehot.sum(1))
    tags = [encode_tags(np.flatnonzero(r), n) for r in onehot]
    np.testing.assert_array_equal(np.array(tags, dt), bits)


def test_bitset_dtype_is_the_narrowest():
    assert [bitset_dtype(n) for n in (2, 8, 9, 16, 17, 32, 33, 64)] == [
        np.uint8, np.uint8, np.uint16, np.uint16, np.uint32, np.uint32, np.uint64, np.uint64]
    with pytest.raises(ValueError):
        bitset_dtype(65)


def test_class_map_encoding_void_is_empty_and_back():
    cm = np.array([[0, 1, 20], [255, 3, 0]], np.uint8)
    bits = encode_class_map(cm, 21)
    assert bits.dtype == np.uint32
    np.testing.assert_array_equal(bits, [[1, 2, 1 << 20], [0, 8, 1]])
    np.testing.assert_array_equal(bitsets_to_class_map(bits), cm)
    assert bitsets_to_class_map(np.array([6], np.uint8))[0] == 255  # soft pixel -> not a single class


def _png_bytes(h, w, seed=0):
    arr = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue(), arr


def _records(num_classes=5):
    dt = bitset_dtype(num_classes)
    b1, a1 = _png_bytes(4, 6, 1)
    b2, a2 = _png_bytes(3, 5, 2)
    label = np.ones((4, 6), dt)
    label[1:3, 2:4] = 0b110
    label[0, 0] = 0
    boxes = np.zeros(2, BOX_DTYPE)
    boxes["x0"], boxes["x1"], boxes["cls"], boxes["threshold"] = [1, 2], [4, 5], [1, 2], [0.25, 0.5]
    recs = [{"id": "a", "kind": "box", "height": 4, "width": 6, "tags": [1, 2], "image_bytes": b1,
             "label": label, "truth": label.copy(), "boxes": boxes},
            {"id": "b", "kind": "image", "height": 3, "width": 5, "tags": [4], "image_bytes": b2}]
    return recs, (a1, a2)


def test_label_shard_round_trip(tmp_path):
    recs, (a1, a2) = _records()
    classes = ["background", "cat", "dog", "cow", "bird"]
    write_label_shard(tmp_path / "labels-train-00000.h5", recs, classes, "train", params={"alpha": 0.3})
    r = ShardReader(tmp_path, split="train")
    assert r.ids == ["a", "b"] and r.classes == classes and r.num_classes == 5
    assert r.kind("a") == "box" and r.kind("b") == "image" and r.ids_of_kind("image") == ["b"]
    np.testing.assert_array_equal(r.image("a"), a1)
    np.testing.assert_array_equal(r.label("a"), recs[0]["label"])
    assert r.label("b") is None and r.truth("b") is None
    np.testing.assert_array_equal(r.tags("a"), [False, True, True, False, False])
    np.testing.assert_array_equal(r.boxes("a")["x1"], [4, 5])
    assert len(r.boxes("b")) == 0
    assert r.params == {"alpha": 0.3}
    with pytest.raises(KeyError):
        r.kind("zzz")


def test_plain_h5py_reads_one_mask_in_three_lines(tmp_path):
    recs, _ = _records()
    write_label_shard(tmp_path / "labels-train-00000.h5", recs, ["bg", "a", "b", "c", "d"], "train")
    f = h5py.File(tmp_path / "labels-train-00000.h5", "r")
    mask = f["label/a"][()]
    np.testing.assert_array_equal(mask, recs[0]["label"])


def test_shards_are_byte_identical_across_runs(tmp_path):
    recs, _ = _records()
    for name in ("x", "y"):
        write_label_shard(tmp_path / name / "labels-train-00000.h5", recs, ["bg", "a", "b", "c", "d"], "train")
    assert (tmp_path / "x/labels-train-00000.h5").read_bytes() == (tmp_path / "y/labels-train-00000.h5").read_bytes()


def test_corrupt_and_truncated_shards_are_named(tmp_path):
    recs, _ = _records()
    path = tmp_path / "labels-train-00000.h5"
    write_label_shard(path, recs, ["bg", "a", "b", "c", "d"], "train")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(InputError, match="labels-train-00000.h5.*corrupt or truncated"):
        ShardReader(path)
    path.write_bytes(b"not hdf5 at all")
    with pytest.raises(InputError, match="corrupt or truncated"):
        ShardReader(path)
    other = tmp_path / "ucm-00000.h5"
    write_ucm_shard(other, ["a"], [np.zeros((9, 13), np.uint8)])
    with pytest.raises(InputError, match="not a mixseg labels shard"):
        ShardReader(other)


def test_failed_write_leaves_nothing_behind(tmp_path):
    recs, _ = _records()
    recs[0]["label"] = recs[0]["label"][:2]  # wrong shape
    with pytest.raises(ValueError, match="shape"):
        write_label_shard(tmp_path / "labels-train-00000.h5", recs, ["bg", "a", "b", "c", "d"], "train")
    assert list(tmp_path.iterdir()) == []


def test_ucm_shard_round_trip(tmp_path):
    u = np.arange(9 * 13, dtype=np.uint8).reshape(9, 13)
    write_ucm_shard(tmp_path / "ucm-00000.h5", ["im1"], [u])
    r = UcmReader(tmp_path)
    assert "im1" in r and r.ids == ["im1"]
    np.testing.assert_array_equal(r["im1"], u)
    with pytest.raises(ValueError, match="uint8"):
        write_ucm_shard(tmp_path / "ucm-00001.h5", ["im2"], [u.astype(np.float32)])

"""Bitset encoding and the label/UCM shard round trip."""

import io
import json
import zlib

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from pipeline.core.errors import InputError
from pipeline.core.shards import (BOX_DTYPE, ShardReader, UcmReader, bit_count, bitset_dtype, bitsets_to_class_map,
                                  decode_bitsets, encode_class_map, encode_tags, manifest_entry, map_crc32,
                                  shard_paths, write_label_shard, write_manifest, write_ucm_shard)


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


# ----------------------------------------------------------------------------- issue #14

UNICODE_IDS = ["ünïcødé €漢字", "Ωmega-ß", "😀 emoji"]


def test_non_ascii_ids_round_trip_through_both_shards_and_readers(tmp_path):
    recs, (a1, a2) = _records()
    recs = [dict(recs[0], id=UNICODE_IDS[0]), dict(recs[1], id=UNICODE_IDS[2])]
    classes = ["background", "cat", "dog", "cow", "bird"]
    write_label_shard(tmp_path / "labels-train-00000.h5", recs, classes, "train")
    r = ShardReader(tmp_path, split="train")
    assert r.ids == [UNICODE_IDS[0], UNICODE_IDS[2]] and r.kind(UNICODE_IDS[2]) == "image"
    np.testing.assert_array_equal(r.image(UNICODE_IDS[0]), a1)
    np.testing.assert_array_equal(r.label(UNICODE_IDS[0]), recs[0]["label"])
    np.testing.assert_array_equal(r.truth(UNICODE_IDS[0]), recs[0]["truth"])
    np.testing.assert_array_equal(r.image(UNICODE_IDS[2]), a2)
    r.close()
    with h5py.File(tmp_path / "labels-train-00000.h5", "r") as f:  # UTF-8 in the file, readable by plain h5py
        assert list(f["ids"].asstr()[:]) == r.ids and h5py.check_string_dtype(f["ids"].dtype).encoding == "utf-8"
        assert set(f["label"]) == {UNICODE_IDS[0]}
    us = [np.full((2 * h + 1, 2 * w + 1), k, np.uint8) for k, (h, w) in enumerate([(3, 4), (5, 2), (1, 1)])]
    write_ucm_shard(tmp_path / "ucm-00000.h5", sorted(UNICODE_IDS), us)
    u = UcmReader(tmp_path)
    assert u.ids == sorted(UNICODE_IDS) and all(i in u for i in UNICODE_IDS)
    for i, m in zip(sorted(UNICODE_IDS), us):
        np.testing.assert_array_equal(u[i], m)


def _folder(tmp_path, n=3):
    recs, _ = _records()
    out = tmp_path / "out"
    for k in range(n):
        write_label_shard(out / f"labels-train-{k:05d}.h5", [dict(recs[0], id=f"im{k}")], ["bg", "a", "b", "c", "d"],
                          "train")
    write_label_shard(out / "labels-val-00000.h5", [dict(recs[0], id="v")], ["bg", "a", "b", "c", "d"], "val")
    write_manifest(out, [manifest_entry(p, 1) for p in out.glob("*.h5")], "labels")
    return out


def test_readers_refuse_a_folder_that_does_not_match_its_manifest(tmp_path):
    out = _folder(tmp_path)
    assert ShardReader(out, split="train").ids == ["im0", "im1", "im2"]
    (out / "labels-train-00001.h5").unlink()
    msg = f"{out}/labels-train-00001.h5: listed in {out}/manifest.json but missing: rerun the labels stage"
    for read in (lambda: ShardReader(out, split="train"), lambda: ShardReader(out),
                 lambda: shard_paths(out, "labels-train-*.h5")):
        with pytest.raises(InputError) as e:
            read()
        assert str(e.value) == msg
    assert ShardReader(out, split="val").ids == ["v"]  # what that reader reads is complete
    (out / "labels-train-00001.h5").write_bytes((out / "labels-train-00002.h5").read_bytes() + b"\0")
    with pytest.raises(InputError, match=r"labels-train-00001.h5: \d+ bytes, .*manifest.json records \d+: the shard "
                                         r"was changed after the labels stage wrote it; rerun the labels stage"):
        ShardReader(out)
    (out / "labels-train-00001.h5").unlink()
    (out / "manifest.json").unlink()
    assert ShardReader(out, split="train").ids == ["im0", "im2"]  # no manifest: read as before


def test_readers_refuse_an_unlisted_shard_or_another_image_count(tmp_path):
    out = _folder(tmp_path)
    recs, _ = _records()
    write_label_shard(out / "labels-train-00007.h5", [dict(recs[0], id="x")], ["bg", "a", "b", "c", "d"], "train")
    with pytest.raises(InputError) as e:
        ShardReader(out, split="train")
    assert str(e.value) == (f"{out}/labels-train-00007.h5: not listed in {out}/manifest.json (a file from another "
                            "run?): rerun the labels stage")
    (out / "labels-train-00007.h5").unlink()
    doc = json.loads((out / "manifest.json").read_text())
    doc["files"][2]["images"] = 5
    (out / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(InputError) as e:
        ShardReader(out, split="train")
    assert str(e.value) == (f"{out}/labels-train-00002.h5: holds 1 images, {out}/manifest.json lists 5: "
                            "rerun the labels stage")
    (out / "manifest.json").write_text("[]")
    with pytest.raises(InputError, match=r"manifest.json: not a mixseg shard manifest \(a JSON list, expected an "
                                         r"object\): rerun the stage that wrote"):
        ShardReader(out)


def test_ucm_reader_refuses_a_folder_with_a_missing_shard(tmp_path):
    for k in range(3):
        write_ucm_shard(tmp_path / f"ucm-{k:05d}.h5", [f"i{k}"], [np.zeros((3, 5), np.uint8)])
    write_manifest(tmp_path, [manifest_entry(p, 1) for p in tmp_path.glob("*.h5")], "ucm", skipped=0)
    assert UcmReader(tmp_path).ids == ["i0", "i1", "i2"]
    (tmp_path / "ucm-00002.h5").unlink()
    with pytest.raises(InputError) as e:
        UcmReader(tmp_path)
    assert str(e.value) == (f"{tmp_path}/ucm-00002.h5: listed in {tmp_path}/manifest.json but missing: "
                            "rerun the ucm stage")


def _flip_image_bytes(path, index, fraction=0.5):
    """Flip bytes in the second half of stored image ``index`` in place (through h5py)."""
    with h5py.File(path, "r+") as f:
        img = f["image"][index].copy()
        start = int(len(img) * fraction)
        img[start:start + 8] ^= 0x55
        f["image"][index] = img


def test_the_reader_checks_the_recorded_crc_of_images_and_maps(tmp_path):
    recs, (a1, a2) = _records()
    path = tmp_path / "labels-train-00000.h5"
    write_label_shard(path, recs, ["bg", "a", "b", "c", "d"], "train")
    stored = zlib.crc32(recs[0]["image_bytes"])
    _flip_image_bytes(path, 0)
    with h5py.File(path, "r") as f:
        computed = zlib.crc32(f["image"][0].tobytes())
    r = ShardReader(path)
    for read in (r.image, r.image_bytes):
        with pytest.raises(InputError) as e:
            read("a")
        assert str(e.value) == (f"{path}: image of a: checksum mismatch (stored {stored:08x}, computed "
                                f"{computed:08x}): the shard is damaged; rerun the labels stage")
    np.testing.assert_array_equal(r.image("b"), a2)  # the others still read
    np.testing.assert_array_equal(r.label("a"), recs[0]["label"])
    r.close()
    assert ShardReader(path, checksums=False).image_bytes("a") != recs[0]["image_bytes"]  # the check, off
    with h5py.File(path, "r+") as f:
        m = f["truth/a"][()]
        m[1, 1] ^= 0b1000
        f["truth/a"][...] = m
    r = ShardReader(path)
    with pytest.raises(InputError) as e:
        r.truth("a")
    assert str(e.value) == (f"{path}: truth/a: checksum mismatch (stored {map_crc32(recs[0]['truth']):08x}, computed "
                            f"{map_crc32(m):08x}): the shard is damaged; rerun the labels stage")
    r.close()


def test_the_ucm_reader_checks_the_recorded_crc(tmp_path):
    u = np.arange(9 * 13, dtype=np.uint8).reshape(9, 13)
    write_ucm_shard(tmp_path / "ucm-00000.h5", ["x"], [u])
    with h5py.File(tmp_path / "ucm-00000.h5", "r+") as f:
        f["ucm2/x"][4, 4] = 0
    with pytest.raises(InputError, match=r"ucm-00000.h5: ucm2/x: checksum mismatch \(stored [0-9a-f]{8}, computed "
                                         r"[0-9a-f]{8}\): the shard is damaged; rerun the ucm stage"):
        UcmReader(tmp_path)["x"]


def test_format1_shards_are_read_unchecked(tmp_path):
    recs, (a1, _) = _records()
    path = tmp_path / "labels-train-00000.h5"
    write_label_shard(path, recs, ["bg", "a", "b", "c", "d"], "train")
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = 1
        del f["checksums"]
    r = ShardReader(path)
    np.testing.assert_array_equal(r.image("a"), a1)
    np.testing.assert_array_equal(r.label("a"), recs[0]["label"])
    r.close()
    _flip_image_bytes(path, 1, 0.9)
    assert ShardReader(path).image_bytes("b") != recs[1]["image_bytes"]  # nothing to check it against

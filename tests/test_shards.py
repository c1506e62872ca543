"""Label encodings (format 3 class-id maps with class sets, format 2 bitsets) and the label/UCM
shard round trip."""

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
from pipeline.core.shards import (BOX_DTYPE, FORMAT_VERSION, LabelMap, ShardReader, UcmReader, bit_count,
                                  bitset_dtype, bitsets_to_class_map, code_dtype, decode_bitsets, encode_bitsets,
                                  encode_class_map, encode_tags, label_crc32, manifest_entry, map_crc32, shard_paths,
                                  write_label_shard, write_manifest, write_ucm_shard)


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
    truth = label.copy()
    truth[truth == 0b110] = 0b100   # a true mask has one class per pixel
    recs = [{"id": "a", "kind": "box", "height": 4, "width": 6, "tags": [1, 2], "image_bytes": b1,
             "label": label, "truth": truth, "boxes": boxes},
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
    """label/a holds class ids: 0 background, 1 cat, 255 ignored, and 5 + 0 = the image's first
    class set (5 classes), {1, 2} -- written from the bitsets 1, 0b110 and 0."""
    recs, _ = _records()
    write_label_shard(tmp_path / "labels-train-00000.h5", recs, ["bg", "a", "b", "c", "d"], "train")
    f = h5py.File(tmp_path / "labels-train-00000.h5", "r")
    mask = f["label/a"][()]
    want = np.zeros((4, 6), np.uint8)
    want[1:3, 2:4] = 5
    want[0, 0] = 255
    np.testing.assert_array_equal(mask, want)
    assert mask.dtype == np.uint8 and f["truth/a"][1, 2] == 2
    first = f["label_set_first"][0]
    off = f["label_set_offsets"][first:first + 2]
    assert f["label_sets"][off[0]:off[1]].tolist() == [1, 2] and f.attrs["format_version"] == FORMAT_VERSION == 3


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
        m[1, 1] ^= 0b10
        f["truth/a"][...] = m
    r = ShardReader(path)
    stored = map_crc32(encode_bitsets(recs[0]["truth"], 5).codes)
    for read in (r.truth, r.truth_map, r.class_map):
        with pytest.raises(InputError) as e:
            read("a")
        assert str(e.value) == (f"{path}: truth/a: checksum mismatch (stored {stored:08x}, computed "
                                f"{map_crc32(m):08x}): the shard is damaged; rerun the labels stage")
    r.close()
    with h5py.File(path, "r+") as f:   # the class sets are under the label's checksum too
        sets = f["label_sets"][()]
        sets[1] = 3
        f["label_sets"][...] = sets
    with pytest.raises(InputError, match="label/a: checksum mismatch"):
        ShardReader(path).label_map("a")


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
    write_label_shard(path, recs, ["bg", "a", "b", "c", "d"], "train", version=2)
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = 1
        del f["checksums"]
    r = ShardReader(path)
    np.testing.assert_array_equal(r.image("a"), a1)
    np.testing.assert_array_equal(r.label("a"), recs[0]["label"])
    r.close()
    _flip_image_bytes(path, 1, 0.9)
    assert ShardReader(path).image_bytes("b") != recs[1]["image_bytes"]  # nothing to check it against


# ----------------------------------------------------------------------------- format 3 (issue #13)

def test_label_map_layout_hand_computed():
    """3 classes; bitsets 1 (bg), 2 (class 1), 0b110 ({1, 2}), 0b111 ({0, 1, 2}), 0 (ignored):
    codes 0, 1, 3 + 0, 3 + 1, 255; sets numbered by bitset value (0b110 < 0b111)."""
    bits = np.array([[1, 2, 6], [7, 0, 6]], np.uint8)
    lm = encode_bitsets(bits, 3)
    assert lm.codes.dtype == np.uint8 and lm.codes.tolist() == [[0, 1, 3], [4, 255, 3]]
    assert lm.sets.tolist() == [1, 2, 0, 1, 2] and lm.offsets.tolist() == [0, 2, 5] and lm.ignore == 255
    assert lm.counts().tolist() == [[1, 1, 2], [3, 0, 2]]
    assert lm.class_map().tolist() == [[0, 1, 255], [255, 255, 255]]
    np.testing.assert_array_equal(lm.to_bitsets(), bits)
    np.testing.assert_array_equal(lm.one_hot(), decode_bitsets(bits, 3))
    assert lm.present().tolist() == [True, True, True] and lm.problem() is None
    pix, cls, w = lm.pixel_classes()
    assert pix.tolist() == [0, 1, 2, 2, 3, 3, 3, 5, 5] and cls.tolist() == [0, 1, 1, 2, 0, 1, 2, 1, 2]
    np.testing.assert_allclose(w, [1, 1, 1 / 2, 1 / 2, 1 / 3, 1 / 3, 1 / 3, 1 / 2, 1 / 2])


def test_local_bits_map_to_global_classes_above_64():
    """A box strategy's bitsets over an image's own classes (bit 1 = class 70, bit 2 = class 140)."""
    bits = np.array([[1, 2, 4, 6, 0]], np.uint8)
    lm = encode_bitsets(bits, 151, classes_of_bits=[0, 70, 140])
    assert lm.codes.tolist() == [[0, 70, 140, 151, 255]] and lm.class_set(0).tolist() == [70, 140]
    assert lm.class_map().tolist() == [[0, 70, 140, 255, 255]]
    with pytest.raises(ValueError, match="beyond the 3 classes"):
        encode_bitsets(np.array([[8]], np.uint8), 151, classes_of_bits=[0, 70, 140])


def test_code_dtype_grows_to_uint16_when_classes_and_sets_need_it():
    assert code_dtype(21) == code_dtype(21, 234) == np.uint8     # 21 + 234 = 255 codes + the ignore value 255
    assert code_dtype(21, 235) == code_dtype(300) == np.uint16
    with pytest.raises(ValueError, match="uint16"):
        code_dtype(65000, 600)
    bits = (np.arange(300, dtype=np.uint64) + 3).reshape(15, 20)   # 3.. 302: many distinct multi-bit sets
    lm = encode_bitsets(bits, 64)
    assert lm.codes.dtype == np.uint16 and lm.ignore == 65535 and lm.problem() is None
    np.testing.assert_array_equal(lm.to_bitsets(np.uint64), bits)


def _big_records(num_classes, rng):
    """Two box images with soft pixels at class ids above 64 and a truth, as LabelMaps."""
    recs = []
    for k in range(2):
        h, w = 5 + k, 7
        codes = rng.integers(0, num_classes, (h, w)).astype(code_dtype(num_classes, 2))
        codes[0, :3] = num_classes          # set 0 = {65, num_classes - 2}
        codes[1, :2] = num_classes + 1      # set 1 = {3, 70, num_classes - 1}
        codes[2, 0] = np.iinfo(codes.dtype).max
        lm = LabelMap(codes, num_classes, [65, num_classes - 2, 3, 70, num_classes - 1], [0, 2, 5])
        truth = LabelMap.from_class_map(rng.integers(0, num_classes + 1, (h, w)), num_classes)
        recs.append({"id": f"im{k}", "kind": "box", "height": h, "width": w, "tags": [65, 3, num_classes - 1],
                     "image_bytes": b"x" * k, "label": lm, "truth": truth})
    recs.append({"id": "im2", "kind": "image", "height": 2, "width": 2, "tags": [num_classes - 1],
                 "image_bytes": b"y"})
    return recs


@pytest.mark.parametrize("num_classes", [81, 151, 300])
def test_format3_round_trip_beyond_64_classes(tmp_path, num_classes):
    from pipeline.core.verify import verify
    recs = _big_records(num_classes, np.random.default_rng(num_classes))
    classes = ["background"] + [f"c{k}" for k in range(1, num_classes)]
    write_label_shard(tmp_path / "labels-train-00000.h5", recs, classes, "train")
    r = ShardReader(tmp_path)
    assert r.num_classes == num_classes and r.bitset_dtype is None
    for x in recs:
        want = np.zeros(num_classes, bool)
        want[x["tags"]] = True
        np.testing.assert_array_equal(r.tags(x["id"]), want)
        assert r.tag_ids(x["id"]).tolist() == sorted(x["tags"])
        if x["kind"] == "image":
            assert r.label_map(x["id"]) is None and r.truth(x["id"]) is None
            continue
        assert r.label_map(x["id"]) == x["label"] and r.label(x["id"]) == x["label"]
        assert r.truth_map(x["id"]) == x["truth"]
        np.testing.assert_array_equal(bitsets_to_class_map(r.truth(x["id"])), x["truth"].class_map())
        np.testing.assert_array_equal(r.class_map(x["id"]), x["truth"].class_map())
    assert verify([tmp_path], decode_images=False).problems == []


def test_format2_shards_still_read_as_label_maps(tmp_path):
    recs, (a1, _) = _records()
    write_label_shard(tmp_path / "labels-train-00000.h5", recs, ["bg", "a", "b", "c", "d"], "train", version=2)
    with h5py.File(tmp_path / "labels-train-00000.h5", "r") as f:
        assert f.attrs["format_version"] == 2 and f["label/a"].dtype == np.uint8 and "tags" in f
    r = ShardReader(tmp_path)
    assert r.format_versions == [2]
    np.testing.assert_array_equal(r.label("a"), recs[0]["label"])
    assert r.label_map("a") == encode_bitsets(recs[0]["label"], 5)
    np.testing.assert_array_equal(r.class_map("a"), bitsets_to_class_map(recs[0]["truth"]))
    np.testing.assert_array_equal(r.tags("a"), [False, True, True, False, False])
    from pipeline.core.verify import verify
    problems = verify([tmp_path], decode_images=False).problems   # (the fixture's boxes have zero area)
    assert [str(p) for p in problems if " box " not in p.item] == []


def test_the_writer_refuses_bad_label_maps(tmp_path):
    path = tmp_path / "labels-train-00000.h5"
    base = {"id": "a", "kind": "box", "height": 1, "width": 3, "tags": [], "image_bytes": b""}
    classes = [f"c{k}" for k in range(70)]
    cases = [
        (LabelMap(np.array([[0, 70, 1]], np.uint8), 70), "code at or above 70"),
        (LabelMap(np.array([[0, 70, 1]], np.uint8), 70, [3, 3], [0, 2]), "not ascending"),
        (LabelMap(np.array([[0, 70, 1]], np.uint8), 70, [3], [0, 1]), "two or more"),
        (LabelMap(np.array([[0, 1, 1]], np.uint8), 70, [3, 70], [0, 2]), "outside 0..69"),
        (LabelMap(np.array([[0, 1, 1]], np.uint8), 69), "LabelMap of 69 classes"),
        (np.array([[1, 2, 4]], np.uint64), "expected a LabelMap"),
    ]
    for label, msg in cases:
        with pytest.raises(ValueError, match=msg):
            write_label_shard(path, [dict(base, label=label)], classes, "train")
    with pytest.raises(ValueError, match="one class per pixel"):
        write_label_shard(path, [dict(base, truth=LabelMap(np.array([[0, 70, 1]], np.uint8), 70, [3, 4], [0, 2]))],
                          classes, "train")
    with pytest.raises(ValueError, match="tags of a"):
        write_label_shard(path, [dict(base, tags=[70])], classes, "train")
    assert list(tmp_path.iterdir()) == []


def test_label_crc_covers_codes_and_sets():
    lm = encode_bitsets(np.array([[6, 1]], np.uint8), 3)
    other = LabelMap(lm.codes, 3, [0, 2], [0, 2])
    assert label_crc32(lm) != label_crc32(other) and label_crc32(lm) != map_crc32(lm.codes)
    assert label_crc32(LabelMap(np.array([[1]], np.uint8), 3)) == map_crc32(np.array([[1]], np.uint8))

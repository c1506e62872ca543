"""`mixseg verify`: every integrity problem of a shard is found and named, one line each."""

import io
import json

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from pipeline.cli import main
from pipeline.core.errors import InputError
from pipeline.core.shards import (BOX_DTYPE, FORMAT_VERSION, ShardReader, UcmReader, bitset_dtype, manifest_entry,
                                  write_label_shard, write_manifest, write_ucm_shard)
from pipeline.core.verify import verify

CLASSES = ["background", "cat", "dog", "cow", "bird"]


def _png(h, w, seed):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _records():
    dt = bitset_dtype(len(CLASSES))
    rng = np.random.default_rng(0)
    truth = (np.uint8(1) << rng.integers(0, 5, (6, 8)).astype(np.uint8)).astype(dt)
    label = truth.copy()
    label[2:4, 2:5] = 0b110
    boxes = np.zeros(2, BOX_DTYPE)
    boxes["x0"], boxes["y0"], boxes["x1"], boxes["y1"], boxes["cls"] = [1, 0], [1, 2], [5, 8], [4, 6], [1, 2]
    boxes["box_area"] = (boxes["x1"] - boxes["x0"]) * (boxes["y1"] - boxes["y0"])
    boxes["strategy"] = [0, 0]
    return [{"id": "a", "kind": "box", "height": 6, "width": 8, "tags": [1, 2], "image_bytes": _png(6, 8, 1),
             "label": label, "truth": truth, "boxes": boxes},
            {"id": "b", "kind": "pixel", "height": 5, "width": 7, "tags": [3], "image_bytes": _png(5, 7, 2),
             "label": truth[:5, :7].copy(), "truth": truth[:5, :7].copy()},
            {"id": "c", "kind": "image", "height": 4, "width": 4, "tags": [4], "image_bytes": _png(4, 4, 3)}]


def manifest(folder, stage, skipped=None):
    """The folder's manifest.json, as the stage (``run_sharded``) writes it."""
    entries = []
    for p in sorted(folder.glob("*.h5")):
        with h5py.File(p, "r") as f:
            entries.append(manifest_entry(p, len(f["ids"])))
    write_manifest(folder, entries, stage, skipped)


@pytest.fixture(params=[3])
def shards(tmp_path, request):
    out = tmp_path / "labels"
    write_label_shard(out / "labels-train-00000.h5", _records(), CLASSES, "train", params={"alpha": 0.3},
                      version=request.param)
    u = np.random.default_rng(1).integers(0, 256, (13, 17), dtype=np.uint8)
    write_ucm_shard(tmp_path / "ucm" / "ucm-00000.h5", ["a", "b"], [u, u[:11, :15]])
    manifest(out, "labels")
    manifest(tmp_path / "ucm", "ucm")
    return out / "labels-train-00000.h5", tmp_path / "ucm" / "ucm-00000.h5"


def lines(report):
    return [str(p) for p in report.problems]


def assert_reported(report, path, item, fragment):
    hits = [p for p in report.problems if p.path == str(path) and p.item == item and fragment in p.reason]
    assert hits, f"no problem '{item}: ...{fragment}...' in:\n" + "\n".join(lines(report))


def test_good_shards_pass_and_cli_exits_zero(shards):
    lab, ucm = shards
    report = verify([lab.parent, ucm.parent])
    assert report.problems == [] and report.notes == []
    assert report.shards == 2 and report.images == 5
    result = CliRunner().invoke(main, ["verify", str(lab.parent), str(ucm)])
    assert result.exit_code == 0, result.output


def test_checksums_are_recorded_at_write_time(shards):
    lab, ucm = shards
    with h5py.File(lab, "r") as f:
        assert f.attrs["format_version"] == FORMAT_VERSION == 3 and f.attrs["checksum"] == "crc32"
        sums = f["checksums"][:]
        assert len(sums) == 3 and np.all(sums["image"] != 0) and np.all(sums["meta"] != 0)
        assert sums["label"][2] == 0 and sums["label"][0] != 0  # the image-kind item has no label map
    with h5py.File(ucm, "r") as f:
        assert f["crc32"].shape == (2,) and f["crc32"].dtype == np.uint32


def test_every_problem_of_a_label_shard_is_reported(shards):
    """Format 3: a code beyond the classes and the image's one class set, a tag id beyond the classes."""
    lab, _ = shards
    with h5py.File(lab, "r+") as f:
        img = f["image"][0].copy()
        img[len(img) // 2] ^= 0xFF
        f["image"][0] = img                               # 1: corrupt image bytes
        m = f["label/a"][()]
        m[0, 0] = 0x80                                    # 2: code 128: not a class, set (5) or ignored (255)
        f["label/a"][...] = m
        del f["truth/b"]
        f["truth"].create_dataset("b", data=np.ones((3, 3), np.uint8))  # 3: mis-shaped truth
        t = f["tag_ids"][()]
        t[2] = 9
        f["tag_ids"][...] = t                             # 4: tag 9 >= 5 classes
        off = f["box_offsets"][:]
        off[-1] = 7
        f["box_offsets"][...] = off                       # 5: inconsistent offsets
        del f["label/b"]                                  # 6: pixel-kind item without its label
        f["truth"].create_dataset("zzz", data=np.ones((2, 2), np.uint8))  # 7: a map of no listed id
        m = f["truth/a"][()]
        m[0, 0] = 5
        f["truth/a"][...] = m                             # 8: a class set code in a true mask
        sets = f["label_sets"][()]
        sets[1] = 1
        f["label_sets"][...] = sets                       # 9: set {1, 1}
    report = verify([lab])
    assert_reported(report, lab, "a", "image checksum mismatch")
    assert_reported(report, lab, "label/a", "1 pixels have a code at or above 6 that is not the ignore value 255 "
                                            "(1 class sets)")
    assert_reported(report, lab, "label/a", "checksum mismatch")
    assert_reported(report, lab, "truth/b", "shape (3, 3), expected (height, width) = (5, 7)")
    assert_reported(report, lab, "tag_ids", "1 class ids at or above num_classes (5)")
    assert_reported(report, lab, "box_offsets", "inconsistent")
    assert_reported(report, lab, "label/b", "missing: a pixel-kind image needs a label map")
    assert_reported(report, lab, "truth/zzz", "not in ids")
    assert_reported(report, lab, "truth/a", "1 pixels have a code at or above 5 that is not the ignore value 255 "
                                            "(a true mask has no class sets)")
    assert_reported(report, lab, "label_sets", "not ascending and unique")
    assert all(str(p).startswith(f"{lab}: ") for p in report.problems)
    result = CliRunner().invoke(main, ["verify", str(lab)])
    assert result.exit_code == 1
    assert result.stdout.splitlines() == lines(report)   # one line per problem, all of them


@pytest.mark.parametrize("shards", [2], indirect=True)
def test_every_problem_of_a_format2_label_shard_is_reported(shards):
    lab, _ = shards
    with h5py.File(lab, "r+") as f:
        img = f["image"][0].copy()
        img[len(img) // 2] ^= 0xFF
        f["image"][0] = img                               # 1: corrupt image bytes
        m = f["label/a"][()]
        m[0, 0] = 0x80                                    # 2: a bit beyond the 5 classes
        f["label/a"][...] = m
        del f["truth/b"]
        f["truth"].create_dataset("b", data=np.ones((3, 3), np.uint8))  # 3: mis-shaped truth
        f["tags"][2] = 0x41                               # 4: tag bit 6 >= 5 classes
        off = f["box_offsets"][:]
        off[-1] = 7
        f["box_offsets"][...] = off                       # 5: inconsistent offsets
        del f["label/b"]                                  # 6: pixel-kind item without its label
        f["truth"].create_dataset("zzz", data=np.ones((2, 2), np.uint8))  # 7: a map of no listed id
    report = verify([lab])
    assert_reported(report, lab, "a", "image checksum mismatch")
    assert_reported(report, lab, "label/a", "1 pixels have a bit at or above num_classes (5)")
    assert_reported(report, lab, "label/a", "checksum mismatch")
    assert_reported(report, lab, "truth/b", "shape (3, 3), expected (height, width) = (5, 7)")
    assert_reported(report, lab, "c", "tags 0x41 have a bit at or above num_classes")
    assert_reported(report, lab, "box_offsets", "inconsistent")
    assert_reported(report, lab, "label/b", "missing: a pixel-kind image needs a label map")
    assert_reported(report, lab, "truth/zzz", "not in ids")
    assert all(str(p).startswith(f"{lab}: ") for p in report.problems)
    result = CliRunner().invoke(main, ["verify", str(lab)])
    assert result.exit_code == 1
    out = result.stdout.splitlines()
    assert out == lines(report)                          # one line per problem, all of them
    assert len(out) >= 8


def _break_shared_schema(f, retype: str, dtype) -> None:
    """What both formats check alike: no ``kind``, no class list, ids out of order, and the
    tag dataset ``retype`` stored with another ``dtype``."""
    del f["kind"]
    del f.attrs["classes"]
    tags = f[retype][:].astype(dtype)
    del f[retype]
    f.create_dataset(retype, data=tags)
    ids = f["ids"][:]
    del f["ids"]
    f.create_dataset("ids", data=ids[::-1], dtype=h5py.string_dtype())


def _assert_shared_schema_reported(report, lab) -> None:
    assert_reported(report, lab, "kind", "missing dataset")
    assert_reported(report, lab, "attrs/classes", "missing attribute")
    assert_reported(report, lab, "ids", "not sorted ('c' before 'b')")


def test_schema_problems_are_named(shards):
    lab, _ = shards
    with h5py.File(lab, "r+") as f:
        _break_shared_schema(f, "tag_ids", np.uint32)
        del f["label_set_first"]
        f["label"].create_dataset("x", data=np.zeros((2, 2), np.int32))
    report = verify([lab])
    _assert_shared_schema_reported(report, lab)
    assert_reported(report, lab, "tag_ids", "dtype uint32, expected uint16")
    assert_reported(report, lab, "label_set_first", "missing dataset")
    assert_reported(report, lab, "label/x", "not in ids")


@pytest.mark.parametrize("shards", [2], indirect=True)
def test_format2_schema_problems_are_named(shards):
    lab, _ = shards
    with h5py.File(lab, "r+") as f:
        _break_shared_schema(f, "tags", np.uint16)
        f.attrs["bitset_dtype"] = "uint16"
    report = verify([lab])
    _assert_shared_schema_reported(report, lab)
    assert_reported(report, lab, "attrs/bitset_dtype", "uint16, but 5 classes need uint8")
    assert_reported(report, lab, "tags", "dtype uint16, expected uint8")


def test_duplicate_ids_and_class_lists_across_a_folder(shards, tmp_path):
    lab, _ = shards
    recs = _records()[:1]
    write_label_shard(lab.parent / "labels-train-00001.h5", recs, CLASSES, "train")
    write_label_shard(lab.parent / "labels-val-00000.h5", _records()[2:], CLASSES[:4] + ["horse"], "val")
    report = verify([lab.parent])
    assert_reported(report, lab.parent / "labels-train-00001.h5", "a", f"id also in {lab}")
    assert_reported(report, lab.parent / "labels-val-00000.h5", "c", "id also in")
    assert_reported(report, lab.parent / "labels-val-00000.h5", "attrs/classes", "differ from")


def test_ucm_shard_problems(shards):
    _, ucm = shards
    with h5py.File(ucm, "r+") as f:
        u = f["ucm2/a"][()]
        u[1, 1] ^= 1
        f["ucm2/a"][...] = u
        del f["ucm2/b"]
        f["ucm2"].create_dataset("b", data=np.zeros((10, 14), np.float32))
    report = verify([ucm])
    assert_reported(report, ucm, "ucm2/a", "checksum mismatch")
    assert_reported(report, ucm, "ucm2/b", "dtype float32, expected uint8")
    assert_reported(report, ucm, "ucm2/b", "shape (10, 14), expected (2H+1, 2W+1)")
    with h5py.File(ucm, "r+") as f:
        del f["ucm2/b"]
    assert_reported(verify([ucm]), ucm, "ucm2/b", "missing UCM of a listed id")


def test_a_flipped_byte_inside_a_compressed_map_is_caught(shards):
    lab, _ = shards
    with h5py.File(lab, "r") as f:
        info = f["label/a"].id.get_chunk_info(0)
    data = bytearray(lab.read_bytes())
    for k in range(info.byte_offset + 2, info.byte_offset + info.size - 1, 3):
        data[k] ^= 0x5A
    lab.write_bytes(bytes(data))
    report = verify([lab])
    assert [p.item for p in report.problems if p.item.startswith("label/")] and \
        {p.item for p in report.problems} <= {"label/a"}, lines(report)


def test_broken_files_and_leftovers_in_a_folder_do_not_stop_the_check(shards):
    lab, _ = shards
    folder = lab.parent
    good = lab.read_bytes()
    (folder / "labels-train-00001.h5").write_bytes(good[: len(good) // 2])
    (folder / "labels-train-00002.h5").write_bytes(b"not hdf5")
    (folder / ".labels-train-00003.h5.tmp-123-abcdef12").write_bytes(b"")
    (folder / "skipped.json").write_text("{oops")
    with h5py.File(folder / "other.h5", "w") as f:
        f.attrs["x"] = 1
    report = verify([folder, folder / "missing.h5"])
    assert_reported(report, folder / "labels-train-00001.h5", "", "corrupt or truncated shard")
    assert_reported(report, folder / "labels-train-00002.h5", "", "corrupt or truncated shard")
    assert_reported(report, folder / ".labels-train-00003.h5.tmp-123-abcdef12", "", "temporary file")
    assert_reported(report, folder / "skipped.json", "", "unreadable skip list")
    assert_reported(report, folder / "other.h5", "attrs/mixseg_format", "not a mixseg shard")
    assert_reported(report, folder / "missing.h5", "", "not found")
    assert not [p for p in report.problems if p.path == str(lab)]  # the good shard was still checked, clean
    assert report.images == 3


@pytest.mark.parametrize("shards", [2], indirect=True)
def test_format1_shards_without_checksums_are_read_and_noted(shards):
    lab, ucm = shards
    for path, name in ((lab, "checksums"), (ucm, "crc32")):
        with h5py.File(path, "r+") as f:
            f.attrs["format_version"] = 1
            del f[name]
    r, u = ShardReader(lab), UcmReader(ucm)
    assert r.ids == ["a", "b", "c"] and r.label("a").shape == (6, 8)
    assert u["a"].shape == (13, 17)
    r.close()
    u.close()
    report = verify([lab, ucm])
    assert report.problems == []
    assert [n.reason for n in report.notes] == ["no checksums recorded (format 1 shard): content not verified"] * 2
    assert CliRunner().invoke(main, ["verify", str(lab)]).exit_code == 0
    result = CliRunner().invoke(main, ["verify", "--strict", str(lab)])
    assert result.exit_code == 1 and "no checksums recorded" in result.output
    with h5py.File(lab, "r+") as f:
        f.attrs["format_version"] = 9
    assert_reported(verify([lab]), lab, "attrs/format_version", "9, this mixseg reads 1, 2, 3")
    with pytest.raises(InputError, match="labels-train-00000.h5: shard format version 9, this mixseg reads 1, 2, 3"):
        ShardReader(lab)


def test_the_reader_names_a_damaged_map(shards):
    lab, _ = shards
    with h5py.File(lab, "r") as f:
        info = f["label/a"].id.get_chunk_info(0)
    data = bytearray(lab.read_bytes())
    data[info.byte_offset:info.byte_offset + info.size] = b"\xff" * info.size  # not a deflate stream
    lab.write_bytes(bytes(data))
    r = ShardReader(lab)
    with pytest.raises(InputError, match=r"labels-train-00000.h5: corrupt data in label/a"):
        r.label("a")
    np.testing.assert_array_equal(r.label("b"), _records()[1]["label"])  # the rest still reads
    r.close()
    assert_reported(verify([lab]), lab, "label/a", "unreadable, corrupt data")


def test_verify_names_the_stage_skip_list_format(tmp_path, shards):
    lab, _ = shards
    (lab.parent / "skipped.json").write_text(json.dumps([{"id": "x", "path": "p", "reason": "r"}]))
    assert verify([lab.parent]).problems == []
    (lab.parent / "skipped.json").write_text(json.dumps([{"id": "x"}]))
    assert_reported(verify([lab.parent]), lab.parent / "skipped.json", "", "not a list of {id, path, reason}")


# ----------------------------------------------------------------------------- the folder's manifest (issue #14)

def _labels_folder(tmp_path, n=4):
    """A labels folder of ``n`` one-image shards and its manifest, as the labels stage writes it."""
    out = tmp_path / "lab"
    recs = _records()
    for k in range(n):
        rec = dict(recs[k % 3], id=f"im{k}")
        write_label_shard(out / f"labels-train-{k:05d}.h5", [rec], CLASSES, "train")
    manifest(out, "labels", skipped=0)
    (out / "skipped.json").write_text("[]")
    return out


def test_a_deleted_shard_is_reported_with_the_manifest(tmp_path):
    out = _labels_folder(tmp_path)
    assert verify([out]).problems == [] and verify([out]).notes == []
    (out / "labels-train-00003.h5").unlink()
    report = verify([out])
    assert lines(report) == [f"{out}/labels-train-00003.h5: listed in {out}/manifest.json but missing: "
                             "rerun the labels stage"]
    result = CliRunner().invoke(main, ["verify", str(out)])
    assert result.exit_code == 1 and result.stdout.splitlines() == lines(report)


def test_an_unlisted_changed_or_miscounted_shard_is_reported(tmp_path):
    out = _labels_folder(tmp_path)
    write_label_shard(out / "labels-train-00009.h5", [dict(_records()[2], id="zz")], CLASSES, "train")
    data = bytearray((out / "labels-train-00001.h5").read_bytes())
    data[-200] ^= 0x01                                     # same size, other bytes
    (out / "labels-train-00001.h5").write_bytes(bytes(data))
    with open(out / "labels-train-00002.h5", "ab") as f:  # another size
        f.write(b"\0" * 10)
    doc = json.loads((out / "manifest.json").read_text())
    doc["files"][0]["images"] = 2                          # another count
    (out / "manifest.json").write_text(json.dumps(doc))
    report = verify([out])
    m = f"{out}/manifest.json"
    assert_reported(report, out / "labels-train-00009.h5", "",
                    f"not listed in {m} (a file from another run?): rerun the labels stage")
    assert_reported(report, out / "labels-train-00001.h5", "", "file checksum mismatch (stored ")
    size = (out / "labels-train-00002.h5").stat().st_size
    assert_reported(report, out / "labels-train-00002.h5", "",
                    f"{size} bytes, {m} records {size - 10}: the shard was changed after the labels stage wrote "
                    "it; rerun the labels stage")
    assert_reported(report, out / "labels-train-00000.h5", "", f"holds 1 images, {m} lists 2: rerun the labels stage")


def test_a_folder_without_a_manifest_passes_with_a_note(shards):
    lab, ucm = shards
    (lab.parent / "manifest.json").unlink()
    report = verify([lab.parent, ucm.parent])
    assert report.problems == []
    assert [str(n) for n in report.notes] == [
        f"{lab.parent}: no manifest.json (an output of an older mixseg): a deleted or added shard cannot be "
        "detected; rerun the stage to record one"]
    assert CliRunner().invoke(main, ["verify", str(lab.parent)]).exit_code == 0
    assert CliRunner().invoke(main, ["verify", "--strict", str(lab.parent)]).exit_code == 1


def test_a_malformed_manifest_or_skip_count_is_reported(tmp_path):
    out = _labels_folder(tmp_path)
    (out / "skipped.json").write_text(json.dumps([{"id": "x", "path": "p", "reason": "r"}]))
    assert_reported(verify([out]), out / "skipped.json", "", f"lists 1 items, {out}/manifest.json records 0")
    (out / "manifest.json").write_text("{oops")
    assert_reported(verify([out]), out / "manifest.json", "", "unreadable shard manifest (")
    (out / "manifest.json").write_text(json.dumps({"manifest": 1, "stage": "labels", "shards": 1, "images": 1,
                                                   "files": [{"name": "x"}]}))
    assert_reported(verify([out]), out / "manifest.json", "", "not a mixseg shard manifest (bad file entry")
    (out / "manifest.json").write_text(json.dumps({"manifest": 1, "stage": "labels"}))
    assert_reported(verify([out]), out / "manifest.json", "", "not a mixseg shard manifest (missing or mistyped keys)")


def test_non_ascii_ids_verify_clean(tmp_path):
    recs = _records()
    ids = ["ünïcødé €漢字", "Ωmega-ß", "😀"]
    recs = sorted((dict(r, id=i) for r, i in zip(recs, ids)), key=lambda r: r["id"])
    write_label_shard(tmp_path / "labels-train-00000.h5", recs, CLASSES, "train")
    u = np.zeros((13, 17), np.uint8)
    write_ucm_shard(tmp_path / "ucm-00000.h5", sorted(ids), [u] * 3)
    report = verify([tmp_path / "labels-train-00000.h5", tmp_path / "ucm-00000.h5"])
    assert report.problems == [] and report.images == 6
    with h5py.File(tmp_path / "labels-train-00000.h5", "r+") as f:
        m = f[f"label/{ids[0]}"][()]
        m[0, 0] ^= 1
        f[f"label/{ids[0]}"][...] = m
    assert_reported(verify([tmp_path / "labels-train-00000.h5"]), tmp_path / "labels-train-00000.h5",
                    f"label/{ids[0]}", "checksum mismatch")

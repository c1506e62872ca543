"""Issue 14: causes that used to give a wrong result with exit 0, or a traceback (one test per cause)."""

from __future__ import annotations

import errno
import io
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.core import fileio
from pipeline.core.errors import InputError
from pipeline.core.fileio import atomic_path, decode_image, read_image, sweep_stale_temps, write_json
from pipeline.sources.vocxml import read_voc_xml


def png_bytes(arr, mode=None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def test_16_bit_greyscale_is_scaled_not_clipped():
    g = np.array([[0, 257, 32896], [65535, 1000, 65278]], np.uint16)
    out = decode_image(png_bytes(g), "g16.png")
    assert out.shape == (2, 3, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[..., 0], np.rint(g / 257.0).astype(np.uint8))
    assert (out[..., 0] == out[..., 2]).all()


def test_exif_orientation_is_applied():
    rgb = np.zeros((40, 80, 3), np.uint8)  # stored 80 wide, 40 high
    rgb[:, :10] = 255  # white band at the stored left edge
    im = Image.fromarray(rgb)
    exif = im.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise for display
    buf = io.BytesIO()
    im.save(buf, format="JPEG", exif=exif, quality=95)
    out = decode_image(buf.getvalue(), "rot.jpg")
    assert out.shape[:2] == (80, 40)  # as every viewer shows it
    assert out[:10].mean() > 200 and out[-10:].mean() < 50  # the stored left edge is now the top


def test_empty_and_text_files_get_a_clean_reason(tmp_path):
    for name, data, reason in (("empty.jpg", b"", "empty image file (0 bytes)"),
                               ("text.jpg", b"hello, not an image\n", "not an image file (unrecognised format)")):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(InputError) as e:
            read_image(tmp_path / name)
        assert str(e.value) == f"{tmp_path / name}: {reason}" and "BytesIO" not in str(e.value)


def test_a_folder_given_as_an_image(tmp_path):
    (tmp_path / "adir.jpg").mkdir()
    with pytest.raises(InputError, match="adir.jpg: is a folder, not an image file"):
        read_image(tmp_path / "adir.jpg")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_voc_xml_coordinates_name_the_file(tmp_path, value):
    xml = tmp_path / "a.xml"
    xml.write_text(f"<annotation><filename>a.jpg</filename><object><name>cat</name><bndbox><xmin>{value}</xmin>"
                   "<ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>")
    with pytest.raises(InputError, match=r"a\.xml: object 'cat' has a non-finite bndbox coordinate"):
        read_voc_xml(xml)


def test_a_zombie_writer_does_not_count_as_alive(tmp_path):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    try:
        for _ in range(100):  # wait until the child has exited (a zombie: not reaped yet)
            with open(f"/proc/{pid}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    break
            time.sleep(0.01)
        assert not fileio._pid_alive(pid)
        assert fileio._pid_alive(os.getpid())
        out = tmp_path / "data" / "labels"
        left = tmp_path / "data" / f".labels.tmp-{pid}-deadbeef"
        left.mkdir(parents=True)
        (left / "x.h5").write_bytes(b"partial")
        with atomic_path(out) as tmp:
            tmp.mkdir()
        assert not left.exists()
    finally:
        os.waitpid(pid, 0)


def test_every_command_sweeps_leftovers_of_dead_writers(tmp_path):
    # DVC may restore a stage from its run cache without running it: the next stage sweeps
    dead = 2 ** 22 + 12345  # above the default pid_max: no such process
    nested = tmp_path / "models" / "p"
    nested.mkdir(parents=True)
    leftovers = [tmp_path / "data" / f".ucm.tmp-{dead}-0badf00d", nested / f".model.pt.tmp-{dead}-12345678",
                 tmp_path / "metrics" / f".ucm.json.old-{dead}-abcdef01"]
    for p in leftovers:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    alive = tmp_path / "data" / f".labels.tmp-{os.getpid()}-00000000"
    alive.write_bytes(b"being written")
    removed = sweep_stale_temps(tmp_path / "data", tmp_path / "metrics", tmp_path / "models")
    assert sorted(removed) == sorted(leftovers) and alive.exists()


@pytest.mark.parametrize("error, reason", [
    (OSError(errno.ENOSPC, "No space left on device"), "no space left on the device"),
    (RuntimeError("Can't write data (file write failed: time = Mon, errno = 28, error message = 'No space')"),
     "no space left on the device"),
    (OSError(errno.EROFS, "Read-only file system"), "read-only file system"),
])
def test_write_failures_are_one_line_and_keep_the_old_output(tmp_path, error, reason):
    out = tmp_path / "metrics.json"
    write_json(out, {"old": 1})
    with pytest.raises(InputError) as e:
        with atomic_path(out) as tmp:
            tmp.write_text("half")
            raise error
    assert str(e.value) == f"{out}: cannot write the output: {reason}; the previous version is kept"
    assert out.read_text() == '{\n "old": 1\n}\n' and list(tmp_path.iterdir()) == [out]


def test_a_read_only_output_folder_is_refused_before_work(tmp_path, monkeypatch):
    def refuse(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")
    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(InputError, match="cannot write here \\(read-only file system\\)"):
        with atomic_path(tmp_path / "ro" / "data"):
            pytest.fail("the work must not start")


def test_a_mount_point_as_output_is_refused_before_work(tmp_path, monkeypatch):
    out = tmp_path / "mnt"
    out.mkdir()
    monkeypatch.setattr(os.path, "ismount", lambda p: Path(p) == out)
    with pytest.raises(InputError, match="is a mount point"):
        with atomic_path(out):
            pytest.fail("the work must not start")


def test_a_permission_error_while_the_caller_works_is_not_blamed_on_the_output(tmp_path):
    # e.g. an input image the stage cannot read: its own error, not "cannot write the output"
    out = tmp_path / "out.json"
    with pytest.raises(PermissionError):
        with atomic_path(out) as tmp:
            tmp.write_text("half")
            raise PermissionError(errno.EACCES, "Permission denied", "data/raw/x.jpg")
    assert not out.exists() and list(tmp_path.iterdir()) == []

"""Atomic writes, image decoding and content hashes.

Outputs are written to a temporary name in the destination folder and renamed
into place, so a crash never leaves a half-written file or folder where a reader
(or DVC) would take it for a finished one.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import io
import json
import os
import shutil
import sys
import uuid
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from pipeline.core.errors import InputError


_TEMP_TAGS = ("tmp", "old")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def remove_stale_temps(path) -> list[Path]:
    """Remove the temporaries of ``path`` left by a writer that was killed.

    Temporaries are named ``.<name>.tmp-<pid>-<hex>`` (being written) or
    ``.<name>.old-<pid>-<hex>`` (the previous version, being deleted); those of a
    process that no longer runs are removed.  Returns what was removed.
    """
    path = Path(path)
    removed = []
    if not path.parent.is_dir():
        return removed
    prefix = f".{path.name}."
    for p in path.parent.iterdir():
        if not p.name.startswith(prefix):
            continue
        rest = p.name[len(prefix):]
        tag, _, tail = rest.partition("-")
        if tag not in _TEMP_TAGS:
            continue
        pid = tail.split("-")[0]
        if pid.isdigit() and "-" in tail and _pid_alive(int(pid)):
            continue
        _remove(p)
        removed.append(p)
    return removed


def _fsync(path: Path) -> None:
    """Flush a file (or a folder's entries) to disk; best effort where the OS refuses."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover  (some filesystems refuse fsync on folders)
        pass
    finally:
        os.close(fd)


_RENAME_EXCHANGE = 2
_renameat2 = None


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    global _renameat2
    if _renameat2 is None:
        _renameat2 = False
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                fn = libc.renameat2
                fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
                fn.restype = ctypes.c_int
                _renameat2 = fn
            except (OSError, AttributeError):  # pragma: no cover  (old glibc)
                pass
    if not _renameat2:
        return False
    at_fdcwd = -100
    if _renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):  # pragma: no cover
        return False
    raise OSError(err, os.strerror(err), os.fspath(b))  # pragma: no cover


def _temp_name(path: Path, tag: str) -> Path:
    return path.with_name(f".{path.name}.{tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; move it to ``path`` on success.

    Works for files and folders.  On an exception the temporary is removed and
    ``path`` is left as it was.  Crash safety: at every instant ``path`` is either
    the complete old version or the complete new one -- a folder replaces the old
    folder with one atomic exchange (Linux ``renameat2``; elsewhere two renames,
    with a moment where ``path`` is absent, never half-deleted).  The new file is
    flushed to disk before it is renamed into place, and temporaries left by a
    killed writer are removed by the next write of the same path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    tmp = _temp_name(path, "tmp")
    try:
        yield tmp
        if tmp.is_file():
            _fsync(tmp)
        if path.is_dir() and not path.is_symlink():
            if _exchange(tmp, path):  # tmp now holds the old folder
                _fsync(path.parent)
                shutil.rmtree(tmp, ignore_errors=True)
                return
            old = _temp_name(path, "old")
            os.replace(path, old)
            os.replace(tmp, path)
            _fsync(path.parent)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
            _fsync(path.parent)
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def write_json(path, obj) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=1, sort_keys=False)
            f.write("\n")


def read_json(path):
    path = Path(path)
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except json.JSONDecodeError as e:
        raise InputError(path, f"not valid JSON ({e})") from None


def file_md5(path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def decode_image(data: bytes, path="<bytes>") -> np.ndarray:
    """Decode encoded image bytes to an (H, W, 3) uint8 RGB array.

    Truncated or corrupt data raises :class:`InputError` naming ``path``.
    """
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            if im.mode != "RGB":
                im = im.convert("RGB")
            return np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise InputError(path, f"unreadable or truncated image ({e})") from None


def read_image(path) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB; bad files raise InputError."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError(path, "image file not found") from None
    return decode_image(data, path)


def read_label_png(path) -> np.ndarray:
    """Read a single-channel (or palette) PNG as its (H, W) index array, without colour conversion."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("P", "L", "I;16", "I"):
                return np.asarray(im)
            raise InputError(path, f"label image must be single-channel or palette, got mode {im.mode}")
    except FileNotFoundError:
        raise InputError(path, "mask file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise InputError(path, f"unreadable or truncated mask ({e})") from None


def voc_palette() -> np.ndarray:
    """The PASCAL VOC colour map: (256, 3) uint8, index 255 is the void colour (224, 224, 192)."""
    pal = np.zeros((256, 3), np.uint8)
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    return pal


def write_palette_png(path, index_map: np.ndarray) -> None:
    """Write an (H, W) uint8 index map as a VOC-palette PNG (atomically)."""
    im = Image.fromarray(np.asarray(index_map, np.uint8), mode="P")
    im.putpalette(voc_palette().ravel().tolist())
    with atomic_path(path) as tmp:
        im.save(tmp, format="PNG")

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
from PIL import Image, ImageOps, UnidentifiedImageError

from pipeline.core.errors import InputError


_TEMP_TAGS = ("tmp", "old")


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie -- killed, not yet reaped -- does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:  # "<pid> (<name>) <state> ...": Z = zombie, X = dead
            return f.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except (OSError, IndexError):  # no /proc (macOS): trust kill()
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


def sweep_stale_temps(*roots, depth: int = 2) -> list[Path]:
    """Remove the temporaries of killed writers anywhere under ``roots`` (``depth`` levels:
    the stages write ``data/<out>``, ``metrics/eval/<v>.json``, ``models/<v>/model.pt``; a
    dataset under ``data/raw/<set>/`` is not walked).

    Every command runs this on the project's output folders before it starts, so
    leftovers never outlive the next run of any stage -- even when DVC restored the
    stage that left them from its run cache instead of running it.
    """
    removed = []
    for root in map(Path, roots):
        if not root.is_dir():
            continue
        folders = [root]
        for level in range(depth):
            subfolders = []
            for folder in folders:
                try:
                    entries = list(folder.iterdir())
                except OSError:
                    continue
                for p in entries:
                    name, _, rest = p.name.partition(".tmp-") if ".tmp-" in p.name else p.name.partition(".old-")
                    if p.name.startswith(".") and rest:
                        removed += remove_stale_temps(p.with_name(name[1:]))
                    elif p.is_dir() and not p.is_symlink() and not p.name.startswith("."):
                        subfolders.append(p)
            folders = subfolders
    return removed


#: errno values that mean "the output cannot be written here", reported as one line.
_WRITE_ERRNOS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
                 errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
                 errno.EPERM: "operation not permitted", errno.EBUSY: "device or resource busy"}


#: Reasons that can only concern the output being written.
_DISK_REASONS = {_WRITE_ERRNOS[errno.ENOSPC], _WRITE_ERRNOS[errno.EDQUOT], _WRITE_ERRNOS[errno.EROFS]}


def _write_error(e: BaseException) -> str | None:
    """The reason of an error that means the output could not be written, else None
    (h5py reports a full disk as ``RuntimeError: ... errno = 28``)."""
    if isinstance(e, OSError) and e.errno in _WRITE_ERRNOS:
        return _WRITE_ERRNOS[e.errno]
    text = str(e)
    for code, reason in _WRITE_ERRNOS.items():
        if f"errno = {code}," in text or f"errno = {code})" in text or os.strerror(code) in text:
            return reason
    return None


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
    if os.path.ismount(path):
        raise InputError(path, "is a mount point, which cannot be replaced atomically: use a folder inside it "
                               "(or mount the volume one level up)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path)
    except OSError as e:
        raise InputError(path, f"cannot write here ({_write_error(e) or e.strerror or e})") from None
    tmp = _temp_name(path, "tmp")
    moving = False  # False while the caller writes: errors there may come from reading its inputs
    try:
        yield tmp
        moving = True
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
    except (OSError, RuntimeError) as e:
        reason = _write_error(e)
        # while the caller works, only a full or read-only disk is surely about the output; a
        # permission error could be an input's, and must keep that file's name
        if reason is None or not (moving or reason in _DISK_REASONS):
            raise
        raise InputError(path, f"cannot write the output: {reason}; the previous version is kept") from None
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            with contextlib.suppress(OSError):
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


def _to_rgb8(im: Image.Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a decoded image; 16- and 32-bit greyscale scaled to 0..255."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im, np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
        if im.mode == "F":
            top = 1.0 if a.max(initial=0) <= 1.0 else top
        g = np.clip(np.rint(a * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    return np.asarray(im if im.mode == "RGB" else im.convert("RGB"))


def decode_image(data: bytes, path="<bytes>") -> np.ndarray:
    """Decode encoded image bytes to an (H, W, 3) uint8 RGB array, as viewers show it.

    The EXIF orientation is applied (a JPEG stored 80x40 with Orientation 6 comes out
    40x80, as in COCO/VOC tooling and every viewer), and 16-bit greyscale is scaled to
    8 bits (value / 257), not clipped.  Empty, non-image, truncated or corrupt data
    raises :class:`InputError` naming ``path``.
    """
    if not data:
        raise InputError(path, "empty image file (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return _to_rgb8(ImageOps.exif_transpose(im))
    except UnidentifiedImageError:
        raise InputError(path, "not an image file (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(path, f"unreadable or truncated image ({e})") from None


def read_image(path) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB; bad files raise InputError."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError(path, "image file not found") from None
    except IsADirectoryError:
        raise InputError(path, "is a folder, not an image file") from None
    except OSError as e:
        raise InputError(path, f"image file unreadable ({e.strerror or e})") from None
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

"""Atomic writes, image decoding and content hashes.

Outputs are written to a temporary name in the destination folder and renamed
into place, so a crash never leaves a half-written file or folder where a reader
(or DVC) would take it for a finished one.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import InputError


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; rename it to ``path`` on success.

    Works for files and folders.  On an exception the temporary is removed and
    ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.is_dir():
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

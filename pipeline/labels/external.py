"""The ``external`` box strategy: object masks supplied by the user.

``labels.external_dir`` holds one file per box-subset image, named after the
image id (``<id>`` as in ``data/source/images.json``):

* ``<id>.png`` -- a single-channel (grey or palette) PNG of the image's size.
  ``labels.external_format: class`` (the default) reads it as a class map
  (VOC ``SegmentationClass`` style: 0 background, ``c`` class index of the
  dataset's class list, 255 void): a box of class ``c`` takes the pixels of value
  ``c`` inside it.  ``labels.external_format: instance`` reads it as an instance
  map (VOC ``SegmentationObject`` style: 0 background, 1..254 instance ids, 255
  void): a box takes the instance with the most pixels inside it.  In both, void
  pixels inside the box are uncertain (ignored), the rest of the box background.
* ``<id>.npz`` -- object proposals (e.g. MCG, SAM): ``masks``, an (N, H, W) array
  (bool or 0/1), and optionally ``box_index``, (N,) int: mask k belongs to box
  ``box_index[k]`` (the image's boxes in index order; several masks of one box are
  united).  Without ``box_index`` each box takes the proposal whose bounding box
  has the highest IoU with it.

Each box's confident mask is its mask clipped to the box.  A box whose mask is
empty inside it takes the whole box and is counted as a fallback.  When both
files exist the PNG is used.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from pipeline.core.errors import InputError
from pipeline.core.fileio import read_label_png

FORMATS = ("class", "instance")
VOID = 255


class ExternalMasks:
    """One image's external masks: a class map, an instance map or proposals."""

    def __init__(self, kind: str, data: np.ndarray, box_index: np.ndarray | None = None):
        if kind not in ("class", "instance", "proposals"):
            raise ValueError(f"unknown external mask kind {kind!r}")
        self.kind, self.data, self.box_index = kind, data, box_index

    @classmethod
    def class_map(cls, arr) -> "ExternalMasks":
        return cls("class", np.asarray(arr))

    @classmethod
    def instance_map(cls, arr) -> "ExternalMasks":
        return cls("instance", np.asarray(arr))

    @classmethod
    def proposals(cls, masks, box_index=None) -> "ExternalMasks":
        return cls("proposals", np.asarray(masks).astype(bool),
                   None if box_index is None else np.asarray(box_index, np.int64))

    @property
    def shape(self):
        return self.data.shape[-2:]

    def box_masks(self, boxes, shape):
        """Per box ``(confident, uncertain or None)`` boolean crops and the fallback flags."""
        if tuple(self.shape) != tuple(shape):
            raise ValueError(f"external masks are {tuple(self.shape)}, the image is {tuple(shape)}")
        boxes = np.asarray(boxes, np.int64).reshape(-1, 5)
        out, fallback = [], np.zeros(len(boxes), bool)
        if self.kind == "proposals":
            chosen = self._proposals_of(boxes)
        for i, (x0, y0, x1, y1, c) in enumerate(boxes):
            unc = None
            if self.kind == "class":
                crop = self.data[y0:y1, x0:x1]
                conf = crop == c
                unc = crop == VOID
            elif self.kind == "instance":
                crop = self.data[y0:y1, x0:x1]
                unc = crop == VOID
                ids = crop[(crop != 0) & ~unc]
                if ids.size:
                    counts = np.bincount(ids.astype(np.int64))
                    conf = crop == int(np.argmax(counts))  # most pixels; ties: smallest id
                else:
                    conf = np.zeros(crop.shape, bool)
            else:
                conf = np.zeros((y1 - y0, x1 - x0), bool)
                for k in chosen[i]:
                    conf |= self.data[k, y0:y1, x0:x1]
            if not conf.any():
                conf = np.ones((y1 - y0, x1 - x0), bool)
                unc = None
                fallback[i] = True
            out.append((conf, None if unc is None else unc & ~conf))
        return out, fallback

    def _proposals_of(self, boxes) -> list[list[int]]:
        n = len(self.data)
        if self.box_index is not None:
            return [list(np.flatnonzero(self.box_index == i)) for i in range(len(boxes))]
        if n == 0:
            return [[] for _ in boxes]
        rows = self.data.any(2)
        cols = self.data.any(1)
        nonempty = rows.any(1)
        py0 = np.argmax(rows, 1)
        py1 = rows.shape[1] - np.argmax(rows[:, ::-1], 1)
        px0 = np.argmax(cols, 1)
        px1 = cols.shape[1] - np.argmax(cols[:, ::-1], 1)
        parea = (py1 - py0) * (px1 - px0)
        chosen = []
        for x0, y0, x1, y1, _ in boxes:
            iw = np.clip(np.minimum(px1, x1) - np.maximum(px0, x0), 0, None)
            ih = np.clip(np.minimum(py1, y1) - np.maximum(py0, y0), 0, None)
            inter = iw * ih
            iou = np.where(nonempty, inter / np.maximum(parea + (x1 - x0) * (y1 - y0) - inter, 1), -1.0)
            k = int(np.argmax(iou))
            chosen.append([k] if iou[k] > 0 else [])
        return chosen


def load_external_masks(folder, image_id: str, height: int, width: int, fmt: str = "class",
                        num_boxes: int | None = None) -> ExternalMasks:
    """Read ``<folder>/<image_id>.png`` (or ``.npz``); bad or missing files raise InputError."""
    if fmt not in FORMATS:
        raise InputError("params.yaml", f"labels.external_format must be one of {FORMATS}, not {fmt!r}")
    if folder is None:
        raise InputError("params.yaml", "labels.strategy external needs labels.external_dir")
    folder = Path(folder)
    png, npz = folder / f"{image_id}.png", folder / f"{image_id}.npz"
    if png.is_file():
        arr = read_label_png(png)
        if arr.shape != (height, width):
            raise InputError(png, f"external mask is {arr.shape[1]}x{arr.shape[0]}, image is {width}x{height}")
        return ExternalMasks.class_map(arr) if fmt == "class" else ExternalMasks.instance_map(arr)
    if npz.is_file():
        try:
            with np.load(npz, allow_pickle=False) as z:
                if "masks" not in z.files:
                    raise InputError(npz, f"no array 'masks' in the .npz (has {z.files})")
                masks = z["masks"]
                box_index = z["box_index"] if "box_index" in z.files else None
        except InputError:
            raise
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
            raise InputError(npz, f"unreadable .npz file ({e})") from None
        if masks.ndim == 2:
            masks = masks[None]
        if masks.ndim != 3 or masks.shape[1:] != (height, width):
            raise InputError(npz, f"'masks' must be (N, {height}, {width}), got {masks.shape}")
        if box_index is not None:
            box_index = np.asarray(box_index)
            if box_index.shape != (len(masks),) or not np.issubdtype(box_index.dtype, np.integer):
                raise InputError(npz, f"'box_index' must be ({len(masks)},) integers, got {box_index.shape} "
                                      f"{box_index.dtype}")
            if num_boxes is not None and len(box_index) and (box_index.min() < 0 or box_index.max() >= num_boxes):
                raise InputError(npz, f"'box_index' refers to box {int(box_index.max())}, the image has "
                                      f"{num_boxes} boxes")
        return ExternalMasks.proposals(masks, box_index)
    if not folder.is_dir():
        raise InputError(folder, "labels.external_dir not found")
    raise InputError(png, f"external mask of image {image_id} not found (expected {png.name} or {npz.name})")

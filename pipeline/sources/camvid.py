"""CamVid, as distributed with the SegNet tutorial, as a :class:`Dataset`.

Layout under ``root``: ``train/ trainannot/ val/ valannot/ test/ testannot/``; images
are 360x480 PNGs, annotations single-channel PNGs of the same name with the ids of
:data:`CAMVID_IDS` (11 = void).

CamVid has no boxes; the chosen "thing" classes get boxes from their masks: the
bounding box of every 8-connected component of a thing class whose area is at least
``min_area`` pixels.  The class maps are read through a lookup table: thing ids
become classes 1..len(things), void becomes 255, every other class is background.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import scipy.ndimage as ndi

from pipeline.core.config import CamvidOptions
from pipeline.core.errors import InputError
from pipeline.core.fileio import read_label_png
from pipeline.core.index import VOID, Dataset, Item, MaskRef

CAMVID_IDS = {"sky": 0, "building": 1, "pole": 2, "road": 3, "pavement": 4, "tree": 5, "signsymbol": 6,
              "fence": 7, "car": 8, "pedestrian": 9, "bicyclist": 10}
CAMVID_VOID = 11


def _camvid_id(name: str) -> int:
    key = re.sub(r"[^a-z]", "", str(name).lower())  # "Sign/Symbol" -> "signsymbol"
    if key not in CAMVID_IDS:
        raise InputError("params.yaml", f"unknown CamVid class {name!r} (classes: {', '.join(CAMVID_IDS)})")
    return CAMVID_IDS[key]


def camvid_lut(things) -> list[int]:
    """Lookup table (256 entries) from CamVid ids to class indices.

    Thing ``things[k]`` maps to ``k + 1``, the void id 11 and any value above it to
    255, every other CamVid class to 0 (background).
    """
    lut = [0] * CAMVID_VOID + [VOID] * (256 - CAMVID_VOID)
    for k, name in enumerate(things):
        lut[_camvid_id(name)] = k + 1
    return lut


def component_boxes(labels: np.ndarray, ids, min_area: int) -> list[tuple[int, int, int, int, int]]:
    """Boxes of the 8-connected components of each id in a label map.

    Parameters
    ----------
    labels : (H, W) integer array
        Raw label map.
    ids : sequence of int
        ``ids[k]`` is the raw value of class ``k + 1``.
    min_area : int
        Components with fewer pixels are dropped.

    Returns
    -------
    list of (x0, y0, x1, y1, c)
        0-based end-exclusive, ordered by class, then by component (raster order of
        each component's first pixel).
    """
    boxes = []
    structure = np.ones((3, 3), bool)
    for k, value in enumerate(ids):
        components, n = ndi.label(labels == value, structure=structure)
        if n == 0:
            continue
        areas = np.bincount(components.ravel(), minlength=n + 1)
        for j, slices in enumerate(ndi.find_objects(components), start=1):
            if areas[j] >= min_area:
                rows, cols = slices
                boxes.append((cols.start, rows.start, cols.stop, rows.stop, k + 1))
    return boxes


def load_camvid(root, things=CamvidOptions.things, min_area=CamvidOptions.min_area,
                train_dirs=CamvidOptions.train_dirs, val_dirs=CamvidOptions.val_dirs) -> Dataset:
    """Read the SegNet copy of CamVid into a :class:`Dataset`.

    Parameters
    ----------
    root : path
        Folder holding ``<dir>/`` image and ``<dir>annot/`` annotation folders.
    things : sequence of str
        CamVid classes that become dataset classes 1..len(things) (with boxes).
    min_area : int
        Smallest component area (pixels) that gets a box.
    train_dirs, val_dirs : sequence of str
        Image folders of the train and val splits; folders that do not exist are
        skipped, but at least one must exist.

    Returns
    -------
    Dataset
        Classes ``["background", *things]``; items sorted by folder then id (the file
        stem), each with MaskRef format ``"png"`` and the :func:`camvid_lut` table, and
        boxes from :func:`component_boxes`, ``box_file`` the annotation PNG.

    Raises
    ------
    InputError
        None of the folders exists, an annotation folder or file is missing or
        unreadable, or a class name is unknown.
    """
    root = Path(root)
    things = list(things)
    ids = [_camvid_id(name) for name in things]
    if len(set(ids)) != len(ids):
        raise InputError("params.yaml", f"CamVid thing classes repeat: {things}")
    lut = camvid_lut(things)
    items, found = [], []
    for split, dirs in (("train", train_dirs), ("val", val_dirs)):
        for name in dirs:
            image_dir, annot_dir = root / name, root / f"{name}annot"
            if not image_dir.is_dir():
                continue
            found.append(name)
            if not annot_dir.is_dir():
                raise InputError(annot_dir, f"annotation folder of {image_dir} not found")
            for image in sorted(p for p in image_dir.iterdir() if p.suffix.lower() == ".png"):
                annot = annot_dir / image.name
                if not annot.is_file():
                    raise InputError(annot, f"annotation of image {image} not found")
                boxes = component_boxes(read_label_png(annot), ids, min_area)
                items.append(Item(id=image.stem, image=str(image), split=split,
                                  mask=MaskRef(str(annot), "png", lut), boxes=boxes, box_file=str(annot)))
    if not found:
        raise InputError(root, f"none of the CamVid folders {list(train_dirs) + list(val_dirs)} exists")
    return Dataset(classes=["background"] + things, items=items, root=str(root))

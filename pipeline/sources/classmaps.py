"""Any fully labelled dataset -- images plus single-channel class maps -- as a :class:`Dataset`.

``source.classmaps`` (:class:`pipeline.core.config.ClassmapsOptions`) names, under ``root``,
(image folder, class-map folder) pairs for the train and the val split::

    <images>/<id>.<ext>      jpg, jpeg, png, bmp, ppm, tif, tiff; the id is the file stem
    <classmaps>/<id>.png     single-channel (grey, palette or 16-bit) PNG, the image's size:
                             value k = ``classes[k]``, ``void`` = unlabelled

MSRC-v2 (``images`` + ``classmaps``), CamVid's SegNet copy (``train`` + ``trainannot``, void
11), Cityscapes-style trainId maps and the like all read this way.  ``val_list`` (ids, one a
line) moves those ids to the val split.

Boxes, as for CamVid (:func:`pipeline.sources.camvid.component_boxes`): the bounding box of
every 8-connected component of at least ``min_area`` pixels of each class in ``things``
(``[]``: every class).  Tags are the classes present (derived from the mask by the index).

The class maps are stored as they are and read through a lookup table (``MaskRef.lut``):

* ``background: true`` -- the dataset is ``["background", *things]``: thing ``things[k]``
  becomes class ``k + 1``, every other class background (0), void 255.  The convention for
  judging box labels (MSRC's and CamVid's READMEs).
* ``background: false`` -- the class list as it is: value ``k`` is the dataset class
  ``classes[k]``.  The index format reserves class 0 for the background, so when the list
  does not start with ``background`` one is put before it that no pixel has (as the SIFT
  Flow reader does): value ``k`` becomes class ``k + 1``.  Every labelled pixel keeps its
  own class.

A class-map value that is neither a class (``0..len(classes)-1``) nor ``void`` is an
:class:`InputError` naming the map; a map of another size than its image is caught by the
index (:func:`pipeline.core.index.write_index`), also naming the map.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.core.config import ClassmapsOptions
from pipeline.core.errors import InputError
from pipeline.core.fileio import read_label_png
from pipeline.core.index import VOID, Dataset, Item, MaskRef
from pipeline.sources.boxfiles import image_files, resolve_path
from pipeline.sources.camvid import component_boxes
from pipeline.sources.voc import read_id_list

BACKGROUND = "background"


def classmap_classes(classes, things=(), background=True, void=None) -> tuple[list[str], list[int], list[int]]:
    """The dataset's classes, the class of each class-map value and the values that get boxes.

    Parameters
    ----------
    classes : sequence of str
        Class names by class-map value.
    things : sequence of str
        Classes with boxes; ``[]``: every class (but one named ``background``).
    background : bool
        See the module docstring.
    void : int, optional
        The void value; a class listed at that value (``classes[void]``, e.g. CamVid's
        ``void`` at 11) is no class: never a thing.

    Returns
    -------
    names : list of str
        The dataset's classes, ``names[0]`` the background.
    value_class : list of int
        ``value_class[k]``: the dataset class of class-map value ``k`` (0 = background).
    box_values : list of int
        The class-map values whose components become boxes, in the order of ``things``.

    Raises
    ------
    InputError
        ``params.yaml``: duplicate or unknown names, or a thing that would be the background.
    """
    classes = [str(c) for c in classes]
    where = "params.yaml"
    if not classes:
        raise InputError(where, "source.classmaps.classes is empty")
    if len(set(classes)) != len(classes):
        dup = next(c for c in classes if classes.count(c) > 1)
        raise InputError(where, f"source.classmaps.classes: {dup!r} appears twice")
    unknown = [t for t in things if t not in classes]
    if unknown:
        raise InputError(where, f"source.classmaps.things: {unknown} not in classes ({', '.join(classes)})")
    if len(set(things)) != len(list(things)):
        raise InputError(where, f"source.classmaps.things repeat: {list(things)}")
    void_name = classes[void] if void is not None and 0 <= void < len(classes) else None
    if void_name is not None and void_name in things:
        raise InputError(where, f"source.classmaps.things: {void_name!r} is the void value ({void})")
    things = list(things) or [c for c in classes if c.lower() != BACKGROUND and c != void_name]
    if background:
        if any(t.lower() == BACKGROUND for t in things):
            raise InputError(where, "source.classmaps.things: 'background' cannot be a thing when background: true")
        names = [BACKGROUND] + things
        value_class = [names.index(c) if c in things else 0 for c in classes]
    else:
        shift = 0 if classes[0].lower() == BACKGROUND else 1
        if shift == 0 and classes[0] in things:
            raise InputError(where, f"source.classmaps.things: {classes[0]!r} is the background (class 0), "
                                    f"which has no boxes")
        names = [BACKGROUND] * shift + classes
        value_class = [k + shift for k in range(len(classes))]
    return names, value_class, [classes.index(t) for t in things]


def classmap_lut(value_class, void: int, max_value: int) -> list[int]:
    """Lookup table for a class map whose largest value is ``max_value``: entry ``k`` is
    ``value_class[k]``, ``void`` maps to 255, and so do the values in between (the reader
    refuses maps holding them).  256 entries (as CamVid's), more for a 16-bit map with
    larger values."""
    lut = [VOID] * max(256, len(value_class), int(max_value) + 1)
    lut[:len(value_class)] = list(value_class)
    if void < len(lut):
        lut[void] = VOID
    return lut


def check_classmap(raw: np.ndarray, path, num_values: int, void: int) -> None:
    """A one-line :class:`InputError` naming ``path`` if ``raw`` holds a value that is
    neither a class (``0..num_values-1``) nor ``void``."""
    values = np.unique(raw)
    bad = values[((values < 0) | (values >= num_values)) & (values != void)]
    if len(bad):
        raise InputError(path, f"class-map value {int(bad[0])} is neither a class (0..{num_values - 1}) "
                               f"nor void ({void})" + (f"; {len(bad)} such values" if len(bad) > 1 else ""))


def load_classmaps(root, train=ClassmapsOptions.train, val=ClassmapsOptions.val, val_list=None,
                   classes=ClassmapsOptions.classes, void=ClassmapsOptions.void, things=ClassmapsOptions.things,
                   min_area=ClassmapsOptions.min_area, background=ClassmapsOptions.background) -> Dataset:
    """Read image / class-map folder pairs into a :class:`Dataset` (module docstring).

    Parameters
    ----------
    root : path
        Dataset folder; the folders and ``val_list`` are taken relative to it
        (:func:`pipeline.sources.boxfiles.resolve_path`).
    train, val : sequence of (image folder, class-map folder)
        The pairs of each split; ``train`` must not be empty.
    val_list : path, optional
        Ids (one a line) that go to the val split.
    classes : sequence of str
        Class names by class-map value.
    void : int
        The class-map value of unlabelled pixels.
    things : sequence of str
        Classes that get boxes (``[]``: every class).
    min_area : int
        Smallest component (pixels) that gets a box.
    background : bool
        ``true``: ``background`` + things; ``false``: the class list as it is.

    Returns
    -------
    Dataset
        Items in pair order, then by id; MaskRef format ``"png"`` with the lookup table of
        :func:`classmap_lut`; boxes ``(x0, y0, x1, y1, c)`` 0-based end-exclusive, ordered
        by thing then component; ``box_file`` the class map.

    Raises
    ------
    InputError
        Naming the folder or file at fault: a missing folder, an image without a class map
        (or a class map without an image), two images with one id, an unreadable class map
        or one with a value that is no class and not void, a val-list id with no image.
    """
    root = Path(root)
    if not train:
        raise InputError("params.yaml", "source.classmaps.train: no (image folder, class-map folder) pair")
    names, value_class, box_values = classmap_classes(classes, things, background, void)
    # component_boxes numbers the boxes 1..len(box_values); this maps them to the dataset's classes
    box_class = [0] + [value_class[v] for v in box_values]
    items = []
    for split, pairs in (("train", train), ("val", val)):
        for pair in pairs:
            if len(pair) != 2:
                raise InputError("params.yaml", f"source.classmaps.{split}: expected (image folder, class-map "
                                                f"folder) pairs, got {list(pair)!r}")
            image_dir, map_dir = resolve_path(root, pair[0]), resolve_path(root, pair[1])
            if not image_dir.is_dir():
                raise InputError(image_dir, "image folder not found")
            if not map_dir.is_dir():
                raise InputError(map_dir, f"class-map folder of {image_dir} not found")
            files = image_files(image_dir)
            if not files:
                raise InputError(image_dir, "no images in the folder")
            for p in sorted(map_dir.glob("*.png")):
                if p.stem not in files:
                    raise InputError(p, f"class map of id {p.stem!r} has no image in {image_dir}")
            for image_id, image in files.items():
                path = map_dir / f"{image_id}.png"
                if not path.is_file():
                    raise InputError(path, f"class map of image {image} not found")
                raw = read_label_png(path)
                if raw.ndim != 2:
                    raise InputError(path, f"class map must be 2-D, got shape {raw.shape}")
                check_classmap(raw, path, len(classes), void)
                boxes = [(x0, y0, x1, y1, box_class[c])
                         for x0, y0, x1, y1, c in component_boxes(raw, box_values, min_area)]
                lut = classmap_lut(value_class, void, raw.max() if raw.size else 0)
                items.append(Item(id=image_id, image=str(image), split=split,
                                  mask=MaskRef(str(path), "png", lut), boxes=boxes, box_file=str(path)))
    if val_list:
        val_path = resolve_path(root, val_list)
        val_ids = set(read_id_list(val_path))
        unknown = sorted(val_ids - {item.id for item in items})
        if unknown:
            raise InputError(val_path, f"image id {unknown[0]!r} has no image in the dataset"
                                       + (f" ({len(unknown)} such ids)" if len(unknown) > 1 else ""))
        for item in items:
            if item.id in val_ids:
                item.split = "val"
    # background: false with a placeholder class 0 -> no pixel is background (see Dataset.background)
    real_background = background or classes[0].lower() == BACKGROUND
    return Dataset(classes=names, items=items, root=str(root), background=real_background)

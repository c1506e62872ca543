"""PASCAL VOC 2012 (with the optional SBD augmentation) as a :class:`Dataset`.

Layout read under ``root``::

    VOCdevkit/VOC2012/
        JPEGImages/<id>.jpg
        SegmentationClass/<id>.png      palette PNG, class indices 0..20, 255 = void
        SegmentationObject/<id>.png     palette PNG, instance 1..n in XML object order,
                                        0 = background, 255 = void
        Annotations/<id>.xml            boxes, 1-based inclusive
        ImageSets/Segmentation/{train,val}.txt
        classes.txt                     optional: one class name a line, background first
    benchmark_RELEASE/dataset/          optional, the SBD release
        cls/<id>.mat                    struct GTcls, field Segmentation (H, W), 0..20
        inst/<id>.mat                   struct GTinst, fields Segmentation (H, W) with
                                        instance 1..n, and Categories (n,) class indices
        train.txt, val.txt

With SBD, the training split is the usual ``train_aug`` set: SBD train, SBD val and
VOC segmentation train together, minus the VOC segmentation val images (10,582
images on the real data); the val split is VOC segmentation val (1,449 images).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

from pipeline.core.errors import InputError
from pipeline.core.fileio import read_label_png
from pipeline.core.index import VOID, Dataset, Item, MaskRef
from pipeline.sources.vocxml import read_voc_xml

VOC_CLASSES = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
               "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
               "sheep", "sofa", "train", "tvmonitor"]
BOX_MODES = ("auto", "xml", "instances")


def read_id_list(path) -> list[str]:
    """Read an image-id list: one id a line, the first token of each non-blank line.

    The first-token rule also reads VOC ``ImageSets/Main`` lists (``<id> <flag>``).
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InputError(path, "image list not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(path, f"unreadable image list ({e})") from None
    return [line.split()[0] for line in text.splitlines() if line.strip()]


def read_class_list(path) -> list[str]:
    """Read class names, one a line; ``background`` is prepended unless it comes first.

    Returns the class list with the background at index 0.  Blank lines are skipped;
    duplicate names raise :class:`InputError`.
    """
    path = Path(path)
    try:
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        raise InputError(path, "class list not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(path, f"unreadable class list ({e})") from None
    if not names:
        raise InputError(path, "class list is empty")
    if names[0].lower() != "background":
        names = ["background"] + names
    seen = set()
    for name in names:
        if name in seen:
            raise InputError(path, f"duplicate class name {name!r}")
        seen.add(name)
    return names


def load_mat(path) -> dict:
    """Load a MATLAB file with structs as attribute objects; errors name the file."""
    try:
        return scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except Exception as e:  # scipy raises several types for a corrupt .mat
        raise InputError(path, f"unreadable .mat file ({e})") from None


def mask_boxes(instances: np.ndarray, classes_of) -> list[tuple[int, int, int, int, int]]:
    """Bounding boxes of the instances of an instance map.

    Parameters
    ----------
    instances : (H, W) integer array
        Instance index per pixel; 0 is background, 255 is void, others are instances.
    classes_of : callable
        ``classes_of(k, pixels)`` returns the class index of instance ``k``; ``pixels``
        is its (H, W) boolean mask.

    Returns
    -------
    list of (x0, y0, x1, y1, c)
        One box per instance, ordered by instance index; 0-based, end-exclusive.
    """
    boxes = []
    for k in np.unique(instances):
        if k == 0 or k == VOID:
            continue
        pixels = instances == k
        rows = np.flatnonzero(pixels.any(axis=1))
        cols = np.flatnonzero(pixels.any(axis=0))
        c = classes_of(int(k), pixels)
        boxes.append((int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1, int(c)))
    return boxes


def xml_boxes(path, classes: list[str]) -> list[tuple[int, int, int, int, int]]:
    """Boxes of a VOC annotation file as ``(x0, y0, x1, y1, c)``, in object order.

    A class name not in ``classes`` raises :class:`InputError` naming the file.
    """
    boxes = []
    for obj in read_voc_xml(path)["objects"]:
        if obj["name"] not in classes or obj["name"] == classes[0]:
            raise InputError(path, f"unknown class name {obj['name']!r} (classes: {', '.join(classes[1:])})")
        boxes.append((*obj["box"], classes.index(obj["name"])))
    return boxes


def voc_object_boxes(object_png, class_png, num_classes: int) -> list[tuple[int, int, int, int, int]]:
    """Boxes from a VOC ``SegmentationObject`` PNG; each instance's class is the
    majority non-void ``SegmentationClass`` value over its pixels."""
    instances = read_label_png(object_png)
    labels = read_label_png(class_png)
    if instances.shape != labels.shape:
        raise InputError(object_png, f"instance mask is {instances.shape[1]}x{instances.shape[0]} but "
                         f"{class_png} is {labels.shape[1]}x{labels.shape[0]}")

    def majority(k, pixels):
        values = labels[pixels]
        values = values[values != VOID]
        c = int(np.bincount(values, minlength=num_classes).argmax()) if values.size else 0
        if not 1 <= c < num_classes:
            raise InputError(object_png, f"instance {k} covers no object class in {class_png} "
                             f"(majority value {c})")
        return c

    return mask_boxes(instances, majority)


def sbd_instance_boxes(path, num_classes: int) -> list[tuple[int, int, int, int, int]]:
    """Boxes from an SBD ``inst/*.mat`` (``GTinst.Segmentation``, ``GTinst.Categories``)."""
    mat = load_mat(path)
    try:
        instances = np.asarray(mat["GTinst"].Segmentation)
        categories = np.atleast_1d(np.asarray(mat["GTinst"].Categories)).astype(np.int64).ravel()
    except (KeyError, AttributeError):
        raise InputError(path, "no GTinst.Segmentation / GTinst.Categories in the .mat file") from None
    if instances.ndim != 2:
        raise InputError(path, f"GTinst.Segmentation must be 2-D, got shape {instances.shape}")

    def category(k, pixels):
        if k > len(categories):
            raise InputError(path, f"instance {k} has no entry in GTinst.Categories ({len(categories)} entries)")
        c = int(categories[k - 1])
        if not 1 <= c < num_classes:
            raise InputError(path, f"instance {k} has category {c}, not in 1..{num_classes - 1}")
        return c

    return mask_boxes(instances.astype(np.int64), category)


def _splits(voc: Path, sbd: Path | None) -> dict[str, tuple[str, Path]]:
    """Return {id: (split, list file it came from)}, sorted by id."""
    seg = voc / "ImageSets" / "Segmentation"
    val_ids = read_id_list(seg / "val.txt")
    train_lists = [seg / "train.txt"]
    if sbd is not None:
        train_lists = [sbd / "train.txt", sbd / "val.txt", seg / "train.txt"]
    out = {i: ("val", seg / "val.txt") for i in val_ids}
    for path in train_lists:
        for i in read_id_list(path):
            if i in out and out[i][0] == "val":
                if sbd is None:
                    raise InputError(path, f"image {i} is also in the val list {seg / 'val.txt'}")
                continue  # train_aug excludes the VOC val images
            out.setdefault(i, ("train", path))
    return dict(sorted(out.items()))


def load_voc(root, boxes: str | None = "auto", sbd: bool = True) -> Dataset:
    """Read PASCAL VOC 2012 (plus SBD when present) into a :class:`Dataset`.

    Parameters
    ----------
    root : path
        Folder holding ``VOCdevkit/VOC2012`` and optionally ``benchmark_RELEASE``.
    boxes : {"auto", "xml", "instances", None}
        Where boxes come from.  ``"auto"``: ``Annotations/<id>.xml`` when it exists,
        else the instance masks (``SegmentationObject/<id>.png``, classes taken from
        ``SegmentationClass``; else SBD ``inst/<id>.mat``).  ``"xml"``: the XML file,
        required.  ``"instances"``: the instance masks, required.  ``None``: no boxes
        (the caller attaches its own).
    sbd : bool
        Use the SBD release when ``benchmark_RELEASE/dataset`` exists.

    Returns
    -------
    Dataset
        Classes: ``VOCdevkit/VOC2012/classes.txt`` when present, else background plus
        the 20 VOC classes.  Items sorted by id (the file stem); each has a mask
        (``SegmentationClass`` PNG, else SBD ``cls`` .mat), boxes as
        ``(x0, y0, x1, y1, c)`` 0-based end-exclusive, and ``box_file`` set to the file
        the boxes were read from.

    Raises
    ------
    InputError
        Naming the file at fault: a missing folder, list, image, mask or annotation,
        an unknown class name, a malformed XML or .mat file.
    """
    if boxes not in BOX_MODES and boxes is not None:
        raise InputError("params.yaml", f"boxes must be one of {BOX_MODES}, not {boxes!r}")
    root = Path(root)
    voc = root / "VOCdevkit" / "VOC2012"
    if not voc.is_dir():
        raise InputError(voc, "VOC 2012 folder not found (expected <root>/VOCdevkit/VOC2012)")
    sbd_dir = root / "benchmark_RELEASE" / "dataset"
    sbd_dir = sbd_dir if sbd and sbd_dir.is_dir() else None
    classes = read_class_list(voc / "classes.txt") if (voc / "classes.txt").exists() else list(VOC_CLASSES)

    items = []
    for image_id, (split, list_file) in _splits(voc, sbd_dir).items():
        image = voc / "JPEGImages" / f"{image_id}.jpg"
        if not image.is_file():
            raise InputError(image, f"image of id {image_id!r} listed in {list_file} not found")
        class_png = voc / "SegmentationClass" / f"{image_id}.png"
        if class_png.is_file():
            mask = MaskRef(str(class_png), "png")
        elif sbd_dir is not None and (sbd_dir / "cls" / f"{image_id}.mat").is_file():
            mask = MaskRef(str(sbd_dir / "cls" / f"{image_id}.mat"), "sbd_cls")
        else:
            where = f" nor {sbd_dir / 'cls' / f'{image_id}.mat'}" if sbd_dir is not None else ""
            raise InputError(class_png, f"no class mask for image {image_id!r} (neither this file{where})")
        item_boxes, box_file = _item_boxes(voc, sbd_dir, image_id, boxes, class_png, classes)
        items.append(Item(id=image_id, image=str(image), split=split, mask=mask, boxes=item_boxes,
                          box_file=str(box_file) if box_file is not None else None))
    return Dataset(classes=classes, items=items, root=str(root))


def _item_boxes(voc: Path, sbd_dir: Path | None, image_id: str, mode: str | None, class_png: Path,
                classes: list[str]):
    """Return (boxes, file they came from) for one image under the given mode."""
    if mode is None:
        return [], None
    xml = voc / "Annotations" / f"{image_id}.xml"
    if mode == "xml" or (mode == "auto" and xml.is_file()):
        return xml_boxes(xml, classes), xml
    object_png = voc / "SegmentationObject" / f"{image_id}.png"
    if object_png.is_file():
        if not class_png.is_file():
            raise InputError(class_png, f"needed for the classes of the instances in {object_png}, not found")
        return voc_object_boxes(object_png, class_png, len(classes)), object_png
    inst_mat = sbd_dir / "inst" / f"{image_id}.mat" if sbd_dir is not None else None
    if inst_mat is not None and inst_mat.is_file():
        return sbd_instance_boxes(inst_mat, len(classes)), inst_mat
    tried = [str(object_png)] + ([str(inst_mat)] if inst_mat is not None else [])
    if mode == "auto":
        tried.insert(0, str(xml))
    raise InputError(tried[0], f"no boxes for image {image_id!r}: none of {', '.join(tried)} exists")

"""The dataset index: what every source produces and every later stage reads.

A source (``pipeline.sources``) turns a dataset on disk into a :class:`Dataset`:
class names plus one :class:`Item` per image.  :func:`write_index` validates every
item (decodes the image, reads the mask, checks the boxes) and writes two files:

``images.json``
    ``{"format": "mixseg-images", "version": 1, "items": [{"id", "path", "md5",
    "height", "width", "split"}]}`` -- images only, so the UCM stage, which
    depends on this file alone, does not rerun when boxes or masks change.
``annotations.json``
    ``{"format": "mixseg-annotations", "version": 1, "classes": [...],
    "background": true | false, "items": [{"id", "mask": {"path", "format", "lut", "md5"} | null,
    "boxes": [[x0, y0, x1, y1, c], ...], "tags": [c, ...]}]}`` -- ``background: false`` when class 0
    is a placeholder no pixel has (a dataset where every pixel has a real class); absent = true.

Box convention everywhere after the source: 0-based pixel coordinates,
end-exclusive (``x0 <= x < x1``), class index ``c`` in ``1..C``; class 0 is the
background.  Mask convention: (H, W) uint8 class indices, 255 = void.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.io
from joblib import Parallel, delayed

from pipeline.core.errors import ErrorPolicy, InputError
from pipeline.core.fileio import file_md5, read_image, read_label_png, read_json, write_json
from pipeline.core.schema import MAX_CLASSES  # C + 1, background included (label shard format 3)

VOID = 255
MASK_FORMATS = ("png", "sbd_cls", "siftflow_mat")


@dataclass
class MaskRef:
    """Where an item's class map lives and how to read it.

    ``format``: ``png`` (palette or grey PNG of class indices, VOC/CamVid style),
    ``sbd_cls`` (SBD ``cls/*.mat``, ``GTcls.Segmentation``) or ``siftflow_mat``
    (SIFT Flow ``SemanticLabels/*.mat``, variable ``S``).  ``lut`` optionally
    maps raw values (index) to class indices, 255 = void.
    """

    path: str
    format: str = "png"
    lut: list[int] | None = None


@dataclass
class Item:
    id: str
    image: str
    split: str = "train"  # "train" | "val"
    mask: MaskRef | None = None
    boxes: list[tuple[int, int, int, int, int]] = field(default_factory=list)
    tags: list[int] | None = None  # None: derived from the mask, else from the boxes
    box_file: str | None = None  # the annotation file the boxes came from (for messages)


@dataclass
class Dataset:
    classes: list[str]  # index 0 is the background
    items: list[Item]
    root: str = ""
    # False: every pixel has a real class (CamVid, Cityscapes, ADE-style); class 0 is a placeholder
    # no pixel has, so box labels ignore (not teach) what is not the object and the metrics leave it out
    background: bool = True


def read_mask(ref: MaskRef) -> np.ndarray:
    """Read a class map as (H, W) uint8, class indices with 255 = void."""
    path = Path(ref.path)
    if ref.format == "png":
        raw = read_label_png(path)
    elif ref.format in ("sbd_cls", "siftflow_mat"):
        try:
            mat = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
        except FileNotFoundError:
            raise InputError(path, "mask file not found") from None
        except Exception as e:  # scipy raises several types for a corrupt .mat
            raise InputError(path, f"unreadable .mat file ({e})") from None
        try:
            raw = mat["GTcls"].Segmentation if ref.format == "sbd_cls" else mat["S"]
        except (KeyError, AttributeError):
            want = "GTcls.Segmentation" if ref.format == "sbd_cls" else "S"
            raise InputError(path, f"no variable {want} in the .mat file") from None
        raw = np.asarray(raw)
        if ref.format == "siftflow_mat":  # 0 = unlabeled, 1..33 = classes
            raw = np.where(raw <= 0, VOID, raw)
    else:
        raise InputError(path, f"unknown mask format {ref.format!r} (expected one of {MASK_FORMATS})")
    if raw.ndim != 2:
        raise InputError(path, f"mask must be 2-D, got shape {raw.shape}")
    raw = raw.astype(np.int64)
    if ref.lut is not None:
        lut = np.asarray(ref.lut, np.int64)
        if raw.min() < 0 or raw.max() >= len(lut):
            raise InputError(path, f"mask value {raw.max()} outside the lookup table of {len(lut)} entries")
        raw = lut[raw]
    if raw.min() < 0 or raw.max() > VOID:
        raise InputError(path, f"mask values must be in 0..255, got {raw.min()}..{raw.max()}")
    return raw.astype(np.uint8)


def _check_item(item: Item, classes: list[str], policy_mode: str) -> dict:
    """Validate one item; return its image and annotation records (or an error)."""
    num_classes = len(classes)
    try:
        image = read_image(item.image)
        height, width = image.shape[:2]
        mask_rec = None
        tags = set()
        if item.mask is not None:
            mask = read_mask(item.mask)
            if mask.shape != (height, width):
                raise InputError(item.mask.path, f"mask is {mask.shape[1]}x{mask.shape[0]} but image "
                                 f"{item.image} is {width}x{height}")
            present = np.unique(mask)
            bad = present[(present >= num_classes) & (present != VOID)]
            if len(bad):
                raise InputError(item.mask.path, f"class index {int(bad[0])} in mask but the dataset has "
                                 f"{num_classes} classes (0..{num_classes - 1}, 255 = void)")
            tags.update(int(c) for c in present if 0 < c < num_classes)
            mask_rec = {"path": str(item.mask.path), "format": item.mask.format, "lut": item.mask.lut,
                        "md5": file_md5(item.mask.path)}
        boxes = []
        where = item.box_file or item.image
        for b in item.boxes:
            x0, y0, x1, y1, c = (int(v) for v in b)
            if not 1 <= c < num_classes:
                raise InputError(where, f"box {[x0, y0, x1, y1]} of image {item.id} has class index {c}, "
                                 f"not in 1..{num_classes - 1}")
            if x1 <= x0 or y1 <= y0:
                raise InputError(where, f"zero-area or inverted box {[x0, y0, x1, y1]} in image {item.id}")
            cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
            if cx1 <= cx0 or cy1 <= cy0:
                raise InputError(where, f"box {[x0, y0, x1, y1]} lies outside image {item.id} "
                                 f"({width}x{height})")
            boxes.append([cx0, cy0, cx1, cy1, c])
        if item.tags is not None:
            for c in item.tags:
                if not 1 <= int(c) < num_classes:
                    raise InputError(where, f"tag class index {c} of image {item.id} not in 1..{num_classes - 1}")
            tags = {int(c) for c in item.tags}
        elif item.mask is None:
            tags = {b[4] for b in boxes}
        return {"image": {"id": item.id, "path": str(item.image), "md5": file_md5(item.image),
                          "height": int(height), "width": int(width), "split": item.split},
                "annotation": {"id": item.id, "mask": mask_rec, "boxes": boxes, "tags": sorted(tags)}}
    except InputError as e:
        if policy_mode == "fail":
            raise
        return {"error": e}


def write_index(dataset: Dataset, out_dir, on_error: str = "fail", n_jobs: int = 1,
                progress: bool = True) -> dict:
    """Validate ``dataset`` and write ``images.json``, ``annotations.json`` (and
    ``skipped.json``) into ``out_dir``.  Returns summary counts."""
    policy = ErrorPolicy(on_error)
    root = dataset.root or out_dir
    if not dataset.items:
        raise InputError(root, "empty dataset: no images found")
    if len(dataset.classes) > MAX_CLASSES:
        raise InputError(root, f"{len(dataset.classes)} classes (background included); at most {MAX_CLASSES}")
    if len(set(dataset.classes)) != len(dataset.classes):
        raise InputError(root, "duplicate class names")
    seen = {}
    for item in dataset.items:
        if item.split not in ("train", "val"):
            raise InputError(item.image, f"split must be 'train' or 'val', not {item.split!r}")
        if item.id in seen:
            raise InputError(item.image, f"duplicate image id {item.id!r} (also {seen[item.id]})")
        seen[item.id] = item.image
    items = sorted(dataset.items, key=lambda it: it.id)
    from tqdm import tqdm
    it = tqdm(items, desc="source", unit="img", disable=not progress)
    results = Parallel(n_jobs=n_jobs)(delayed(_check_item)(x, dataset.classes, policy.mode) for x in it)
    images, annotations = [], []
    for item, res in zip(items, results):
        if "error" in res:
            policy.handle(item.id, res["error"])
            continue
        images.append(res["image"])
        annotations.append(res["annotation"])
    if not images:
        raise InputError(root, "empty dataset: every image was skipped")
    out_dir = Path(out_dir)
    write_json(out_dir / "images.json", {"format": "mixseg-images", "version": 1, "items": images})
    write_json(out_dir / "annotations.json", {"format": "mixseg-annotations", "version": 1,
                                              "classes": list(dataset.classes),
                                              "background": bool(dataset.background), "items": annotations})
    write_json(out_dir / "skipped.json", policy.skipped)
    n_boxes = sum(len(a["boxes"]) for a in annotations)
    return {"images": len(images), "train": sum(i["split"] == "train" for i in images),
            "val": sum(i["split"] == "val" for i in images), "boxes": n_boxes,
            "with_mask": sum(a["mask"] is not None for a in annotations), "skipped": len(policy.skipped)}


def load_images(path) -> list[dict]:
    doc = read_json(path)
    if doc.get("format") != "mixseg-images":
        raise InputError(path, "not a mixseg images index (run `mixseg source`)")
    return doc["items"]


def load_annotations(path, with_background: bool = False):
    """Return (classes, {id: annotation record}); records' ``mask`` becomes a MaskRef.
    ``with_background``: (classes, records, :func:`index_background`) from the one read."""
    doc = read_json(path)
    if doc.get("format") != "mixseg-annotations":
        raise InputError(path, "not a mixseg annotations index (run `mixseg source`)")
    if with_background:
        return (*_records(doc), _background(doc, path))
    return _records(doc)


def _records(doc: dict):
    """(classes, {id: record}) of a parsed annotations.json."""
    out = {}
    for rec in doc["items"]:
        rec = dict(rec)
        if rec["mask"] is not None:
            m = rec["mask"]
            rec["mask"] = MaskRef(m["path"], m["format"], m.get("lut"))
        out[rec["id"]] = rec
    return doc["classes"], out


def index_background(path) -> bool:
    """Whether the index ``annotations.json`` at ``path`` has a real background class:
    ``False`` when class 0 is a placeholder no pixel has (see :class:`Dataset`)."""
    return _background(read_json(path), path)


def _background(doc: dict, path) -> bool:
    value = doc.get("background", True)
    if not isinstance(value, bool):
        raise InputError(path, f"'background' must be true or false, got {value!r} (rerun `mixseg source`)")
    return value

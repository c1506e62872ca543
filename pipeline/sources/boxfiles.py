"""Any images plus boxes (COCO JSON or a folder of VOC XML) as a :class:`Dataset`.

This is the source for a user's own box dataset.  Under ``root``::

    images/<id>.<ext>        the images (jpg, jpeg, png, bmp, ppm, tif, tiff); id = file stem
    <boxes>                  a COCO JSON file, or a folder of VOC XML files
    <masks>/<id>.png         optional class maps (palette or grey PNG, 255 = void)
    <tags>                   optional JSON {id: [class name, ...]}
    <classes>                optional class list, one name a line
    <val_list>               optional list of ids that form the val split

COCO boxes ``[x, y, w, h]`` (floats, pixel edges) become ``x0 = floor(x)``,
``y0 = floor(y)``, ``x1 = ceil(x + w)``, ``y1 = ceil(y + h)``: the smallest pixel box
covering them, 0-based end-exclusive.  Crowd annotations (``iscrowd``) are skipped.
VOC XML boxes are 1-based inclusive and converted by :mod:`pipeline.sources.vocxml`.
"""

from __future__ import annotations

import math
from pathlib import Path

from pipeline.core.errors import InputError
from pipeline.core.fileio import read_json
from pipeline.core.index import Dataset, Item, MaskRef
from pipeline.sources.voc import read_class_list, read_id_list
from pipeline.sources.vocxml import read_voc_xml

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff")


def resolve_path(root, path) -> Path:
    """A path from the parameters: absolute as given, else under ``root`` when it exists
    there, else relative to the working directory when it exists there, else under ``root``."""
    path = Path(path)
    if path.is_absolute():
        return path
    under_root = Path(root) / path
    return under_root if under_root.exists() or not path.exists() else path


def coco_box(bbox, path, ann_id) -> tuple[int, int, int, int]:
    """Convert a COCO ``[x, y, w, h]`` box to ``(x0, y0, x1, y1)`` integer pixels, 0-based end-exclusive."""
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError):
        raise InputError(path, f"annotation {ann_id}: bbox must be 4 numbers [x, y, w, h], got {bbox!r}") from None
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise InputError(path, f"annotation {ann_id}: bbox {bbox!r} is not finite")
    if w <= 0 or h <= 0:
        raise InputError(path, f"annotation {ann_id}: zero-area or inverted bbox {bbox!r}")
    return math.floor(x), math.floor(y), math.ceil(x + w), math.ceil(y + h)


def read_coco_boxes(path) -> tuple[list[str], list[dict]]:
    """Read boxes from a COCO JSON file.

    Returns
    -------
    names : list of str
        Category names sorted by category id.
    records : list of dict
        One per COCO image: ``{"id", "file_name", "source", "objects": [(name, (x0, y0, x1, y1))]}``
        with ``id`` the stem of ``file_name`` and ``source`` the JSON path.
    """
    path = Path(path)
    doc = read_json(path)
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), list)
                                            for k in ("images", "annotations", "categories")):
        raise InputError(path, "not a COCO annotation file: needs lists 'images', 'annotations', 'categories'")
    try:
        categories = {c["id"]: str(c["name"]).strip() for c in doc["categories"]}
        files = {im["id"]: str(im["file_name"]) for im in doc["images"]}
    except (KeyError, TypeError) as e:
        raise InputError(path, f"COCO category or image entry lacks a field ({e})") from None
    if len(categories) != len(doc["categories"]) or len(set(categories.values())) != len(categories):
        raise InputError(path, "duplicate category id or name")
    if len(files) != len(doc["images"]):
        raise InputError(path, "duplicate image id")
    records, stems = {}, set()
    for image_id, file_name in files.items():
        stem = Path(file_name.replace("\\", "/")).stem
        if stem in stems:
            raise InputError(path, f"two images share the id {stem!r} (file name stem)")
        stems.add(stem)
        records[image_id] = {"id": stem, "file_name": file_name, "source": str(path), "objects": []}
    for ann in doc["annotations"]:
        if not isinstance(ann, dict):
            raise InputError(path, f"annotation entry {ann!r} is not an object")
        ann_id = ann.get("id", "?")
        if ann.get("iscrowd", 0):
            continue
        image_id, category_id = ann.get("image_id"), ann.get("category_id")
        if not isinstance(image_id, (int, str)) or image_id not in records:
            raise InputError(path, f"annotation {ann_id}: image_id {image_id!r} not in 'images'")
        if not isinstance(category_id, (int, str)) or category_id not in categories:
            raise InputError(path, f"annotation {ann_id}: category_id {category_id!r} not in 'categories'")
        box = coco_box(ann.get("bbox"), path, ann_id)
        records[image_id]["objects"].append((categories[category_id], box))
    names = [categories[k] for k in sorted(categories)]
    return names, list(records.values())


def read_xml_boxes(folder) -> tuple[list[str], list[dict]]:
    """Read boxes from a folder of VOC XML files.

    Returns
    -------
    names : list of str
        The sorted set of object names.
    records : list of dict
        One per XML file, sorted by file name: ``{"id", "file_name", "source", "objects"}``
        with ``file_name`` the XML's ``<filename>`` (else the XML stem) and ``id`` its stem.
    """
    folder = Path(folder)
    xml_files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".xml")
    if not xml_files:
        raise InputError(folder, "no .xml annotation files in the folder")
    records, seen = [], {}
    for xml in xml_files:
        doc = read_voc_xml(xml)
        file_name = doc["filename"] or xml.stem
        image_id = Path(file_name.replace("\\", "/")).stem
        if image_id in seen:
            raise InputError(xml, f"image {image_id!r} is also annotated in {seen[image_id]}")
        seen[image_id] = xml
        records.append({"id": image_id, "file_name": file_name, "source": str(xml),
                        "objects": [(o["name"], o["box"]) for o in doc["objects"]]})
    names = sorted({name for r in records for name, _ in r["objects"]})
    return names, records


def read_box_annotations(path) -> tuple[list[str], list[dict]]:
    """Read a COCO JSON file (``*.json``) or a folder of VOC XML files; see
    :func:`read_coco_boxes` and :func:`read_xml_boxes`."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        return read_coco_boxes(path)
    if path.is_dir():
        return read_xml_boxes(path)
    raise InputError(path, "boxes must be a COCO .json file or a folder of VOC .xml files (not found)")


def class_boxes(record: dict, classes: list[str]) -> list[tuple[int, int, int, int, int]]:
    """A record's objects as ``(x0, y0, x1, y1, c)`` with ``c`` the index of the name in
    ``classes``; an unknown name raises :class:`InputError` naming the annotation file."""
    boxes = []
    for name, box in record["objects"]:
        if name not in classes or name == classes[0]:
            raise InputError(record["source"], f"unknown class name {name!r} in the boxes of image "
                             f"{record['id']!r} (classes: {', '.join(classes[1:])})")
        boxes.append((*box, classes.index(name)))
    return boxes


def _find_image(image_dir: Path, file_name: str) -> Path | None:
    relative = Path(file_name.replace("\\", "/"))
    for candidate in (image_dir / relative, image_dir / relative.name):
        if candidate.is_file():
            return candidate
    if not relative.suffix:  # an XML without <filename>: look for <stem>.<image extension>
        for ext in IMAGE_EXTENSIONS:
            if (image_dir / f"{relative.name}{ext}").is_file():
                return image_dir / f"{relative.name}{ext}"
    return None


def read_tags(path, classes: list[str], image_ids) -> dict[str, list[int]]:
    """Read a tag file ``{id: [class name, ...]}`` into ``{id: sorted class indices}``."""
    doc = read_json(path)
    if not isinstance(doc, dict):
        raise InputError(path, "tag file must be a JSON object {image id: [class names]}")
    out = {}
    for image_id, names in doc.items():
        if image_id not in image_ids:
            raise InputError(path, f"image id {image_id!r} has no image")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise InputError(path, f"tags of image {image_id!r} must be a list of class names")
        for name in names:
            if name not in classes or name == classes[0]:
                raise InputError(path, f"unknown class name {name!r} in the tags of image {image_id!r}")
        out[image_id] = sorted({classes.index(n) for n in names})
    return out


def image_files(image_dir: Path) -> dict[str, Path]:
    """``{id: path}`` of the images in a folder (id = file stem); two images of one id is an error."""
    files = {}
    for p in sorted(image_dir.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS:
            if p.stem in files:
                raise InputError(p, f"two images share the id {p.stem!r} (also {files[p.stem]})")
            files[p.stem] = p
    return files


def load_boxes(root, boxes, images="images", masks=None, tags=None, classes=None, val_list=None) -> Dataset:
    """Read a folder of images with boxes (and optional masks, tags, class list, val list).

    Parameters
    ----------
    root : path
        Dataset folder.  The other paths are taken relative to it when they exist
        there (else relative to the working directory; absolute paths as given).
    boxes : path
        A COCO JSON file (``*.json``) or a folder of VOC XML files.
    images : path
        Image folder.  Every image file in it is an item; an image named by an
        annotation may also lie in a subfolder (COCO ``file_name``).
    masks : path, optional
        Folder of class maps ``<id>.png`` (class indices, 255 = void).
    tags : path, optional
        JSON file ``{id: [class name, ...]}``: the image-level tags of those images.
    classes : path, optional
        Class list, one name a line; ``background`` is prepended unless first.
        Default: the COCO categories sorted by id, or the sorted set of XML names.
    val_list : path, optional
        Ids (one a line) that form the ``"val"`` split; the rest is ``"train"``.

    Returns
    -------
    Dataset
        Items sorted by id (the image file stem), boxes ``(x0, y0, x1, y1, c)``
        0-based end-exclusive, ``box_file`` the annotation file of the boxes.

    Raises
    ------
    InputError
        Naming the file at fault: malformed JSON/XML, an annotation naming a missing
        image, an unknown class name, a tag, mask or val-list id with no image.
    """
    root = Path(root)
    image_dir = resolve_path(root, images)
    if not image_dir.is_dir():
        raise InputError(image_dir, "image folder not found")
    files = image_files(image_dir)

    names, records = read_box_annotations(resolve_path(root, boxes))
    class_names = read_class_list(resolve_path(root, classes)) if classes else ["background"] + names
    by_id = {}
    for rec in records:
        image = _find_image(image_dir, rec["file_name"])
        if image is None:
            raise InputError(rec["source"], f"annotated image {rec['file_name']!r} not found in {image_dir}")
        if files.get(rec["id"], image) != image:
            raise InputError(rec["source"], f"image id {rec['id']!r} is both {files[rec['id']]} and {image}")
        files[rec["id"]] = image
        by_id[rec["id"]] = rec
    if not files:
        raise InputError(image_dir, "no images in the folder")

    tag_map = read_tags(resolve_path(root, tags), class_names, files) if tags else {}
    mask_dir = resolve_path(root, masks) if masks else None
    if mask_dir is not None:
        if not mask_dir.is_dir():
            raise InputError(mask_dir, "mask folder not found")
        for p in sorted(mask_dir.glob("*.png")):
            if p.stem not in files:
                raise InputError(p, f"mask of id {p.stem!r} has no image in {image_dir}")
    val_ids = set()
    if val_list:
        val_path = resolve_path(root, val_list)
        val_ids = set(read_id_list(val_path))
        unknown = sorted(val_ids - set(files))
        if unknown:
            raise InputError(val_path, f"image id {unknown[0]!r} has no image in {image_dir}")

    items = []
    for image_id in sorted(files):
        rec = by_id.get(image_id)
        mask_png = mask_dir / f"{image_id}.png" if mask_dir is not None else None
        items.append(Item(id=image_id, image=str(files[image_id]),
                          split="val" if image_id in val_ids else "train",
                          mask=MaskRef(str(mask_png), "png") if mask_png is not None and mask_png.is_file() else None,
                          boxes=class_boxes(rec, class_names) if rec else [],
                          tags=tag_map.get(image_id),
                          box_file=rec["source"] if rec else None))
    return Dataset(classes=class_names, items=items, root=str(root))

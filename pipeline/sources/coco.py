"""A COCO-format detection dataset as a :class:`Dataset` (``source.kind: coco``).

``source.coco`` (:class:`pipeline.core.config.CocoOptions`) names, under ``source.root``, the
train and (optional) val annotation files and their image folders -- COCO 2017 as downloaded::

    annotations/instances_train2017.json   train2017/<file_name>
    annotations/instances_val2017.json     val2017/<file_name>

What is read from each annotation file (the format COCO, LVIS and the usual exporters write):

* ``categories`` ``[{id, name, ...}]`` -- the classes are the categories **sorted by id**
  (COCO's ids run 1..90 with gaps: 80 classes), class ``k`` the ``k``-th of them, 0 the
  background.  The val file must list the same categories.
* ``images`` ``[{id, file_name, width, height}]`` -- every image listed is an item (files in
  the folder that no annotation file lists are not); its id is the file name's stem.
* ``annotations`` ``[{id, image_id, category_id, bbox: [x, y, w, h], iscrowd}]`` -- ``bbox`` in
  float pixels becomes the smallest integer pixel box covering it, 0-based end-exclusive
  (``floor(x), floor(y), ceil(x + w), ceil(y + h)``), clipped to the image's recorded
  ``width``/``height`` (COCO has boxes a fraction of a pixel past the edge).  Crowd regions
  (``iscrowd: 1``) are skipped, as in COCO's detection protocol.  ``segmentation`` polygons and
  RLEs are not read: the dataset is a box dataset (boxes + tags from the boxes).
* Tags are the classes of an image's boxes.

``masks`` optionally names a folder of class-map PNGs ``<id>.png`` (value = class index in the
order above, 255 = void), e.g. rendered from COCO-Stuff or panoptic annotations; images with
one get it as their true mask (the val images need one to be evaluated, the pixel subset to be
drawn from them).

Every problem with an annotation file is an :class:`InputError` naming the file (not an
object, duplicate ids or names, an annotation of an unknown image or category, a bad bbox, a
listed image that is not in its folder).
"""

from __future__ import annotations

from pathlib import Path

from pipeline.core.config import CocoOptions
from pipeline.core.errors import InputError
from pipeline.core.fileio import read_json
from pipeline.core.index import Dataset, Item, MaskRef
from pipeline.sources.boxfiles import coco_box, resolve_path


def _entries(doc, key, path, fields) -> list[dict]:
    out = doc.get(key)
    if not isinstance(out, list):
        raise InputError(path, f"not a COCO annotation file: needs a list {key!r}")
    for e in out:
        if not isinstance(e, dict) or any(f not in e for f in fields):
            raise InputError(path, f"a {key} entry lacks one of {', '.join(fields)}: {str(e)[:80]}")
    return out


def read_coco(path) -> tuple[list[tuple[int, str]], list[dict]]:
    """One COCO annotation file: its categories ``[(id, name)]`` sorted by id and its images
    ``[{"id", "file_name", "width", "height", "objects": [(category id, (x0, y0, x1, y1))]}]``
    in file order (boxes clipped to the image, crowd annotations left out)."""
    path = Path(path)
    doc = read_json(path)
    if not isinstance(doc, dict):
        raise InputError(path, "not a COCO annotation file: a JSON object with images, annotations, categories")
    cats = _entries(doc, "categories", path, ("id", "name"))
    images = _entries(doc, "images", path, ("id", "file_name"))
    anns = _entries(doc, "annotations", path, ("image_id", "category_id", "bbox"))
    names = {}
    for c in cats:
        if not isinstance(c["id"], int) or isinstance(c["id"], bool):
            raise InputError(path, f"category id {c['id']!r} is not an integer")
        name = str(c["name"]).strip()
        if c["id"] in names or name in names.values() or not name:
            raise InputError(path, f"duplicate or empty category id/name: {c['id']} {name!r}")
        names[c["id"]] = name
    if not names:
        raise InputError(path, "no categories")
    by_id, stems = {}, {}
    for im in images:
        image_id = im["id"]
        if image_id in by_id:
            raise InputError(path, f"duplicate image id {image_id!r}")
        stem = Path(str(im["file_name"]).replace("\\", "/")).stem
        if stem in stems:
            raise InputError(path, f"images {stems[stem]!r} and {image_id!r} share the id {stem!r} (file name stem)")
        stems[stem] = image_id
        size = (im.get("width"), im.get("height"))
        by_id[image_id] = {"id": stem, "file_name": str(im["file_name"]),
                           "width": int(size[0]) if isinstance(size[0], (int, float)) else None,
                           "height": int(size[1]) if isinstance(size[1], (int, float)) else None, "objects": []}
    for ann in anns:
        ann_id = ann.get("id", "?")
        if ann.get("iscrowd", 0):
            continue
        rec = by_id.get(ann["image_id"])
        if rec is None:
            raise InputError(path, f"annotation {ann_id}: image_id {ann['image_id']!r} not in 'images'")
        if ann["category_id"] not in names:
            raise InputError(path, f"annotation {ann_id}: category_id {ann['category_id']!r} not in 'categories'")
        x0, y0, x1, y1 = coco_box(ann["bbox"], path, ann_id)
        if rec["width"] is not None:
            x0, x1 = max(x0, 0), min(x1, rec["width"])
            y0, y1 = max(y0, 0), min(y1, rec["height"])
            if x1 <= x0 or y1 <= y0:
                raise InputError(path, f"annotation {ann_id}: bbox {ann['bbox']!r} lies outside the "
                                       f"{rec['width']}x{rec['height']} image {rec['file_name']!r}")
        rec["objects"].append((ann["category_id"], (x0, y0, x1, y1)))
    return sorted(names.items()), list(by_id.values())


def load_coco(root, train_json=CocoOptions.train_json, train_images=CocoOptions.train_images,
              val_json=CocoOptions.val_json, val_images=CocoOptions.val_images, masks=None) -> Dataset:
    """Read a COCO-format dataset under ``root`` (module docstring); paths are resolved as in
    :func:`pipeline.sources.boxfiles.resolve_path`.  Items sorted by id."""
    root = Path(root)
    splits = [("train", train_json, train_images)]
    if val_json is not None:
        splits.append(("val", val_json, val_images))
    categories, items = None, []
    mask_dir = resolve_path(root, masks) if masks else None
    if mask_dir is not None and not mask_dir.is_dir():
        raise InputError(mask_dir, "mask folder not found")
    for split, ann_path, image_dir in splits:
        ann_path, image_dir = resolve_path(root, ann_path), resolve_path(root, image_dir)
        if not ann_path.is_file():
            raise InputError(ann_path, f"COCO annotation file of the {split} split not found")
        if not image_dir.is_dir():
            raise InputError(image_dir, f"image folder of the {split} split not found")
        cats, records = read_coco(ann_path)
        if categories is None:
            categories, first = cats, ann_path
        elif cats != categories:
            raise InputError(ann_path, f"its categories differ from those of {first} (id, name)")
        index = {cid: k + 1 for k, (cid, _) in enumerate(categories)}
        for rec in records:
            image = image_dir / rec["file_name"]
            if not image.is_file():
                raise InputError(ann_path, f"image {rec['file_name']!r} not found in {image_dir}")
            mask = mask_dir / f"{rec['id']}.png" if mask_dir is not None else None
            items.append(Item(id=rec["id"], image=str(image), split=split,
                              mask=MaskRef(str(mask), "png") if mask is not None and mask.is_file() else None,
                              boxes=[(*box, index[cid]) for cid, box in rec["objects"]],
                              box_file=str(ann_path)))
    classes = ["background"] + [name for _, name in categories]
    return Dataset(classes=classes, items=sorted(items, key=lambda it: it.id), root=str(root))

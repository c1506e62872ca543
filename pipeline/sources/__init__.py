"""Dataset readers, one module per format, and the choice among them by ``source.kind``
(:class:`pipeline.core.config.SourceConfig`):

    kind: synthetic | voc2012 | siftflow | boxes | camvid | classmaps | coco
    root: data/raw/...            dataset folder
    boxes: auto                   VOC-layout kinds: auto | xml | instances;
                                  any kind: a COCO .json file or a folder of VOC XML
                                  files whose boxes replace the dataset's own
                                  (for kind "boxes": the annotation path, required)
    voc2012: {sbd}                                            kind "voc2012"
    boxes_source: {images, masks, tags, classes, val_list}    kind "boxes"
    camvid: {things, min_area, train_dirs, val_dirs}          kind "camvid"
    classmaps: {train, val, val_list, classes, void, things, min_area, background}   kind "classmaps"
    coco: {train_json, train_images, val_json, val_images, masks}              kind "coco"
"""

from __future__ import annotations

from pathlib import Path

from pipeline.sources.boxfiles import class_boxes, load_boxes, read_box_annotations, resolve_path
from pipeline.sources.camvid import load_camvid
from pipeline.sources.classmaps import load_classmaps
from pipeline.sources.coco import load_coco
from pipeline.core.config import SourceConfig, record
from pipeline.core.errors import InputError
from pipeline.core.index import Dataset
from pipeline.sources.siftflow import load_siftflow
from pipeline.sources.voc import BOX_MODES, load_voc

def box_override(root, boxes) -> Path | None:
    """The annotation path a ``boxes`` parameter names, or None for a box mode.

    A value ending in ``.json`` or naming an existing folder is a path (resolved as
    in :func:`pipeline.sources.boxfiles.resolve_path`); ``auto``/``xml``/``instances`` are modes.
    """
    if boxes in BOX_MODES:
        return None
    if not isinstance(boxes, str) or not boxes:
        raise InputError("params.yaml", f"source.boxes must be one of {BOX_MODES} or a path, not {boxes!r}")
    path = resolve_path(root, boxes)
    if boxes.lower().endswith(".json") or path.is_dir():
        return path
    raise InputError("params.yaml", f"source.boxes {boxes!r} is neither one of {BOX_MODES} nor a COCO "
                     f".json file nor an existing folder of VOC XML files")


def attach_boxes(dataset: Dataset, path) -> Dataset:
    """Replace every item's boxes with those of a COCO JSON file or VOC-XML folder.

    Annotated images are matched to items by id (the image file stem); annotations of
    images that are not in the dataset are ignored, items without annotations get no
    boxes.  Class names must be among ``dataset.classes``.

    Raises
    ------
    InputError
        Naming the annotation file: malformed, an unknown class name, or no annotated
        image at all among the dataset's items.
    """
    _, records = read_box_annotations(path)
    by_id = {rec["id"]: rec for rec in records}
    if records and not any(item.id in by_id for item in dataset.items):
        raise InputError(path, f"none of its {len(by_id)} annotated images is in the dataset "
                         f"(images are matched by file stem)")
    for item in dataset.items:
        rec = by_id.get(item.id)
        item.boxes = class_boxes(rec, dataset.classes) if rec else []
        item.box_file = rec["source"] if rec else None
    return dataset


def load_source(params: SourceConfig) -> Dataset:
    """Build the :class:`Dataset` that ``params.kind`` names from ``params.root``.

    Raises
    ------
    InputError
        ``params.yaml`` for a bad combination of parameters; the reader's errors otherwise.
    """
    root, boxes = Path(params.root), params.boxes
    if params.kind == "boxes":
        if boxes in BOX_MODES:
            raise InputError("params.yaml", "source.boxes must name a COCO .json file or a folder of VOC XML "
                             f"files for kind 'boxes', not {boxes!r}")
        return load_boxes(root, boxes, **record(params.boxes_source))
    if params.kind == "coco":
        if boxes != "auto":
            raise InputError("params.yaml", f"source.boxes {boxes!r}: kind 'coco' reads its boxes from "
                             "source.coco's annotation files; use 'auto'")
        return load_coco(root, **record(params.coco))
    override = box_override(root, boxes)
    if params.kind in ("synthetic", "voc2012"):
        sbd = params.kind == "voc2012" and params.voc2012.sbd
        dataset = load_voc(root, boxes=None if override is not None else boxes, sbd=sbd)
    else:
        if override is None and boxes != "auto":
            raise InputError("params.yaml", f"source.boxes {boxes!r} applies to VOC-layout sources only; "
                             f"for kind {params.kind!r} use 'auto' or a COCO .json file / VOC XML folder")
        if params.kind == "siftflow":
            dataset = load_siftflow(root)
        elif params.kind == "classmaps":
            dataset = load_classmaps(root, **record(params.classmaps))
        else:
            c = params.camvid
            dataset = load_camvid(root, things=list(c.things), min_area=c.min_area, train_dirs=list(c.train_dirs),
                                  val_dirs=list(c.val_dirs))
    return attach_boxes(dataset, override) if override is not None else dataset

"""The labels stage: each training image's target for its subset, in label shards.

pixel subset -> its true mask; box subset -> soft multi-hot labels from its
boxes and UCM (``labels.strategy``; any class count, :func:`box_labels`); image subset -> its
tag vector only.  Labels go to the shards as format 3 class-id maps.
Every image also carries its encoded bytes, tags, boxes and (when known) its
true mask, so the shards are all the trainer needs.  Validation images are
written as pixel-kind ``labels-val-*`` shards for evaluation.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from pipeline.core.config import STRATEGIES, LabelsConfig, record
from pipeline.core.errors import ErrorPolicy, InputError
from pipeline.core.index import load_annotations, load_images, read_mask
from pipeline.core.parallel import each_item, plan_shards, run_sharded
from pipeline.core.shards import BOX_DTYPE, LabelMap, UcmReader, encode_bitsets, encode_class_map, write_label_shard
from pipeline.labels.strategies import box_soft_labels, fetch_inputs
from pipeline.split import load_split

NO_STRATEGY = 255  # BOX_DTYPE.strategy of boxes that were not turned into labels
MAX_BOX_CLASSES = 63  # distinct box classes of one image beyond 64 classes: local bits 1..63, bit 0 background


def box_labels(boxes: np.ndarray, num_classes: int, s, shape, inputs, image_path, image_id, background=True):
    """The box strategy's soft labels of one image and its per-box info, for any class count.

    Up to 64 classes (background included) the strategy works on the global classes and
    returns bitsets, as it always has.  Beyond, the image's distinct box classes become
    local classes 1..K (K <= 63, ascending global id; 0 stays the background), the
    strategy labels those, and the local bitsets are encoded as a :class:`LabelMap` over
    the global classes.  An image with more than 63 box classes is an InputError.
    ``background=False``: the background bit is cleared (what the boxes leave is ignored).
    Beyond 64 classes the ``hard`` strategy's random draw is seeded with the local class ids
    (its boxes as the strategy sees them), so it is as reproducible as below 64.
    """
    if num_classes <= 64:
        bits, info = box_soft_labels(boxes, num_classes, s, shape, inputs)
        if not background:
            bits &= ~bits.dtype.type(1)
        return bits, info
    present = np.unique(boxes[:, 4]) if len(boxes) else np.zeros(0, np.int64)
    if len(present) > MAX_BOX_CLASSES:
        raise InputError(image_path, f"image {image_id} has boxes of {len(present)} classes; the box strategies "
                                     f"label at most {MAX_BOX_CLASSES} classes per image")
    local = boxes.copy()
    local[:, 4] = np.searchsorted(present, boxes[:, 4]) + 1
    bits, info = box_soft_labels(local, len(present) + 1, s, shape, inputs)
    if not background:
        bits &= ~bits.dtype.type(1)
    return encode_bitsets(bits, num_classes, np.concatenate([[0], present])), info


def image_record(image: dict, ann: dict, kind: str, classes, params: LabelsConfig, ucms,
                 background: bool = True) -> dict:
    """Build one shard record (see ``pipeline.core.shards.write_label_shard``).

    ``background=False`` (a dataset where every pixel has a real class, class 0 a
    placeholder): a box image's pixels that its boxes leave to the background are ignored
    instead (bit 0 cleared), so the network never learns a class no pixel has.
    """
    num_classes = len(classes)
    h, w = image["height"], image["width"]
    truth = None
    if ann["mask"] is not None:
        mask = read_mask(ann["mask"])
        if mask.shape != (h, w):
            raise InputError(ann["mask"].path, f"mask is {mask.shape[1]}x{mask.shape[0]}, image is {w}x{h}")
        truth = encode_class_map(mask, num_classes) if num_classes <= 64 else LabelMap.from_class_map(mask, num_classes)
    boxes = np.asarray(ann["boxes"], np.int64).reshape(-1, 5)
    rec_boxes = np.zeros(len(boxes), BOX_DTYPE)
    for name, col in zip(("x0", "y0", "x1", "y1", "cls"), boxes.T):
        rec_boxes[name] = col
    rec_boxes["strategy"] = NO_STRATEGY
    rec_boxes["box_area"] = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    label = None
    try:
        image_bytes = Path(image["path"]).read_bytes()
    except OSError as e:
        raise InputError(image["path"], f"image file unreadable ({e.strerror or e}); "
                                        "rerun the source stage") from None
    if kind == "pixel":
        if truth is None:
            raise InputError(image["path"], "pixel-subset image has no mask")
        label = truth
    elif kind == "box":
        s = params.box
        inputs = fetch_inputs(s, image, len(boxes), ucms, image_bytes)
        label, info = box_labels(boxes, num_classes, s, (h, w), inputs, image["path"], image["id"], background)
        rec_boxes["strategy"] = s.code
        rec_boxes["threshold"] = info[:, 0]
        rec_boxes["fallback"] = info[:, 1]
        rec_boxes["confident_area"] = info[:, 3]
        rec_boxes["uncertain_area"] = info[:, 4]
    return {"id": image["id"], "kind": kind, "height": h, "width": w, "tags": ann["tags"],
            "image_bytes": image_bytes, "label": label, "truth": truth,
            "boxes": rec_boxes}


def _label_shard(ids, path, images, annotations, kinds, classes, params, ucm_dir, background=True, policy=None,
                 tick=None):
    split = "val" if Path(path).name.startswith("labels-val") else "train"
    ucms = UcmReader(ucm_dir) if (ucm_dir is not None and any(kinds[i] == "box" for i in ids)) else {}
    records = [r for _, r in each_item(ids, lambda i: image_record(images[i], annotations[i], kinds[i], classes,
                                                                   params, ucms, background), policy, tick)]
    write_label_shard(path, records, classes, split, params=record(params), strategies=STRATEGIES,
                      background=background)
    return {k: sum(kinds[r["id"]] == k for r in records) for k in ("pixel", "box", "image")}


def run_labels(images_json, annotations_json, split_json, ucm_dir, out_dir, params: LabelsConfig,
               progress: bool = True) -> dict:
    """Write ``labels-train-NNNNN.h5`` and ``labels-val-NNNNN.h5`` into ``out_dir``.

    ``labels.on_error: skip`` leaves out an image whose record cannot be built (mis-sized
    or unreadable mask, missing image file, missing UCM) and lists it with the reason in
    ``out_dir/skipped.json``, written with the shards (``[]`` when none).
    """
    policy = ErrorPolicy(params.on_error)
    images = {r["id"]: r for r in load_images(images_json)}
    classes, annotations, background = load_annotations(annotations_json, with_background=True)
    assignment = load_split(split_json)
    missing = [i for i in assignment if i not in images or i not in annotations]
    if missing:
        raise InputError(split_json, f"image {missing[0]} is not in the index (rerun the split stage)")
    val = {i: "pixel" for i, r in images.items() if r["split"] == "val" and annotations[i]["mask"] is not None}
    need_ucm = params.box.needs == "ucm" and any(k == "box" for k in assignment.values())
    if need_ucm and (ucm_dir is None or not Path(ucm_dir).exists()):
        raise InputError(ucm_dir or "data/ucm", "the ucm strategy needs UCM shards (run the ucm stage)")
    plans = [("train", plan_shards(assignment, params.shard_size), assignment),
             ("val", plan_shards(val, params.shard_size), val)]
    shards, names, kinds_of = [], [], {}
    for split, plan, kinds in plans:
        for k, ids in enumerate(plan):
            shards.append(ids)
            names.append(f"labels-{split}-{k:05d}.h5")
        kinds_of.update(kinds)
    # the index goes to each task sliced to its shard's ids (run_sharded's by_id), not bound into the task
    task = functools.partial(_label_shard, classes=classes, params=params, ucm_dir=ucm_dir if need_ucm else None,
                             background=background)
    counts = run_sharded(task, shards, out_dir, lambda k: names[k], params.workers, "labels", progress,
                         policy=policy, by_id={"images": images, "annotations": annotations, "kinds": kinds_of})
    skipped = {s["id"] for s in policy.skipped}
    summary = {"train": {k: sum(c[k] for c, n in zip(counts, names) if n.startswith("labels-train"))
                         for k in ("pixel", "box", "image")},
               "val": sum(c["pixel"] for c, n in zip(counts, names) if n.startswith("labels-val")),
               "strategy": params.strategy,
               "boxes": sum(len(annotations[i]["boxes"]) for i, k in assignment.items()
                            if k == "box" and i not in skipped),
               "skipped": len(policy.skipped)}
    return summary


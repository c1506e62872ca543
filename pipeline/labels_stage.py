"""The labels stage: each training image's target for its subset, in label shards.

pixel subset -> its true mask; box subset -> soft multi-hot labels from its
boxes and UCM (``labels.strategy``); image subset -> its tag vector only.
Every image also carries its encoded bytes, tags, boxes and (when known) its
true mask, so the shards are all the trainer needs.  Validation images are
written as pixel-kind ``labels-val-*`` shards for evaluation.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from .boxlabels import DEFAULT_MARGIN, PAPER_ALPHA, PAPER_THRESHOLDS, RULES, STRATEGIES, box_soft_labels
from .errors import InputError
from .fileio import read_json
from .index import load_annotations, load_images, read_mask
from .parallel import plan_shards, run_sharded
from .shards import BOX_DTYPE, UcmReader, encode_class_map, write_label_shard

NO_STRATEGY = 255  # BOX_DTYPE.strategy of boxes that were not turned into labels


def load_split(path) -> dict[str, str]:
    doc = read_json(path)
    if doc.get("format") != "mixseg-split":
        raise InputError(path, "not a mixseg split file (run `mixseg split`)")
    return doc["assignment"]


def label_params(params: dict) -> dict:
    """The labels section with defaults filled in and checked."""
    p = {"strategy": "ucm", "rule": "enclosed", "margin": DEFAULT_MARGIN, "thresholds": list(PAPER_THRESHOLDS),
         "alpha": PAPER_ALPHA, "shard_size": 200, "workers": 1, **(params or {})}
    if p["rule"] not in RULES:
        raise InputError("params.yaml", f"labels.rule must be one of {RULES}, not {p['rule']!r}")
    if not 0 <= float(p["margin"]) <= 1:
        raise InputError("params.yaml", f"labels.margin must be in [0, 1], got {p['margin']}")
    if p["strategy"] not in STRATEGIES:
        raise InputError("params.yaml", f"labels.strategy must be one of {STRATEGIES}, not {p['strategy']!r}")
    t = [float(x) for x in p["thresholds"]]
    if not t or any(b <= a for a, b in zip(t, t[1:])) or t[0] <= 0 or t[-1] > 1:
        raise InputError("params.yaml", f"labels.thresholds must increase within (0, 1], got {t}")
    if not 0 < float(p["alpha"]) <= 1:
        raise InputError("params.yaml", f"labels.alpha must be in (0, 1], got {p['alpha']}")
    p["thresholds"], p["alpha"] = t, float(p["alpha"])
    return p


def image_record(image: dict, ann: dict, kind: str, classes, params: dict, ucms) -> dict:
    """Build one shard record (see ``pipeline.shards.write_label_shard``)."""
    num_classes = len(classes)
    h, w = image["height"], image["width"]
    truth = None
    if ann["mask"] is not None:
        mask = read_mask(ann["mask"])
        if mask.shape != (h, w):
            raise InputError(ann["mask"].path, f"mask is {mask.shape[1]}x{mask.shape[0]}, image is {w}x{h}")
        truth = encode_class_map(mask, num_classes)
    boxes = np.asarray(ann["boxes"], np.int64).reshape(-1, 5)
    rec_boxes = np.zeros(len(boxes), BOX_DTYPE)
    for name, col in zip(("x0", "y0", "x1", "y1", "cls"), boxes.T):
        rec_boxes[name] = col
    rec_boxes["strategy"] = NO_STRATEGY
    rec_boxes["box_area"] = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    label = None
    if kind == "pixel":
        if truth is None:
            raise InputError(image["path"], "pixel-subset image has no mask")
        label = truth
    elif kind == "box":
        strategy = params["strategy"]
        ucm2 = None
        if strategy == "ucm" and len(boxes):
            if image["id"] not in ucms:
                raise InputError(image["path"], f"no UCM for image {image['id']} (rerun the ucm stage)")
            ucm2 = ucms[image["id"]]
            if ucm2.shape != (2 * h + 1, 2 * w + 1):
                raise InputError(image["path"], f"UCM of {image['id']} is {ucm2.shape}, expected "
                                                f"{(2 * h + 1, 2 * w + 1)}")
        label, info = box_soft_labels(ucm2, boxes, num_classes, strategy, params["thresholds"],
                                      params["alpha"], shape=(h, w), rule=params["rule"],
                                      margin=float(params["margin"]))
        rec_boxes["strategy"] = STRATEGIES.index(strategy)
        rec_boxes["threshold"] = info[:, 0]
        rec_boxes["fallback"] = info[:, 1]
        rec_boxes["confident_area"] = info[:, 3]
        rec_boxes["uncertain_area"] = info[:, 4]
    return {"id": image["id"], "kind": kind, "height": h, "width": w, "tags": ann["tags"],
            "image_bytes": Path(image["path"]).read_bytes(), "label": label, "truth": truth,
            "boxes": rec_boxes}


def _label_shard(ids, path, images, annotations, kinds, classes, params, ucm_dir):
    split = "val" if Path(path).name.startswith("labels-val") else "train"
    ucms = UcmReader(ucm_dir) if (ucm_dir is not None and any(kinds[i] == "box" for i in ids)) else {}
    records = [image_record(images[i], annotations[i], kinds[i], classes, params, ucms) for i in ids]
    write_label_shard(path, records, classes, split, params=params)
    return {k: sum(kinds[i] == k for i in ids) for k in ("pixel", "box", "image")}


def run_labels(images_json, annotations_json, split_json, ucm_dir, out_dir, params: dict,
               progress: bool = True) -> dict:
    """Write ``labels-train-NNNNN.h5`` and ``labels-val-NNNNN.h5`` into ``out_dir``."""
    params = label_params(params)
    images = {r["id"]: r for r in load_images(images_json)}
    classes, annotations = load_annotations(annotations_json)
    assignment = load_split(split_json)
    missing = [i for i in assignment if i not in images or i not in annotations]
    if missing:
        raise InputError(split_json, f"image {missing[0]} is not in the index (rerun the split stage)")
    val = {i: "pixel" for i, r in images.items() if r["split"] == "val" and annotations[i]["mask"] is not None}
    need_ucm = params["strategy"] == "ucm" and any(k == "box" for k in assignment.values())
    if need_ucm and (ucm_dir is None or not Path(ucm_dir).exists()):
        raise InputError(ucm_dir or "data/ucm", "the ucm strategy needs UCM shards (run the ucm stage)")
    plans = [("train", plan_shards(assignment, params["shard_size"]), assignment),
             ("val", plan_shards(val, params["shard_size"]), val)]
    shards, names, kinds_of = [], [], {}
    for split, plan, kinds in plans:
        for k, ids in enumerate(plan):
            shards.append(ids)
            names.append(f"labels-{split}-{k:05d}.h5")
        kinds_of.update(kinds)
    task = functools.partial(_label_shard, images=images, annotations=annotations, kinds=kinds_of,
                             classes=classes, params=params, ucm_dir=ucm_dir if need_ucm else None)
    counts = run_sharded(task, shards, out_dir, lambda k: names[k], params["workers"], "labels", progress)
    summary = {"train": {k: sum(c[k] for c, n in zip(counts, names) if n.startswith("labels-train"))
                         for k in ("pixel", "box", "image")},
               "val": len(val), "strategy": params["strategy"],
               "boxes": sum(len(annotations[i]["boxes"]) for i, k in assignment.items() if k == "box")}
    return summary


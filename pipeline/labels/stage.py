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

from pipeline.labels.strategies import STRATEGIES, UCM_STRATEGIES, box_soft_labels, parse_strategy
from pipeline.labels.ucm_rules import DEFAULT_MARGIN, PAPER_ALPHA, PAPER_THRESHOLDS, RULES
from pipeline.core.errors import ErrorPolicy, InputError
from pipeline.labels.external import FORMATS as EXTERNAL_FORMATS
from pipeline.labels.external import load_external_masks
from pipeline.core.fileio import decode_image, read_image, read_json
from pipeline.labels.grabcut import DEFAULT_CONTEXT, DEFAULT_ITERATIONS
from pipeline.core.index import load_annotations, load_images, read_mask
from pipeline.core.parallel import plan_shards, run_sharded
from pipeline.core.shards import BOX_DTYPE, UcmReader, encode_class_map, write_label_shard

NO_STRATEGY = 255  # BOX_DTYPE.strategy of boxes that were not turned into labels


def load_split(path) -> dict[str, str]:
    doc = read_json(path)
    if doc.get("format") != "mixseg-split":
        raise InputError(path, "not a mixseg split file (run `mixseg split`)")
    return doc["assignment"]


def check_strategy(name: str, key: str) -> None:
    """Refuse an unknown strategy name or bad ``_t`` suffixes, naming the ``key`` of params.yaml."""
    try:
        _, over = parse_strategy(name)
        t = over.get("thresholds")
        if t is not None and (any(b <= a for a, b in zip(t, t[1:])) or t[0] <= 0 or t[-1] > 1):
            raise ValueError(f"box strategy {name!r}: thresholds must increase within (0, 1], got {t}")
        if not 0 < over.get("alpha", 1) <= 1:
            raise ValueError(f"box strategy {name!r}: alpha must be in (0, 1], got {over['alpha']}")
    except ValueError as e:
        raise InputError("params.yaml", f"{key} must be one of {STRATEGIES} (ucm and hard with optional "
                                        f"_t<threshold> / _a<alpha> / _<rule> suffixes): {e}") from None


def label_params(params: dict) -> dict:
    """The labels section with defaults filled in and checked."""
    p = {"strategy": "ucm", "rule": "enclosed", "margin": DEFAULT_MARGIN, "thresholds": list(PAPER_THRESHOLDS),
         "alpha": PAPER_ALPHA, "span": 0.0, "band": None, "seed": 0, "external_dir": None, "external_format": "class",
         "shard_size": 200, "workers": 1, **(params or {})}
    p.setdefault("on_error", "fail")
    if p["on_error"] not in ("fail", "skip"):
        raise InputError("params.yaml", f"labels.on_error must be 'fail' or 'skip', not {p['on_error']!r}")
    p["grabcut"] = {"iterations": DEFAULT_ITERATIONS, "context": DEFAULT_CONTEXT, **(p.get("grabcut") or {})}
    if p["rule"] not in RULES:
        raise InputError("params.yaml", f"labels.rule must be one of {RULES}, not {p['rule']!r}")
    if not 0 <= float(p["margin"]) <= 1:
        raise InputError("params.yaml", f"labels.margin must be in [0, 1], got {p['margin']}")
    check_strategy(p["strategy"], "labels.strategy")
    if p["external_format"] not in EXTERNAL_FORMATS:
        raise InputError("params.yaml", f"labels.external_format must be one of {EXTERNAL_FORMATS}, "
                                        f"not {p['external_format']!r}")
    if int(p["grabcut"]["iterations"]) < 1:
        raise InputError("params.yaml", f"labels.grabcut.iterations must be >= 1, got {p['grabcut']['iterations']}")
    if p["grabcut"]["context"] is not None and float(p["grabcut"]["context"]) <= 0:
        raise InputError("params.yaml", f"labels.grabcut.context must be > 0 or null, got {p['grabcut']['context']}")
    t = [float(x) for x in p["thresholds"]]
    if not t or any(b <= a for a, b in zip(t, t[1:])) or t[0] <= 0 or t[-1] > 1:
        raise InputError("params.yaml", f"labels.thresholds must increase within (0, 1], got {t}")
    if not 0 <= float(p["span"]) <= 1:
        raise InputError("params.yaml", f"labels.span must be in [0, 1], got {p['span']}")
    if p["band"] is not None:
        if not 0 <= float(p["band"]) <= 1:
            raise InputError("params.yaml", f"labels.band must be in [0, 1] or null, got {p['band']}")
        p["band"] = float(p["band"])
    if not 0 < float(p["alpha"]) <= 1:
        raise InputError("params.yaml", f"labels.alpha must be in (0, 1], got {p['alpha']}")
    p["thresholds"], p["alpha"] = t, float(p["alpha"])
    return p


def strategy_needs(strategy: str) -> str | None:
    """What a box strategy reads beside the boxes: ``"ucm"``, ``"image"``, ``"external"`` or None."""
    base, _ = parse_strategy(strategy)
    return {"grabcut": "image", "external": "external"}.get(base, "ucm" if base in UCM_STRATEGIES else None)


def strategy_inputs(need: str | None, image: dict, boxes: np.ndarray, params: dict, ucms,
                    image_bytes: bytes | None = None) -> dict:
    """What a strategy needing ``need`` (see :func:`strategy_needs`) reads for one index image
    record, as keyword arguments of ``box_soft_labels``: its UCM from ``ucms``, its pixels
    (decoded from ``image_bytes`` or read from disk) or its masks from ``labels.external_dir``."""
    h, w = image["height"], image["width"]
    if need == "ucm":
        if image["id"] not in ucms:
            why = getattr(ucms, "skipped", {}).get(image["id"])
            raise InputError(image["path"], f"no UCM for image {image['id']} " +
                             (f"(the ucm stage skipped it: {why})" if why else "(rerun the ucm stage)"))
        ucm2 = ucms[image["id"]]
        if ucm2.shape != (2 * h + 1, 2 * w + 1):
            raise InputError(image["path"], f"UCM of {image['id']} is {ucm2.shape}, expected "
                                            f"{(2 * h + 1, 2 * w + 1)}")
        return {"ucm2": ucm2}
    if need == "image":
        pixels = decode_image(image_bytes, image["path"]) if image_bytes is not None else read_image(image["path"])
        if pixels.shape[:2] != (h, w):
            raise InputError(image["path"], f"image is {pixels.shape[1]}x{pixels.shape[0]}, index says {w}x{h}")
        return {"image": pixels}
    if need == "external":
        return {"external": load_external_masks(params["external_dir"], image["id"], h, w,
                                                params["external_format"], num_boxes=len(boxes))}
    return {}


def labels_from_inputs(strategy: str, boxes: np.ndarray, num_classes: int, shape, params: dict, inputs: dict):
    """``box_soft_labels`` with the knobs of the labels section (``label_params``) and
    ``inputs`` from :func:`strategy_inputs`.  Returns ``(labels, info)``."""
    inputs = dict(inputs)
    return box_soft_labels(inputs.pop("ucm2", None), boxes, num_classes, strategy, params["thresholds"],
                           params["alpha"], shape=shape, rule=params["rule"], margin=float(params["margin"]),
                           span=float(params["span"]), band=params["band"], seed=int(params["seed"]), grabcut_iterations=int(params["grabcut"]["iterations"]),
                           grabcut_context=params["grabcut"]["context"], **inputs)


def boxes_to_labels(strategy: str, image: dict, boxes: np.ndarray, num_classes: int, params: dict, ucms,
                    image_bytes: bytes | None = None):
    """Labels of one image's boxes by ``strategy``, fetching what it needs."""
    need = strategy_needs(strategy) if len(boxes) else None
    inputs = strategy_inputs(need, image, boxes, params, ucms, image_bytes)
    return labels_from_inputs(strategy, boxes, num_classes, (image["height"], image["width"]), params, inputs)


def image_record(image: dict, ann: dict, kind: str, classes, params: dict, ucms) -> dict:
    """Build one shard record (see ``pipeline.core.shards.write_label_shard``)."""
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
        strategy = params["strategy"]
        label, info = boxes_to_labels(strategy, image, boxes, num_classes, params, ucms, image_bytes)
        rec_boxes["strategy"] = STRATEGIES.index(parse_strategy(strategy)[0])
        rec_boxes["threshold"] = info[:, 0]
        rec_boxes["fallback"] = info[:, 1]
        rec_boxes["confident_area"] = info[:, 3]
        rec_boxes["uncertain_area"] = info[:, 4]
    return {"id": image["id"], "kind": kind, "height": h, "width": w, "tags": ann["tags"],
            "image_bytes": image_bytes, "label": label, "truth": truth,
            "boxes": rec_boxes}


def _label_shard(ids, path, images, annotations, kinds, classes, params, ucm_dir, policy=None):
    policy = policy or ErrorPolicy("fail")
    split = "val" if Path(path).name.startswith("labels-val") else "train"
    ucms = UcmReader(ucm_dir) if (ucm_dir is not None and any(kinds[i] == "box" for i in ids)) else {}
    records = []
    for i in ids:
        try:
            records.append(image_record(images[i], annotations[i], kinds[i], classes, params, ucms))
        except InputError as e:  # on_error: skip records it, fail re-raises
            policy.handle(i, e)
    write_label_shard(path, records, classes, split, params=params, strategies=STRATEGIES)
    return {k: sum(kinds[r["id"]] == k for r in records) for k in ("pixel", "box", "image")}


def run_labels(images_json, annotations_json, split_json, ucm_dir, out_dir, params: dict,
               progress: bool = True) -> dict:
    """Write ``labels-train-NNNNN.h5`` and ``labels-val-NNNNN.h5`` into ``out_dir``.

    ``labels.on_error: skip`` leaves out an image whose record cannot be built (mis-sized
    or unreadable mask, missing image file, missing UCM) and lists it with the reason in
    ``out_dir/skipped.json``, written with the shards (``[]`` when none).
    """
    params = label_params(params)
    policy = ErrorPolicy(params["on_error"])
    images = {r["id"]: r for r in load_images(images_json)}
    classes, annotations = load_annotations(annotations_json)
    assignment = load_split(split_json)
    missing = [i for i in assignment if i not in images or i not in annotations]
    if missing:
        raise InputError(split_json, f"image {missing[0]} is not in the index (rerun the split stage)")
    val = {i: "pixel" for i, r in images.items() if r["split"] == "val" and annotations[i]["mask"] is not None}
    need_ucm = strategy_needs(params["strategy"]) == "ucm" and any(k == "box" for k in assignment.values())
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
    counts = run_sharded(task, shards, out_dir, lambda k: names[k], params["workers"], "labels", progress,
                         policy=policy)
    skipped = {s["id"] for s in policy.skipped}
    summary = {"train": {k: sum(c[k] for c, n in zip(counts, names) if n.startswith("labels-train"))
                         for k in ("pixel", "box", "image")},
               "val": sum(c["pixel"] for c, n in zip(counts, names) if n.startswith("labels-val")),
               "strategy": params["strategy"],
               "boxes": sum(len(annotations[i]["boxes"]) for i, k in assignment.items()
                            if k == "box" and i not in skipped),
               "skipped": len(policy.skipped)}
    return summary


"""How good are box-derived labels?  Score each strategy against the true masks
of the box subset.

For every box-subset image with a true mask, the labels a strategy makes from
the boxes are compared with the truth on the pixels the strategy labels (at
least one bit) and the truth does not mark void.  A soft pixel with K classes
counts 1/K towards each (as in the loss, Eq. 3).  Reported per strategy:

* ``miou``: mean IoU over the classes present (background included), in %;
* ``per_class_iou``;
* ``fg_precision`` / ``fg_recall``: pixels labelled with any foreground class
  against the true foreground (recall over all true foreground pixels, so
  ignored ones count as missed), in %;
* ``box_labelled`` / ``box_ignored``: share of pixels inside boxes that get a
  label / are left ignored, in %;
* ``seconds_per_box`` and ``fallback_boxes``;
* the coverage-fair scores ``miou_fair``, ``per_class_iou_fair``, ``fg_precision_fair``,
  ``fg_recall_fair``: the same, with every ignored pixel inside a box counted as that
  box's class -- of the smallest box holding it when there are several (first in the
  image's box order on a tie), :func:`fill_ignored`.  That is what a user who trains on
  hard labels gets, so leaving pixels out cannot pass for accuracy; a strategy that
  ignores nothing scores the same on both.
"""

from __future__ import annotations

import time

import numpy as np
from tqdm import tqdm

from pipeline.core.config import BoxStrategy, LabelsConfig, QualityConfig
from pipeline.core.errors import InputError
from pipeline.core.index import load_annotations, load_images, read_mask
from pipeline.core.metrics import confusion_matrix, segmentation_metrics
from pipeline.core.shards import LabelMap, UcmReader, bit_count, decode_bitsets
from pipeline.labels.stage import box_labels
from pipeline.labels.strategies import box_soft_labels, fetch_inputs
from pipeline.split import load_split


def soft_confusion(labels: np.ndarray, truth_map: np.ndarray, num_classes: int) -> np.ndarray:
    """(C+1, C+1) float64 confusion, rows = truth, columns = label (soft pixels split 1/K).

    ``labels``: (H, W) bitsets or a :class:`LabelMap` (beyond 64 classes); ``truth_map``:
    (H, W) uint8 class map, 255 = void.  Pixels with no label bit or void truth are left
    out.  A pixel with K label bits is K weighted entries of
    :func:`pipeline.core.metrics.confusion_matrix`, 1/K each; the single-class pixels come
    first (their counts stay exact integers).
    """
    n = num_classes
    if isinstance(labels, LabelMap):
        pix, pred, weights = labels.pixel_classes()
        tru = truth_map.reshape(-1)[pix]
        keep = tru < n
        return confusion_matrix(pred[keep], tru[keep].astype(np.int64), n, weights[keep])
    valid = (labels != 0) & (truth_map < n)
    lab = labels[valid]
    tru = truth_map[valid].astype(np.int64)
    counts = bit_count(lab)
    single = counts == 1
    pix, cls = np.nonzero(decode_bitsets(lab[~single], n))  # pixel-major: each cell adds up in pixel order
    pred = np.concatenate([np.log2(lab[single].astype(np.float64)).astype(np.int64), cls])
    truth = np.concatenate([tru[single], tru[~single][pix]])
    weights = np.concatenate([np.ones(int(single.sum())), 1.0 / counts[~single][pix]])
    return confusion_matrix(pred, truth, n, weights)


def box_owner(boxes: np.ndarray, shape) -> np.ndarray:
    """(H, W) int64: the class of the smallest box holding each pixel (the first of the
    smallest in ``boxes`` order on a tie), 0 outside every box."""
    owner = np.zeros(shape, np.int64)
    boxes = np.asarray(boxes, np.int64).reshape(-1, 5)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    for k in np.lexsort((-np.arange(len(boxes)), -area)):  # largest first, so the smallest is painted last
        x0, y0, x1, y1, c = boxes[k]
        owner[y0:y1, x0:x1] = c
    return owner


def fill_ignored(labels: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """``labels`` with every ignored pixel (no bit) inside a box set to the one bit of
    ``owner`` (:func:`box_owner`); ignored pixels outside every box stay ignored."""
    if isinstance(labels, LabelMap):
        fill = (labels.codes == labels.ignore) & (owner > 0)
        if not fill.any():
            return labels
        codes = labels.codes.copy()
        codes[fill] = owner[fill]
        return LabelMap(codes, labels.num_classes, labels.sets, labels.offsets)
    fill = (labels == 0) & (owner > 0)
    if not fill.any():
        return labels
    out = labels.copy()
    out[fill] = np.left_shift(labels.dtype.type(1), owner[fill].astype(labels.dtype))
    return out


def _fg_counts(labels, true_fg, valid) -> tuple[int, int, int]:
    """(foreground pixels labelled foreground, labelled foreground on valid truth, true foreground)."""
    if isinstance(labels, LabelMap):
        lab_fg = (labels.codes != 0) & (labels.codes != labels.ignore)  # a set has a foreground class
    else:
        lab_fg = (labels & ~labels.dtype.type(1)) != 0  # any foreground bit
    return np.sum(lab_fg & true_fg), np.sum(lab_fg & valid), np.sum(true_fg)


def _scores(conf, fg_stats, classes) -> tuple:
    scores = segmentation_metrics(conf, classes, digits=2)
    tp_fg, label_fg, true_fg = fg_stats
    return (None if np.isnan(scores["mIU"]) else scores["mIU"], scores["per_class_iou"],
            round(100 * tp_fg / max(label_fg, 1e-9), 2), round(100 * tp_fg / max(true_fg, 1e-9), 2))


def summarize(conf, fg_stats, box_px, box_labelled, seconds, n_boxes, n_fallback, classes,
              conf_fair=None, fg_fair=None) -> dict:
    """One strategy's scores (module docstring) from its accumulated confusion ``conf``,
    ``fg_stats`` = (foreground pixels right, labelled, true), the box pixels and how many
    of them got a label, the labelling time, the boxes and the fallback boxes; the fair
    scores from ``conf_fair`` and ``fg_fair``, the same of the filled labels, when given."""
    miou, per_class, precision, recall = _scores(conf, fg_stats, classes)
    out = {
        "miou": miou,
        "per_class_iou": per_class,
        "fg_precision": precision,
        "fg_recall": recall,
        "box_labelled": round(100 * box_labelled / max(box_px, 1), 2),
        "box_ignored": round(100 * (1 - box_labelled / max(box_px, 1)), 2),
        "boxes": int(n_boxes),
        "fallback_boxes": int(n_fallback),
        "seconds_per_box": round(seconds / max(n_boxes, 1), 6),
    }
    if conf_fair is not None:
        miou, per_class, precision, recall = _scores(conf_fair, fg_fair, classes)
        out.update(miou_fair=miou, per_class_iou_fair=per_class, fg_precision_fair=precision,
                   fg_recall_fair=recall)
    return out


def score_strategies(items, classes, strategies: list[BoxStrategy], ucms, progress=True, background=True) -> dict:
    """Score ``strategies`` on ``items`` = [(image record, annotation record)].

    ``background=False`` (the index's class 0 is a placeholder no pixel has): the labels are
    scored as the labels stage writes them, with what the boxes leave ignored, so class 0 is
    absent and left out of the means.

    Each strategy's inputs (UCM, decoded image, external masks) are fetched once per
    image and outside the timer: ``seconds_per_box`` is the time of turning boxes into
    labels only.  Returns ``{strategy name: summary}``.
    """
    n = len(classes)
    acc = {s.name: {"conf": np.zeros((n, n)), "fg": np.zeros(3), "conf_fair": np.zeros((n, n)),
                    "fg_fair": np.zeros(3), "box_px": 0, "box_lab": 0, "t": 0.0, "fb": 0}
           for s in strategies}
    n_boxes = 0
    for s in strategies:  # load the JIT-compiled kernels before anything is timed
        if s.needs == "ucm":
            box_soft_labels(np.array([[0, 0, 2, 2, 1]]), min(n, 64), s, (4, 4), {"ucm2": np.zeros((9, 9), np.uint8)})
    for image, ann in tqdm(items, desc="quality", unit="img", disable=not progress):
        truth_map = read_mask(ann["mask"])
        boxes = np.asarray(ann["boxes"], np.int64).reshape(-1, 5)
        n_boxes += len(boxes)
        h, w = image["height"], image["width"]
        if truth_map.shape != (h, w):
            raise InputError(ann["mask"].path, f"mask is {truth_map.shape[1]}x{truth_map.shape[0]}, image is {w}x{h}")
        owner = box_owner(boxes, (h, w))
        in_box = owner > 0
        valid = truth_map < n
        true_fg = valid & (truth_map > 0)
        inputs = {}
        for s in strategies:
            if s.needs not in inputs:
                inputs[s.needs] = fetch_inputs(s, image, len(boxes), ucms)
            t0 = time.perf_counter()
            labels, info = box_labels(boxes, n, s, (h, w), inputs[s.needs], image["path"], image["id"], background)
            a = acc[s.name]
            a["t"] += time.perf_counter() - t0
            a["fb"] += int(info[:, 1].sum())
            a["conf"] += soft_confusion(labels, truth_map, n)
            a["fg"] += _fg_counts(labels, true_fg, valid)
            fair = fill_ignored(labels, owner)
            a["conf_fair"] += soft_confusion(fair, truth_map, n)
            a["fg_fair"] += _fg_counts(fair, true_fg, valid)
            a["box_px"] += int(in_box.sum())
            labelled = (labels.codes != labels.ignore) if isinstance(labels, LabelMap) else labels != 0
            a["box_lab"] += int((in_box & labelled).sum())
    return {s: summarize(a["conf"], a["fg"], a["box_px"], a["box_lab"], a["t"], n_boxes, a["fb"], classes,
                         a["conf_fair"], a["fg_fair"])
            for s, a in acc.items()}


def run_quality(images_json, annotations_json, split_json, ucm_dir, labels: LabelsConfig, quality: QualityConfig,
                progress: bool = True) -> dict:
    """Label quality of each strategy of ``quality.strategies`` (knobs from the labels
    section) on the box subset (images with a true mask)."""
    strategies = [labels.box_strategy(name) for name in quality.strategies]
    images = {r["id"]: r for r in load_images(images_json)}
    classes, annotations, background = load_annotations(annotations_json, with_background=True)
    box_ids = sorted(i for i, k in load_split(split_json).items() if k == "box")
    items = [(images[i], annotations[i]) for i in box_ids if annotations[i]["mask"] is not None]
    if not items:
        raise InputError(split_json, "no box-subset image has a true mask to score against")
    ucms = UcmReader(ucm_dir) if any(s.needs == "ucm" for s in strategies) else {}
    result = score_strategies(items, classes, strategies, ucms, progress, background)
    return {"images": len(items), **result}

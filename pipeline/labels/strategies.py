"""Box strategies: one image's boxes -> soft pixel labels (SPEC section 4).

A registry of small functions with one signature,
``strategy(boxes, num_classes, s, shape, inputs) -> (labels, info)``, where ``s`` is the
:class:`pipeline.core.config.BoxStrategy` (every knob resolved, suffixes applied) and
``inputs`` what :func:`fetch_inputs` read for it (``s.needs``):

* ``ucm``: the multi-threshold UCM rule (``s.rule``: ``paper`` or ``enclosed``,
  :mod:`pipeline.labels.ucm_rules`; the enclosed rule with its box-confidence knobs
  ``clear``, ``prior``, ``prior_band``, ``floor``, its size knob ``small_box`` and its second
  reading ``low_alpha`` with ``low_ratio``, ``low_span``, ``low_max``); needs the UCM;
* ``hard``: the ``ucm`` masks, but each pixel gets exactly one class -- one of its
  confident classes drawn at random (``s.seed``), else the class of a box whose
  uncertain region holds it, else background: nothing is ignored;
* ``raw_box``: the whole box is confident;
* ``grabcut``: OpenCV's GrabCut initialised from the box (:mod:`pipeline.labels.grabcut`);
  needs the image;
* ``external``: masks supplied by the user (:mod:`pipeline.labels.external`).

Across boxes each pixel's label is the bitset of the classes whose confident mask
covers it; else ignored (no bit) if an uncertain mask covers it; else background (bit 0).
"""

from __future__ import annotations

import zlib

import numpy as np

from pipeline.core.config import BoxStrategy
from pipeline.core.errors import InputError
from pipeline.core.fileio import decode_image, read_image
from pipeline.core.shards import bit_count, bitset_dtype, decode_bitsets
from pipeline.labels.external import load_external_masks
from pipeline.labels.grabcut import grabcut_box_masks
from pipeline.labels.ucm_rules import INFO_FIELDS, _combine, ucm_box_masks


def one_class_each(labels: np.ndarray, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Replace every multi-bit pixel by one of its bits, drawn uniformly with ``rng``
    (in raster order of the multi-bit pixels).  Returns a new array."""
    out = labels.copy()
    multi = bit_count(out) > 1
    if multi.any():
        v = out[multi]
        bits = decode_bitsets(v, num_classes)
        k = bits.sum(1)
        pick = np.minimum((rng.random(len(v)) * k).astype(np.int64), k - 1)  # index among the set bits
        rank = np.cumsum(bits, axis=1) - 1
        chosen = np.argmax(bits & (rank == pick[:, None]), axis=1)
        out[multi] = np.left_shift(np.ones(len(v), out.dtype), chosen.astype(out.dtype))
    return out


def hard_rng(boxes: np.ndarray, seed: int) -> np.random.Generator:
    """The ``hard`` strategy's generator: seeded by ``seed`` and the image's boxes, so the
    same inputs give the same draw in any process and any order of images."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(np.ascontiguousarray(boxes, "<i8").tobytes())])


def _paint_masks(shape, dtype, boxes, masks):
    """Confident / uncertain bitsets from per-box boolean crops ``(conf, unc)``."""
    conf = np.zeros(shape, dtype)
    unc = np.zeros(shape, dtype)
    for (x0, y0, x1, y1, c), (cm, um) in zip(boxes, masks):
        bit = dtype.type(1) << dtype.type(c)
        conf[y0:y1, x0:x1][cm] |= bit
        if um is not None:
            unc[y0:y1, x0:x1][um] |= bit
    return conf, unc


def _needed(inputs: dict, key: str, boxes, s: BoxStrategy):
    """``inputs[key]``; a ValueError if it is missing while there are boxes to label."""
    value = inputs.get(key)
    if value is None and len(boxes):
        raise ValueError(f"box strategy {s.name!r} needs the {'UCM' if key == 'ucm2' else key}")
    return value


def _ucm_masks(boxes, dtype, s: BoxStrategy, shape, inputs):
    ucm2 = _needed(inputs, "ucm2", boxes, s)
    if ucm2 is None:
        ucm2 = np.zeros((2 * shape[0] + 1, 2 * shape[1] + 1), np.uint8)
    return ucm_box_masks(ucm2, boxes, dtype, s.thresholds, s.alpha, s.rule, s.margin, s.span, s.band,
                         clear=s.clear, prior=s.prior, prior_band=s.prior_band, floor=s.floor, small_box=s.small_box,
                         low_alpha=s.low_alpha, low_ratio=s.low_ratio, low_span=s.low_span, low_max=s.low_max)


def ucm(boxes, num_classes, s: BoxStrategy, shape, inputs):
    conf, unc, info = _ucm_masks(boxes, bitset_dtype(num_classes), s, shape, inputs)
    return _combine(conf, unc), info


def hard(boxes, num_classes, s: BoxStrategy, shape, inputs):
    dtype = bitset_dtype(num_classes)
    conf, unc, info = _ucm_masks(boxes, dtype, s, shape, inputs)
    labels = np.where(conf != 0, conf, np.where(unc != 0, unc, dtype.type(1))).astype(dtype)
    return one_class_each(labels, num_classes, hard_rng(boxes, s.seed)), info


def raw_box(boxes, num_classes, s: BoxStrategy, shape, inputs):
    dtype = bitset_dtype(num_classes)
    conf = np.zeros(shape, dtype)
    for x0, y0, x1, y1, c in boxes:
        conf[y0:y1, x0:x1] |= dtype.type(1) << dtype.type(c)
    info = _info(boxes)
    info[:, 0] = 1.0
    info[:, 3] = info[:, 2]
    return _combine(conf, np.zeros_like(conf)), info


def _from_masks(boxes, num_classes, shape, pairs, fallback):
    """Labels and info from per-box boolean crops ``pairs`` = [(confident, uncertain or None)]."""
    conf, unc = _paint_masks(shape, bitset_dtype(num_classes), boxes, pairs)
    info = _info(boxes)
    info[:, 0] = np.nan
    info[:, 1] = fallback
    info[:, 3] = [cm.sum() for cm, _ in pairs] if pairs else []
    info[:, 4] = [0 if um is None else (um & ~cm).sum() for cm, um in pairs] if pairs else []
    return _combine(conf, unc), info


def grabcut(boxes, num_classes, s: BoxStrategy, shape, inputs):
    image = _needed(inputs, "image", boxes, s)
    if image is None:
        return _from_masks(boxes, num_classes, shape, [], np.zeros(0, bool))
    if image.shape[:2] != tuple(shape):
        raise ValueError(f"image is {image.shape[:2]}, labels are {tuple(shape)}")
    masks, fallback = grabcut_box_masks(image, boxes, s.grabcut.iterations, s.grabcut.context, s.seed)
    return _from_masks(boxes, num_classes, shape, [(m, None) for m in masks], fallback)


def external(boxes, num_classes, s: BoxStrategy, shape, inputs):
    masks = _needed(inputs, "external", boxes, s)
    if masks is None:
        return _from_masks(boxes, num_classes, shape, [], np.zeros(0, bool))
    pairs, fallback = masks.box_masks(boxes, tuple(shape))
    return _from_masks(boxes, num_classes, shape, pairs, fallback)


#: name -> strategy function; the names are ``pipeline.core.config.STRATEGIES``.
REGISTRY = {"ucm": ucm, "raw_box": raw_box, "grabcut": grabcut, "hard": hard, "external": external}


def _info(boxes) -> np.ndarray:
    info = np.zeros((len(boxes), len(INFO_FIELDS)), np.float64)
    info[:, 2] = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return info


def box_soft_labels(boxes, num_classes: int, s: BoxStrategy, shape, inputs: dict | None = None):
    """Soft pixel labels of one image from its boxes, by strategy ``s``.

    Parameters
    ----------
    boxes : (M, 5) int array
        ``x0, y0, x1, y1, c``: 0-based, end-exclusive pixel box inside the image,
        class index ``c`` in 1..C.
    num_classes : int
        C + 1, background included (<= 64).
    s : BoxStrategy
        The strategy with its knobs (``LabelsConfig.box_strategy(name)``).
    shape : (H, W)
        Image size.
    inputs : dict
        What ``s.needs`` (:func:`fetch_inputs`): ``ucm2``, a (2H+1, 2W+1) uint8 UCM;
        ``image``, (H, W, 3) uint8 RGB; ``external``, an ``ExternalMasks``.

    Returns
    -------
    labels : (H, W) unsigned int array, dtype ``bitset_dtype(num_classes)``
        Bit c set <=> class c; 0 = ignored (uncertain).
    info : (M, 5) float64 array
        Per box (``INFO_FIELDS``): threshold chosen (UCM strategies: relative to the
        box's UCM maximum, beyond the thresholds when the fallback changed the level;
        ``raw_box`` 1; ``grabcut`` / ``external`` NaN), fallback flag (0/1: UCM level
        lowered / grown; GrabCut or the external mask found nothing and the whole box
        was taken), box area, confident area, uncertain area (pixels).
    """
    boxes = np.ascontiguousarray(np.asarray(boxes, np.int64).reshape(-1, 5))
    return REGISTRY[s.base](boxes, num_classes, s, tuple(int(v) for v in shape), inputs or {})


def fetch_inputs(s: BoxStrategy, image: dict, num_boxes: int, ucms, image_bytes: bytes | None = None) -> dict:
    """What strategy ``s`` reads for one index image record (``images.json``) beside its
    boxes: its UCM from ``ucms``, its pixels (decoded from ``image_bytes`` or read from
    disk) or its masks from ``s.external_dir``.  ``{}`` when it needs nothing or there are
    no boxes.  Problems with the files raise :class:`InputError` naming them."""
    h, w = image["height"], image["width"]
    if not num_boxes or s.needs is None:
        return {}
    if s.needs == "ucm":
        if image["id"] not in ucms:
            why = getattr(ucms, "skipped", {}).get(image["id"])
            raise InputError(image["path"], f"no UCM for image {image['id']} " +
                             (f"(the ucm stage skipped it: {why})" if why else "(rerun the ucm stage)"))
        ucm2 = ucms[image["id"]]
        if ucm2.shape != (2 * h + 1, 2 * w + 1):
            raise InputError(image["path"], f"UCM of {image['id']} is {ucm2.shape}, expected "
                                            f"{(2 * h + 1, 2 * w + 1)}")
        return {"ucm2": ucm2}
    if s.needs == "image":
        pixels = decode_image(image_bytes, image["path"]) if image_bytes is not None else read_image(image["path"])
        if pixels.shape[:2] != (h, w):
            raise InputError(image["path"], f"image is {pixels.shape[1]}x{pixels.shape[0]}, index says {w}x{h}")
        return {"image": pixels}
    return {"external": load_external_masks(s.external_dir, image["id"], h, w, s.external_format,
                                            num_boxes=num_boxes)}

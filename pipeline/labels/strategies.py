"""Box strategies: one image's boxes -> soft pixel labels (SPEC section 4).

``ucm`` and ``hard`` apply the UCM region rules of :mod:`pipeline.labels.ucm_rules`;
``raw_box`` takes the whole box; ``grabcut`` runs OpenCV's GrabCut
(:mod:`pipeline.labels.grabcut`); ``external`` reads masks from files
(:mod:`pipeline.labels.external`).  Across boxes each pixel's label is the bitset of
the classes whose confident mask covers it; else ignored (no bit) if an uncertain
mask covers it; else background (bit 0).
"""

from __future__ import annotations

import zlib

import numpy as np

from pipeline.core.shards import bit_count, bitset_dtype, decode_bitsets
from pipeline.labels.ucm_rules import (DEFAULT_MARGIN, INFO_FIELDS, PAPER_ALPHA, PAPER_THRESHOLDS, RULES,
                                       _check_thresholds, _combine, ucm_box_masks)

#: Box strategies; the index is the ``strategy`` code stored per box in the label shards.
STRATEGIES = ("ucm", "raw_box", "grabcut", "hard", "external")
#: Strategies built on the UCM rule (they need a UCM and take ``_t<value>`` / rule suffixes).
UCM_STRATEGIES = ("ucm", "hard")


def parse_strategy(name: str) -> tuple[str, dict]:
    """Split a strategy name into the base strategy and its overrides.

    ``ucm``, ``raw_box``, ``grabcut``, ``hard``, ``external`` are the strategies;
    a ucm-based one (``ucm``, ``hard``) may carry suffixes, each after ``_``:
    ``t<value>`` (repeatable) replaces ``thresholds`` by the listed values,
    ``a<value>`` replaces ``alpha`` and a rule name (``paper``, ``enclosed``)
    replaces ``rule``.  ``ucm_t0.5`` is the single-threshold variant of the
    paper's Fig. 8; ``ucm_paper_a0.3`` the paper's method whatever the labels
    section says; ``ucm_paper_t0.25_t0.75`` the centre rule at two thresholds.

    Returns
    -------
    (base, overrides) : overrides has keys ``thresholds``, ``alpha`` and/or ``rule``.

    Raises
    ------
    ValueError
        Unknown base, unknown suffix, or suffixes on a strategy without a UCM.
    """
    name = str(name)
    base = max((s for s in STRATEGIES if name == s or name.startswith(s + "_")), key=len, default=None)
    if base is None:
        raise ValueError(f"unknown box strategy {name!r}; expected one of {STRATEGIES} "
                         "(ucm and hard take suffixes such as _t0.5 or _paper)")
    over: dict = {}
    rest = name[len(base) + 1:]
    for token in rest.split("_") if rest else []:
        if base not in UCM_STRATEGIES:
            raise ValueError(f"box strategy {name!r}: only {UCM_STRATEGIES} take suffixes")
        if token in RULES:
            over["rule"] = token
        elif token[:1] in ("t", "a"):
            try:
                value = float(token[1:])
            except ValueError:
                raise ValueError(f"box strategy {name!r}: bad suffix {token!r}") from None
            if token[0] == "t":
                over.setdefault("thresholds", []).append(value)
            else:
                over["alpha"] = value
        else:
            raise ValueError(f"box strategy {name!r}: unknown suffix {token!r} (t<threshold>, a<alpha> or one "
                             f"of {RULES})")
    return base, over


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


def box_soft_labels(ucm2: np.ndarray | None, boxes, num_classes: int, strategy: str = "ucm",
                    thresholds=PAPER_THRESHOLDS, alpha: float = PAPER_ALPHA, shape=None,
                    rule: str = "paper", margin: float = DEFAULT_MARGIN, *, span: float = 0.0,
                    band: float | None = None,
                    image: np.ndarray | None = None,
                    external=None, seed: int = 0, grabcut_iterations: int = 5,
                    grabcut_context: float = 0.5):
    """Soft pixel labels of one image from its boxes.

    Parameters
    ----------
    ucm2 : (2H+1, 2W+1) uint8 array or None
        Ultrametric contour map on the doubled grid, 0..255 (read by ``ucm`` and
        ``hard`` only).
    boxes : (M, 5) int array
        ``x0, y0, x1, y1, c``: 0-based, end-exclusive pixel box inside the image,
        class index ``c`` in 1..C.
    num_classes : int
        C + 1, background included (<= 64).
    strategy : str
        ``ucm``: the multi-threshold UCM rule (``rule``); ``raw_box``: the whole box
        is confident; ``grabcut``: cv2.grabCut initialised from the box
        (:mod:`pipeline.labels.grabcut`, needs ``image``); ``hard``: the ``ucm`` masks, but
        each pixel gets exactly one class -- one of its confident classes drawn at
        random (``seed``), else the class of a box whose uncertain region holds it,
        else background: nothing is ignored; ``external``: masks supplied by the
        user (``external``, a :class:`pipeline.labels.external.ExternalMasks`).
        ``ucm`` and ``hard`` take the suffixes of :func:`parse_strategy`
        (``ucm_t0.5``: single threshold 1/2).
    thresholds : sequence of float in (0, 1]
        Increasing thresholds relative to the box's UCM maximum.  One threshold
        gives the single-scale variant: no uncertain region (except after the
        fallback).
    alpha : float
        Minimum confident area as a fraction of the box area.
    shape : (H, W), optional
        Image size; required when neither ``ucm2`` nor ``image`` is given.
    rule : {"paper", "enclosed"}
        Region selection of the UCM rule: ``paper`` grows from the box centre
        (SPEC section 4); ``enclosed`` takes what the box's outside cannot reach
        (module docstring).  Boxes with no outside (the whole image) use ``paper``.
    margin : float
        Width of the outside ring of the ``enclosed`` rule, as a fraction of the
        box's width / height (at least 1 pixel).
    span : float in [0, 1]
        ``enclosed`` rule, tightness prior: a level qualifies for the confident
        mask only if its region reaches across at least ``span`` of the box's
        height and of its width (a tight box touches the object on all four
        sides).  0 = off.
    band : float in [0, 1] or None
        ``enclosed`` rule: pixels enclosed by a contour of at least ``band`` times
        the confident level's strength, beyond the confident mask, are uncertain
        too (matters when the confident level is at or below the weakest
        threshold).  None = off.
    image : (H, W, 3) uint8 RGB array, optional
        Needed by ``grabcut`` only.
    external : ExternalMasks, optional
        Needed by ``external`` only.
    seed : int
        Seed of ``hard``'s draw and of GrabCut's GMM initialisation.
    grabcut_iterations, grabcut_context : int, float
        See :func:`pipeline.labels.grabcut.grabcut_box_masks`.

    Returns
    -------
    labels : (H, W) unsigned int array, dtype ``bitset_dtype(num_classes)``
        Bit c set <=> class c; 0 = ignored (uncertain).
    info : (M, 5) float64 array
        Per box: threshold chosen (UCM strategies: relative to the box's UCM
        maximum, beyond the thresholds when the fallback changed the level;
        ``raw_box`` 1; ``grabcut`` / ``external`` NaN), fallback flag (0/1: UCM level
        lowered / grown; GrabCut or the external mask found nothing and the whole
        box was taken), box area, confident area, uncertain area (pixels).
    """
    base, over = parse_strategy(strategy)
    thresholds = over.get("thresholds", thresholds)
    rule = over.get("rule", rule)
    alpha = over.get("alpha", alpha)
    if not 0 < alpha <= 1:
        raise ValueError(f"alpha must be in (0, 1], got {alpha}")
    if rule not in RULES:
        raise ValueError(f"unknown region rule {rule!r}; expected one of {RULES}")
    if ucm2 is not None:
        shape = ((ucm2.shape[0] - 1) // 2, (ucm2.shape[1] - 1) // 2)
    elif image is not None:
        shape = image.shape[:2]
    elif shape is None and external is not None:
        shape = tuple(external.shape)
    elif shape is None:
        raise ValueError("box_soft_labels needs ucm2, image, external or shape to know the image size")
    h, w = shape
    dtype = bitset_dtype(num_classes)
    boxes = np.ascontiguousarray(np.asarray(boxes, np.int64).reshape(-1, 5))
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    if base in UCM_STRATEGIES:
        if ucm2 is None:
            if len(boxes):
                raise ValueError(f"box strategy {strategy!r} needs a UCM")
            ucm2 = np.zeros((2 * h + 1, 2 * w + 1), np.uint8)
        _check_thresholds(thresholds)
        conf, unc, info = ucm_box_masks(ucm2, boxes, dtype, thresholds, alpha, rule, margin, span, band)
        if base == "ucm":
            return _combine(conf, unc), info
        labels = np.where(conf != 0, conf, np.where(unc != 0, unc, dtype.type(1))).astype(dtype)
        return one_class_each(labels, num_classes, hard_rng(boxes, seed)), info
    info = np.zeros((len(boxes), len(INFO_FIELDS)), np.float64)
    info[:, 2] = area
    if base == "raw_box":
        conf = np.zeros((h, w), dtype)
        for x0, y0, x1, y1, c in boxes:
            conf[y0:y1, x0:x1] |= dtype.type(1) << dtype.type(c)
        info[:, 0] = 1.0
        info[:, 3] = area
        return _combine(conf, np.zeros_like(conf)), info
    if base == "grabcut":
        from pipeline.labels.grabcut import grabcut_box_masks
        if image is None:
            if len(boxes):
                raise ValueError("box strategy 'grabcut' needs the image")
            masks, fallback = [], np.zeros(0, bool)
        else:
            if image.shape[:2] != (h, w):
                raise ValueError(f"image is {image.shape[:2]}, labels are {(h, w)}")
            masks, fallback = grabcut_box_masks(image, boxes, grabcut_iterations, grabcut_context, seed)
        pairs = [(m, None) for m in masks]
    else:  # external
        if external is None:
            if len(boxes):
                raise ValueError("box strategy 'external' needs the external masks")
            pairs, fallback = [], np.zeros(0, bool)
        else:
            pairs, fallback = external.box_masks(boxes, (h, w))
    conf, unc = _paint_masks((h, w), dtype, boxes, pairs)
    info[:, 0] = np.nan
    info[:, 1] = fallback
    info[:, 3] = [cm.sum() for cm, _ in pairs] if pairs else []
    info[:, 4] = [0 if um is None else (um & ~cm).sum() for cm, um in pairs] if pairs else []
    return _combine(conf, unc), info

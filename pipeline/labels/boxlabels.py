"""Boxes -> soft pixel labels (SPEC section 4, paper section 3.2).

For a box b of class c and a UCM, the paper's rule is: threshold the box's UCM
crop (normalised by its maximum) at t in (1/4, 2/4, 3/4); F_t is the region
holding the box centre with its enclosed holes filled; the confident mask C_b is
F_t for the smallest t with |F_t| >= alpha |b| (else F_{3/4} grown by the weakest
neighbouring boundaries until it is large enough); the uncertain mask is
F_{3/4} minus C_b; the rest of the box is background.

All thresholds are answered by two linear-time floods over the box pixels:

* ``d(p)``: the bottleneck distance from the centre -- the smallest possible
  largest edge on a path from the centre to p.  {d < t} is the centre's region
  of the segmentation at threshold t.
* ``o(p)``: the largest possible smallest ``d`` on a path from the box border to
  p.  p is cut off from the border by F_t exactly when ``o(p) < t``, so
  {o < t} is F_t with its holes filled.

Raising t past 3/4 adds the neighbouring region with the weakest boundary first,
so the paper's fallback is the smallest level v > 3/4 with |{o < v}| >= alpha |b|.
Both floods use a 257-bucket queue over the uint8 UCM levels.

``rule="enclosed"`` (mixseg's default) keeps the thresholds, alpha and the
confident / uncertain / background structure but replaces the centre seed: a
tight box means the object's outer contour separates it from what lies just
outside the box.  ``e(p)`` is the bottleneck distance from a ring of pixels just
outside the box (``margin`` of the box size), so {e >= t} is the part of the box
enclosed by contours of strength >= t -- holes filled by construction, and no
assumption that the box centre lies on the object (rings, crescents, occluded
objects).  The confident mask is the region enclosed by the *strongest* threshold
that still covers alpha of the box; what the weakest threshold encloses beyond
it is uncertain; if no threshold reaches alpha the level is lowered until one
does.  Measured on CamVid and the synthetic set it is far better than the centre
rule (README, "Box labels").

Two refinements of the enclosed rule, both off unless asked for (``span=0``,
``band=None``; ``params.yaml`` turns them on): ``span`` is the tight-box prior --
a level's region only qualifies if it reaches across ``span`` of the box's height
and width, so a strong contour around a part of the object (a car's windows, a
pedestrian's jacket) is not taken for the object; ``band`` widens the uncertain
region to what a contour of ``band`` times the confident level's strength encloses,
so a box whose confident level had to be lowered keeps an ignored margin.

Other strategies (``raw_box``, ``grabcut``, ``hard``, ``external``) are dispatched
by :func:`box_soft_labels`; see its docstring.

Across boxes each pixel's label is the bitset of the classes whose confident
mask covers it; else ignored (no bit) if an uncertain mask covers it; else
background (bit 0).
"""

from __future__ import annotations

import zlib

import numba
import numpy as np

from pipeline.core.shards import bit_count, bitset_dtype, decode_bitsets

#: Box strategies; the index is the ``strategy`` code stored per box in the label shards.
STRATEGIES = ("ucm", "raw_box", "grabcut", "hard", "external")
#: Strategies built on the UCM rule (they need a UCM and take ``_t<value>`` / rule suffixes).
UCM_STRATEGIES = ("ucm", "hard")
RULES = ("enclosed", "paper")
DEFAULT_MARGIN = 0.1
PAPER_THRESHOLDS = (0.25, 0.5, 0.75)
PAPER_ALPHA = 0.30

# per-box record written to the shards (see pipeline.core.shards.BOX_DTYPE)
INFO_FIELDS = ("threshold", "fallback", "box_area", "confident_area", "uncertain_area")


@numba.njit(cache=True)
def _push(head, nxt, node, top, bucket, p):
    node[top] = p
    nxt[top] = head[bucket]
    head[bucket] = top
    return top + 1


def _work_size(x0, y0, x1, y1) -> int:
    """Pixels of a crop laid out with a power-of-two row stride."""
    return (y1 - y0) * (1 << max(int(x1 - x0) - 1, 0).bit_length())


def _buffers(n):
    """Work arrays for floods over at most ``n`` (strided) pixels, reused across the boxes of an image:
    head, nxt, node (bucket queue), d, o, stack, tmp."""
    return (np.empty(257, np.int32), np.empty(5 * n + 8, np.int32), np.empty(5 * n + 8, np.int32),
            np.empty(n, np.int32), np.empty(n, np.int32), np.empty(n, np.int32), np.empty(n, np.int32))


@numba.njit(cache=True)
def _flood_min(ucm2, X0, Y0, w, h, shift, d, head, nxt, node, stack, top):
    """Bottleneck (min over paths of the max edge) distances on the crop at (X0, Y0) of
    size h x w, from the seeds already in ``d`` and the buckets; levels in increasing
    order.  Pixel (py, px) is ``py << shift | px`` (a power-of-two row stride: no
    division in the loop).  Work at the current level goes on a plain stack (most of
    it: edges inside a UCM region are 0), the rest into linked-list buckets."""
    mask = (1 << shift) - 1
    S = 1 << shift
    for level in range(256):
        sp = 0
        while head[level] != -1:
            k = head[level]
            head[level] = nxt[k]
            p = node[k]
            if d[p] == level:
                stack[sp] = p
                sp += 1
        while sp > 0:
            sp -= 1
            p = stack[sp]
            py = p >> shift
            px = p & mask
            r = 2 * (Y0 + py) + 1
            c = 2 * (X0 + px) + 1
            if px + 1 < w:
                q = p + 1
                e = np.int32(ucm2[r, c + 1])
                nd = e if e > level else level
                if nd < d[q]:
                    d[q] = nd
                    if nd == level:
                        stack[sp] = q
                        sp += 1
                    else:
                        node[top] = q
                        nxt[top] = head[nd]
                        head[nd] = top
                        top += 1
            if px > 0:
                q = p - 1
                e = np.int32(ucm2[r, c - 1])
                nd = e if e > level else level
                if nd < d[q]:
                    d[q] = nd
                    if nd == level:
                        stack[sp] = q
                        sp += 1
                    else:
                        node[top] = q
                        nxt[top] = head[nd]
                        head[nd] = top
                        top += 1
            if py + 1 < h:
                q = p + S
                e = np.int32(ucm2[r + 1, c])
                nd = e if e > level else level
                if nd < d[q]:
                    d[q] = nd
                    if nd == level:
                        stack[sp] = q
                        sp += 1
                    else:
                        node[top] = q
                        nxt[top] = head[nd]
                        head[nd] = top
                        top += 1
            if py > 0:
                q = p - S
                e = np.int32(ucm2[r - 1, c])
                nd = e if e > level else level
                if nd < d[q]:
                    d[q] = nd
                    if nd == level:
                        stack[sp] = q
                        sp += 1
                    else:
                        node[top] = q
                        nxt[top] = head[nd]
                        head[nd] = top
                        top += 1


@numba.njit(cache=True)
def _flood_maximin(d, w, h, shift, o, head, nxt, node, stack, top):
    """Widest paths (max over paths of the min d) from the seeds already in ``o`` and
    the buckets; levels in decreasing order; layout as in :func:`_flood_min`."""
    mask = (1 << shift) - 1
    S = 1 << shift
    for level in range(256, -1, -1):
        sp = 0
        while head[level] != -1:
            k = head[level]
            head[level] = nxt[k]
            p = node[k]
            if o[p] == level:
                stack[sp] = p
                sp += 1
        while sp > 0:
            sp -= 1
            p = stack[sp]
            py = p >> shift
            px = p & mask
            if px + 1 < w:
                q = p + 1
                nv = d[q] if d[q] < level else level
                if nv > o[q]:
                    o[q] = nv
                    if nv == level:
                        stack[sp] = q
                        sp += 1
                    else:
                        node[top] = q
                        nxt[top] = head[nv]
                        head[nv] = top
                        top += 1
            if px > 0:
                q = p - 1
                nv = d[q] if d[q] < level else level
                if nv > o[q]:
                    o[q] = nv
                    if nv == level:
                        stack[sp] = q
                        sp += 1
                    else:
                        node[top] = q
                        nxt[top] = head[nv]
                        head[nv] = top
                        top += 1
            if py + 1 < h:
                q = p + S
                nv = d[q] if d[q] < level else level
                if nv > o[q]:
                    o[q] = nv
                    if nv == level:
                        stack[sp] = q
                        sp += 1
                    else:
                        node[top] = q
                        nxt[top] = head[nv]
                        head[nv] = top
                        top += 1
            if py > 0:
                q = p - S
                nv = d[q] if d[q] < level else level
                if nv > o[q]:
                    o[q] = nv
                    if nv == level:
                        stack[sp] = q
                        sp += 1
                    else:
                        node[top] = q
                        nxt[top] = head[nv]
                        head[nv] = top
                        top += 1


@numba.njit(cache=True)
def _stride_shift(w):
    shift = 0
    while (1 << shift) < w:
        shift += 1
    return shift


@numba.njit(cache=True)
def _box_levels(ucm2, x0, y0, x1, y1, head, nxt, node, d, o, stack, tmp):
    """The paper rule's two floods inside one box (the other arrays are work space).

    Fills ``o[:h*w]`` (filled-region level of each box pixel, row-major) and returns
    ``m``, the largest UCM value on an edge between two box pixels.
    """
    h = y1 - y0
    w = x1 - x0
    n = h * w
    m = 0
    for y in range(y0, y1):
        for x in range(x0, x1 - 1):
            v = ucm2[2 * y + 1, 2 * x + 2]
            if v > m:
                m = v
    for y in range(y0, y1 - 1):
        for x in range(x0, x1):
            v = ucm2[2 * y + 2, 2 * x + 1]
            if v > m:
                m = v
    if m == 0:
        o[:n] = 0
        return m
    shift = _stride_shift(w)
    ns = h << shift
    # d: bottleneck distance from the centre
    head[:] = -1
    d[:ns] = 256
    c = (((h - 1) // 2) << shift) + (w - 1) // 2
    d[c] = 0
    top = _push(head, nxt, node, 0, 0, c)
    _flood_min(ucm2, x0, y0, w, h, shift, d, head, nxt, node, stack, top)
    # o: widest path from the box border over d
    head[:] = -1
    top = 0
    tmp[:ns] = -1
    for py in range(h):
        for px in range(w):
            if py == 0 or px == 0 or py == h - 1 or px == w - 1:
                p = (py << shift) + px
                tmp[p] = d[p]
                top = _push(head, nxt, node, top, d[p], p)
    _flood_maximin(d, w, h, shift, tmp, head, nxt, node, stack, top)
    for py in range(h):
        for px in range(w):
            o[py * w + px] = tmp[(py << shift) + px]
    return m


def _expanded(x0, y0, x1, y1, margin, height, width):
    """The box grown by ``margin`` of its size (at least 1 px) on each side, clipped."""
    mx = max(1, int(np.round(margin * (x1 - x0))))
    my = max(1, int(np.round(margin * (y1 - y0))))
    return max(x0 - mx, 0), max(y0 - my, 0), min(x1 + mx, width), min(y1 + my, height)


@numba.njit(cache=True)
def _enclosed_levels(ucm2, x0, y0, x1, y1, margin, head, nxt, node, d, e_box, stack, tmp):
    """Bottleneck distance from the ring just outside the box to each box pixel.

    Fills ``e_box[:h*w]`` over the box pixels and returns ``m``, the largest UCM
    value on an edge inside the expanded crop, and whether any seed existed (a box
    that fills the image on all four sides has no outside to flood from).
    ``head``/``nxt``/``node``/``d`` are work arrays sized for the expanded crop.
    """
    H = (ucm2.shape[0] - 1) // 2
    W = (ucm2.shape[1] - 1) // 2
    mx = max(1, int(np.round(margin * (x1 - x0))))
    my = max(1, int(np.round(margin * (y1 - y0))))
    X0, Y0, X1, Y1 = max(x0 - mx, 0), max(y0 - my, 0), min(x1 + mx, W), min(y1 + my, H)
    h = Y1 - Y0
    w = X1 - X0
    m = 0
    for y in range(Y0, Y1):
        for x in range(X0, X1 - 1):
            v = ucm2[2 * y + 1, 2 * x + 2]
            if v > m:
                m = v
    for y in range(Y0, Y1 - 1):
        for x in range(X0, X1):
            v = ucm2[2 * y + 2, 2 * x + 1]
            if v > m:
                m = v
    shift = _stride_shift(w)
    head[:] = -1
    d[:h << shift] = 256
    top = 0
    for py in range(h):
        for px in range(w):
            if (py == 0 and Y0 < y0) or (py == h - 1 and Y1 > y1) or (px == 0 and X0 < x0) or (px == w - 1 and X1 > x1):
                p = (py << shift) + px
                d[p] = 0
                top = _push(head, nxt, node, top, 0, p)
    if top == 0:
        return m, False
    _flood_min(ucm2, X0, Y0, w, h, shift, d, head, nxt, node, stack, top)
    bw = x1 - x0
    for y in range(y0, y1):
        for x in range(x0, x1):
            e_box[(y - y0) * bw + (x - x0)] = d[((y - Y0) << shift) + (x - X0)]
    return m, True


@numba.njit(cache=True)
def _paint_enclosed(conf, unc, e, x0, y0, x1, y1, bit, v_conf, v_unc):
    """Mark {e >= v_conf} confident and {v_unc <= e < v_conf} uncertain (OR ``bit`` into each)."""
    w = x1 - x0
    for y in range(y0, y1):
        for x in range(x0, x1):
            v = e[(y - y0) * w + (x - x0)]
            if v >= v_conf:
                conf[y, x] |= bit
            elif v >= v_unc:
                unc[y, x] |= bit


@numba.njit(cache=True)
def _paint(conf, unc, o, x0, y0, x1, y1, bit, v_conf, v_unc):
    """Mark {o < v_conf} confident and {v_conf <= o < v_unc} uncertain (OR ``bit`` into each)."""
    w = x1 - x0
    for y in range(y0, y1):
        for x in range(x0, x1):
            v = o[(y - y0) * w + (x - x0)]
            if v < v_conf:
                conf[y, x] |= bit
            elif v < v_unc:
                unc[y, x] |= bit


@numba.njit(cache=True)
def _extent(line_max, v):
    """Length of the stretch from the first to the last entry of ``line_max`` that is >= v."""
    n = line_max.shape[0]
    first = -1
    for k in range(n):
        if line_max[k] >= v:
            first = k
            break
    if first < 0:
        return 0
    for k in range(n - 1, first - 1, -1):
        if line_max[k] >= v:
            return k - first + 1
    return 0


@numba.njit(cache=True)
def _spans(row_max, col_max, v, need_h, need_w):
    """Does {e >= v} reach across at least ``need_h`` rows and ``need_w`` columns of the box?"""
    return _extent(row_max, v) >= need_h and _extent(col_max, v) >= need_w


@numba.njit(cache=True)
def _enclosed_box(conf, unc, info, i, e, m, x0, y0, x1, y1, bit, thresholds, alpha, hist, span, band):
    """The enclosed rule for one box, given its levels ``e``.  A level qualifies when its
    region covers ``alpha`` of the box and spans ``span`` of its height and width."""
    area = (x1 - x0) * (y1 - y0)
    bh = y1 - y0
    bw = x1 - x0
    row_max = np.zeros(bh, np.int32)
    col_max = np.zeros(bw, np.int32)
    if span > 0:
        for py in range(bh):
            for px in range(bw):
                v = e[py * bw + px]
                if v > row_max[py]:
                    row_max[py] = v
                if v > col_max[px]:
                    col_max[px] = v
    need_h = span * bh - 1e-9
    need_w = span * bw - 1e-9
    nt = thresholds.shape[0]
    if m == 0:  # no boundary anywhere near the box: all of it
        _paint_enclosed(conf, unc, e, x0, y0, x1, y1, bit, 0, 0)
        info[i, 0] = thresholds[nt - 1]
        info[i, 2] = area
        info[i, 3] = area
        return
    # at_least[v] = |{e >= v}|
    hist[:] = 0
    for k in range(area):
        hist[e[k]] += 1
    for v in range(255, -1, -1):
        hist[v] += hist[v + 1]
    need = alpha * area
    v_unc = np.int64(np.ceil(thresholds[0] * m))
    v_conf = -1
    chosen = 0.0
    for j in range(nt - 1, -1, -1):  # strongest enclosing contour first
        v = np.int64(np.ceil(thresholds[j] * m))
        if hist[v] >= need and (span <= 0 or _spans(row_max, col_max, v, need_h, need_w)):
            v_conf = v
            chosen = thresholds[j]
            break
    fallback = v_conf < 0
    if fallback:  # lower the level below the weakest threshold until alpha is covered
        v_conf = 0
        for v in range(v_unc - 1, -1, -1):
            if hist[v] >= need and (span <= 0 or _spans(row_max, col_max, v, need_h, need_w)):
                v_conf = v
                break
        chosen = v_conf / m
        v_unc = v_conf
    if band >= 0:  # what a contour of band x the confident one's strength encloses is uncertain too
        v_band = np.int64(np.floor(band * v_conf))
        if v_band < v_unc:
            v_unc = v_band
    _paint_enclosed(conf, unc, e, x0, y0, x1, y1, bit, v_conf, v_unc)
    info[i, 0] = chosen
    info[i, 1] = 1.0 if fallback else 0.0
    info[i, 2] = area
    info[i, 3] = hist[v_conf]
    info[i, 4] = hist[v_unc] - hist[v_conf]


@numba.njit(cache=True)
def _ucm_boxes(ucm2, boxes, bits, thresholds, alpha, enclosed, margin, span, band, conf, unc, info,
               head, nxt, node, d, o, stack, tmp):
    hist = np.zeros(258, np.int64)
    nt = thresholds.shape[0]
    for i in range(boxes.shape[0]):
        x0, y0, x1, y1 = boxes[i, 0], boxes[i, 1], boxes[i, 2], boxes[i, 3]
        area = (x1 - x0) * (y1 - y0)
        bit = bits[i]
        if enclosed:
            m, seeded = _enclosed_levels(ucm2, x0, y0, x1, y1, margin, head, nxt, node, d, o, stack, tmp)
            if seeded:
                _enclosed_box(conf, unc, info, i, o, m, x0, y0, x1, y1, bit, thresholds, alpha, hist, span, band)
                continue
        m = _box_levels(ucm2, x0, y0, x1, y1, head, nxt, node, d, o, stack, tmp)
        if m == 0:  # no boundary inside the box: one region, the whole box
            _paint(conf, unc, o, x0, y0, x1, y1, bit, 1, 1)
            info[i, 0] = thresholds[0]
            info[i, 2] = area
            info[i, 3] = area
            continue
        # cumulative area below each integer level: below[v] = |{o < v}|
        hist[:] = 0
        for k in range(area):
            hist[o[k] + 1] += 1
        for v in range(1, 258):
            hist[v] += hist[v - 1]
        need = alpha * area
        # {o < t*m} == {o < ceil(t*m)} for integer o
        v_unc = np.int64(np.ceil(thresholds[nt - 1] * m))
        v_conf = -1
        chosen = 0.0
        for j in range(nt):
            v = np.int64(np.ceil(thresholds[j] * m))
            if hist[v] >= need:
                v_conf = v
                chosen = thresholds[j]
                break
        fallback = v_conf < 0
        if fallback:  # grow past the coarsest threshold, weakest boundary first
            v_conf = 257
            for v in range(v_unc + 1, 258):
                if hist[v] >= need:
                    v_conf = v
                    break
            chosen = (v_conf - 1) / m
            v_unc = v_conf
        _paint(conf, unc, o, x0, y0, x1, y1, bit, v_conf, v_unc)
        info[i, 0] = chosen
        info[i, 1] = 1.0 if fallback else 0.0
        info[i, 2] = area
        info[i, 3] = hist[v_conf]
        info[i, 4] = hist[v_unc] - hist[v_conf]


@numba.njit(cache=True)
def _combine(conf, unc):
    """Confident bits where any, else 0 (ignored) where uncertain, else background (1)."""
    out = conf.copy()
    h, w = conf.shape
    for y in range(h):
        for x in range(w):
            if out[y, x] == 0 and unc[y, x] == 0:
                out[y, x] = 1
    return out


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


def _check_thresholds(thresholds) -> np.ndarray:
    t = np.asarray(thresholds, np.float64)
    if t.ndim != 1 or len(t) == 0 or np.any(np.diff(t) <= 0) or t[0] <= 0 or t[-1] > 1:
        raise ValueError(f"thresholds must be increasing values in (0, 1], got {list(thresholds)}")
    return t


def ucm_box_masks(ucm2, boxes, dtype, thresholds, alpha, rule, margin, span=0.0, band=None):
    """The UCM rule's per-pixel confident and uncertain bitsets and per-box info.

    Returns ``conf`` and ``unc``, (H, W) arrays of ``dtype`` holding the bits of the
    classes whose confident / uncertain mask covers each pixel, and ``info`` (M, 5).
    """
    h, w = (ucm2.shape[0] - 1) // 2, (ucm2.shape[1] - 1) // 2
    conf = np.zeros((h, w), dtype)
    unc = np.zeros((h, w), dtype)
    info = np.zeros((len(boxes), len(INFO_FIELDS)), np.float64)
    if len(boxes):
        t = _check_thresholds(thresholds)
        bits = np.array([1 << int(c) for c in boxes[:, 4]], dtype)
        enclosed = rule == "enclosed"
        n = 0
        for x0, y0, x1, y1, _ in boxes:  # work arrays sized for the largest (expanded) box
            n = max(n, _work_size(x0, y0, x1, y1))
            if enclosed:
                n = max(n, _work_size(*_expanded(x0, y0, x1, y1, margin, h, w)))
        _ucm_boxes(np.ascontiguousarray(ucm2, np.uint8), boxes, bits, t, float(alpha), enclosed,
                   float(margin), float(span), -1.0 if band is None else float(band), conf, unc, info,
                   *_buffers(n))
    return conf, unc, info


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


def box_scale_masks(ucm2: np.ndarray, box, thresholds=PAPER_THRESHOLDS, rule: str = "paper",
                    margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """The region of one box at each threshold, for display: F_t (``paper``: the
    centre's region, holes filled) or the part enclosed at t (``enclosed``).

    Returns (len(thresholds), y1-y0, x1-x0) bool.
    """
    x0, y0, x1, y1 = (int(v) for v in box[:4])
    u = np.ascontiguousarray(ucm2, np.uint8)
    height, width = (u.shape[0] - 1) // 2, (u.shape[1] - 1) // 2
    X0, Y0, X1, Y1 = _expanded(x0, y0, x1, y1, margin, height, width)
    head, nxt, node, d, o, stack, tmp = _buffers(max(_work_size(X0, Y0, X1, Y1), _work_size(x0, y0, x1, y1)))
    if rule == "enclosed":
        m, seeded = _enclosed_levels(u, x0, y0, x1, y1, float(margin), head, nxt, node, d, o, stack, tmp)
        if seeded:
            e = o[:(y1 - y0) * (x1 - x0)].reshape(y1 - y0, x1 - x0)
            if m == 0:
                return np.ones((len(thresholds),) + e.shape, bool)
            return np.stack([e >= np.ceil(t * m) for t in thresholds])
    m = _box_levels(u, x0, y0, x1, y1, head, nxt, node, d, o, stack, tmp)
    o = o[:(y1 - y0) * (x1 - x0)].reshape(y1 - y0, x1 - x0)
    if m == 0:
        return np.ones((len(thresholds),) + o.shape, bool)
    return np.stack([o < np.ceil(t * m) for t in thresholds])

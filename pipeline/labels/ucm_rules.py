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
"""

from __future__ import annotations

import numba
import numpy as np


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

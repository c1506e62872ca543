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

Two more, for photographs, also off unless asked for (``clear=0``, ``floor=None``):
``clear`` is a per-box confidence -- the level at which the confident mask is enclosed
(the threshold times the crop's largest UCM value, or the lowered level after a fallback;
UCM scale 0..1) must be at least ``clear``, else the contours give no clear object and
the box is labelled by a box prior instead (:func:`_prior_box`: pixel p is the
object when ``e(p)/m + r(p) >= prior + prior_band``, ignored within ``prior_band`` of
``prior``, background below; ``r`` is p's distance to the nearest side of the box over
half the box size, 0 on the sides, 1 at the centre -- the tight-box prior, weighed
equally with how strongly p is enclosed); ``floor`` cuts the uncertain region to what
contours of at least ``floor`` times the confident level enclose, so what only a much
weaker contour encloses is background, not ignored.

One for size, also off unless asked for (``small_box=0``): in a box of fewer than ``small_box`` pixels
nothing is background -- what the rule leaves out of the confident mask is uncertain (ignored).
At a few hundred pixels the UCM's regions are as coarse as the object, and on real photos
(CamVid, MSRC; README, "Box labels") the rule's background in small boxes is often object.

And a second reading of the box, off unless asked for (``low_alpha=0``): the region of the
strongest contour that covers ``low_alpha`` (< ``alpha``) of the box is taken instead of the
``alpha`` one when the ``alpha`` region's contour is weaker than ``low_ratio`` times its own (a
compact object inside a box it fills less than ``alpha`` of, the rest enclosed only by a much
weaker contour), it reaches across ``low_span`` of the box's height and width (the tight-box
prior: the object touches the box's sides) and the box is under ``low_max`` pixels (0: any;
in a large box a clearly enclosed part is more often one of several objects the box holds, a
shelf of books).  The uncertain region of such a box is then only what contours of at least
``low_ratio`` times the confident one's strength enclose.

Both rules run through the same kernels: one bucket-queue flood (:func:`_flood`, the
bottleneck or the widest-path variant) and one level choice (:func:`_rule_box`).  Each
box pixel gets a level L -- ``o`` for the paper rule, ``256 - e`` for the enclosed rule
-- so that every region either rule looks at is {L < u} for an integer cut u (threshold
t: u = ceil(t m) for the paper rule, 257 - ceil(t m) for the enclosed one, m the largest
UCM value in the flooded crop), and the fallback grows u in both.
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


def _buffers(n):
    """Work arrays for floods over at most ``n`` (strided) pixels, reused across the boxes of an image:
    head, nxt, node (bucket queue), d, o, stack, tmp."""
    return (np.empty(257, np.int32), np.empty(5 * n + 8, np.int32), np.empty(5 * n + 8, np.int32),
            np.empty(n, np.int32), np.empty(n, np.int32), np.empty(n, np.int32), np.empty(n, np.int32))


@numba.njit(cache=True)
def _settle(q, v, level, dist, stack, sp, head, nxt, node, top):
    """dist[q] <- v, a better value: ``q`` goes on the stack if it stays at ``level``,
    else into bucket ``v``.  Returns the new stack and queue tops."""
    dist[q] = v
    if v == level:
        stack[sp] = q
        return sp + 1, top
    return sp, _push(head, nxt, node, top, v, q)


@numba.njit(cache=True)
def _relax(q, ucm2, r, c, level, widest, d, o, stack, sp, head, nxt, node, top):
    """One flood step from a pixel settled at ``level`` to its neighbour ``q``, across the
    UCM edge ``ucm2[r, c]``.  Bottleneck flood: d[q] <- min(d[q], max(edge, level));
    widest flood (the edge unused): o[q] <- max(o[q], min(d[q], level))."""
    if widest:
        v = d[q] if d[q] < level else level
        if v > o[q]:
            return _settle(q, v, level, o, stack, sp, head, nxt, node, top)
    else:
        edge = np.int32(ucm2[r, c])
        v = edge if edge > level else level
        if v < d[q]:
            return _settle(q, v, level, d, stack, sp, head, nxt, node, top)
    return sp, top


@numba.njit(cache=True)
def _flood(ucm2, X0, Y0, w, h, shift, widest, d, o, head, nxt, node, stack, top):
    """Flood the crop at (X0, Y0) of size h x w from the seeds already in the buckets.

    ``widest=False``: bottleneck distances ``d`` (min over paths of the max UCM edge),
    levels in increasing order.  ``widest=True``: widest paths ``o`` (max over paths of
    the min ``d``), levels in decreasing order.  Pixel (py, px) is ``py << shift | px``
    (a power-of-two row stride: no division in the loop).  Work at the current level
    goes on a plain stack (most of it: edges inside a UCM region are 0), the rest into
    linked-list buckets.  (The helpers are plain njit functions that LLVM inlines;
    numba's IR-level ``inline="always"`` made this loop about 20x slower.)
    """
    mask = (1 << shift) - 1
    S = 1 << shift
    dist = o if widest else d
    for step in range(257):
        level = 256 - step if widest else step
        sp = 0
        while head[level] != -1:
            k = head[level]
            head[level] = nxt[k]
            p = node[k]
            if dist[p] == level:
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
                sp, top = _relax(p + 1, ucm2, r, c + 1, level, widest, d, o, stack, sp, head, nxt, node, top)
            if px > 0:
                sp, top = _relax(p - 1, ucm2, r, c - 1, level, widest, d, o, stack, sp, head, nxt, node, top)
            if py + 1 < h:
                sp, top = _relax(p + S, ucm2, r + 1, c, level, widest, d, o, stack, sp, head, nxt, node, top)
            if py > 0:
                sp, top = _relax(p - S, ucm2, r - 1, c, level, widest, d, o, stack, sp, head, nxt, node, top)


@numba.njit(cache=True)
def _stride_shift(w):
    shift = 0
    while (1 << shift) < w:
        shift += 1
    return shift


@numba.njit(cache=True)
def _expanded(x0, y0, x1, y1, margin, height, width):
    """The box grown by ``margin`` of its size (at least 1 px) on each side, clipped."""
    mx = max(1, int(np.round(margin * (x1 - x0))))
    my = max(1, int(np.round(margin * (y1 - y0))))
    return max(x0 - mx, 0), max(y0 - my, 0), min(x1 + mx, width), min(y1 + my, height)


@numba.njit(cache=True)
def _work_size(boxes, enclosed, margin, height, width):
    """Pixels of the largest crop the boxes flood (the box, and for the enclosed rule
    the grown box), laid out with a power-of-two row stride."""
    n = 0
    for i in range(boxes.shape[0]):
        x0, y0, x1, y1 = boxes[i, 0], boxes[i, 1], boxes[i, 2], boxes[i, 3]
        n = max(n, (y1 - y0) << _stride_shift(x1 - x0))
        if enclosed:
            X0, Y0, X1, Y1 = _expanded(x0, y0, x1, y1, margin, height, width)
            n = max(n, (Y1 - Y0) << _stride_shift(X1 - X0))
    return n


@numba.njit(cache=True)
def _max_edge(ucm2, X0, Y0, X1, Y1):
    """The largest UCM value on an edge between two pixels of the crop [X0, X1) x [Y0, Y1)."""
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
    return m


@numba.njit(cache=True)
def _seed_sides(dist, src, cap, h, w, shift, top_row, bottom_row, left_col, right_col, head, nxt, node):
    """Seed the pixels p on the chosen sides of the h x w (strided) crop at min(src[p], cap).
    Returns the number of seeds (the queue top)."""
    top = 0
    for py in range(h):
        for px in range(w):
            if (py == 0 and top_row) or (py == h - 1 and bottom_row) or (px == 0 and left_col) or \
                    (px == w - 1 and right_col):
                p = (py << shift) + px
                v = src[p] if src[p] < cap else cap
                dist[p] = v
                top = _push(head, nxt, node, top, v, p)
    return top


@numba.njit(cache=True)
def _unstride(src, shift, oy, ox, h, w, flip, dst):
    """dst[:h*w] (row-major) <- the h x w window at (oy, ox) of the strided ``src``
    (``256 - value`` with ``flip``)."""
    for py in range(h):
        for px in range(w):
            v = src[((py + oy) << shift) + px + ox]
            dst[py * w + px] = 256 - v if flip else v


@numba.njit(cache=True)
def _levels(ucm2, x0, y0, x1, y1, enclosed, margin, head, nxt, node, d, lv, stack, tmp):
    """The floods of one box: fills ``lv[:h*w]`` (row-major over the box) with the level
    L of each pixel, so that every region the rule chooses from is {L < cut}: the paper
    rule's ``o``, or ``256 - e`` for the enclosed rule (the other arrays are work space).

    Returns ``m``, the largest UCM value on an edge inside the flooded crop (the box, or
    the box grown by ``margin`` for the enclosed rule), and whether the enclosed rule
    applies: a box that fills the image on all four sides has no outside to flood from,
    and gets the paper rule's levels.
    """
    X0, Y0, X1, Y1 = x0, y0, x1, y1
    if enclosed:
        X0, Y0, X1, Y1 = _expanded(x0, y0, x1, y1, margin, (ucm2.shape[0] - 1) // 2, (ucm2.shape[1] - 1) // 2)
    enclosed = Y0 < y0 or Y1 > y1 or X0 < x0 or X1 > x1
    h = Y1 - Y0
    w = X1 - X0
    m = _max_edge(ucm2, X0, Y0, X1, Y1)
    if m == 0:  # one region: every pixel joins at once
        lv[:(y1 - y0) * (x1 - x0)] = 256 if enclosed else 0
        return m, enclosed
    shift = _stride_shift(w)
    head[:] = -1
    d[:h << shift] = 256
    if enclosed:  # e: bottleneck distance from the ring just outside the box
        top = _seed_sides(d, d, 0, h, w, shift, Y0 < y0, Y1 > y1, X0 < x0, X1 > x1, head, nxt, node)
        _flood(ucm2, X0, Y0, w, h, shift, False, d, d, head, nxt, node, stack, top)
        _unstride(d, shift, y0 - Y0, x0 - X0, y1 - y0, x1 - x0, True, lv)
        return m, True
    # d: bottleneck distance from the centre
    c = (((h - 1) // 2) << shift) + (w - 1) // 2
    d[c] = 0
    top = _push(head, nxt, node, 0, 0, c)
    _flood(ucm2, X0, Y0, w, h, shift, False, d, d, head, nxt, node, stack, top)
    # o: widest path from the box border over d
    head[:] = -1
    tmp[:h << shift] = -1
    top = _seed_sides(tmp, d, 256, h, w, shift, True, True, True, True, head, nxt, node)
    _flood(ucm2, X0, Y0, w, h, shift, True, d, tmp, head, nxt, node, stack, top)
    _unstride(tmp, shift, 0, 0, h, w, False, lv)
    return m, False


@numba.njit(cache=True)
def _cut(t, m, enclosed):
    """The cut u whose region {L < u} is the one of threshold ``t`` (``m``: the box's UCM maximum)."""
    v = np.int64(np.ceil(t * m))
    return 257 - v if enclosed else v


@numba.njit(cache=True)
def _paint(conf, unc, lv, x0, y0, x1, y1, bit, u_conf, u_unc):
    """Mark {L < u_conf} confident and {u_conf <= L < u_unc} uncertain (OR ``bit`` into each)."""
    w = x1 - x0
    for y in range(y0, y1):
        for x in range(x0, x1):
            v = lv[(y - y0) * w + (x - x0)]
            if v < u_conf:
                conf[y, x] |= bit
            elif v < u_unc:
                unc[y, x] |= bit


@numba.njit(cache=True)
def _line_mins(lv, bh, bw):
    """The smallest level in each row and in each column of the box."""
    row = np.full(bh, 257, np.int32)
    col = np.full(bw, 257, np.int32)
    for py in range(bh):
        for px in range(bw):
            v = lv[py * bw + px]
            if v < row[py]:
                row[py] = v
            if v < col[px]:
                col[px] = v
    return row, col


@numba.njit(cache=True)
def _extent(line_min, u):
    """Length of the stretch from the first to the last entry of ``line_min`` that is < u."""
    n = line_min.shape[0]
    first = -1
    for k in range(n):
        if line_min[k] < u:
            first = k
            break
    if first < 0:
        return 0
    for k in range(n - 1, first - 1, -1):
        if line_min[k] < u:
            return k - first + 1
    return 0


@numba.njit(cache=True)
def _qualifies(below, u, need, span, row_min, col_min, need_h, need_w):
    """Does {L < u} cover ``need`` pixels and (``span`` > 0) reach across ``need_h`` rows
    and ``need_w`` columns of the box?"""
    if below[u] < need:
        return False
    return span <= 0 or (_extent(row_min, u) >= need_h and _extent(col_min, u) >= need_w)


@numba.njit(cache=True)
def _prior_box(conf, unc, lv, m, x0, y0, x1, y1, bit, prior, prior_band):
    """The box prior for a box without a clear object (enclosed rule, ``clear``): pixel p
    scores ``e/m + r`` -- how strongly it is enclosed (``e = 256 - L``, over the crop's
    largest UCM value ``m``; 0 when ``m`` is 0) plus its distance ``r`` to the nearest side
    of the box over half the box size (0 on the sides, 1 at the centre).  A score of at
    least ``prior + prior_band`` is confident, one within ``prior_band`` below that
    uncertain (nothing with ``prior_band`` 0), the rest background.  Returns the
    confident and the uncertain pixel counts."""
    bh = y1 - y0
    bw = x1 - x0
    hi = prior + prior_band
    lo = prior - prior_band
    n_conf = 0
    n_unc = 0
    for py in range(bh):
        dy = min(py + 0.5, bh - py - 0.5) / (0.5 * bh)
        for px in range(bw):
            dx = min(px + 0.5, bw - px - 0.5) / (0.5 * bw)
            en = 0.0
            if m > 0:
                en = min(max((256 - lv[py * bw + px]) / m, 0.0), 1.0)
            score = en + min(dx, dy)
            if score >= hi:
                conf[y0 + py, x0 + px] |= bit
                n_conf += 1
            elif prior_band > 0 and score >= lo:
                unc[y0 + py, x0 + px] |= bit
                n_unc += 1
    return n_conf, n_unc


@numba.njit(cache=True)
def _choose(below, need, span, row_min, col_min, need_h, need_w, thresholds, m, enclosed):
    """The confident cut of one box: the first candidate region that qualifies (covers ``need``
    pixels and spans ``need_h`` x ``need_w``), else the region grown past the last candidate,
    weakest boundary first, until one does.  Returns the confident and uncertain cuts, the
    threshold (or lowered level, UCM scale over ``m``) and whether it fell back."""
    nt = thresholds.shape[0]
    u_unc = _cut(thresholds[0] if enclosed else thresholds[nt - 1], m, enclosed)
    for j in range(nt):
        t = thresholds[nt - 1 - j] if enclosed else thresholds[j]
        u = _cut(t, m, enclosed)
        if _qualifies(below, u, need, span, row_min, col_min, need_h, need_w):
            return u, u_unc, t, False
    u_conf = 257
    for u in range(u_unc + 1, 258):
        if _qualifies(below, u, need, span, row_min, col_min, need_h, need_w):
            u_conf = u
            break
    chosen = (257 - u_conf) / m if enclosed else (u_conf - 1) / m
    return u_conf, u_conf, chosen, True


@numba.njit(cache=True)
def _rule_box(conf, unc, info, i, lv, m, x0, y0, x1, y1, bit, thresholds, alpha, below, enclosed, span, band,
              clear, prior, prior_band, floor, low_alpha, low_ratio, low_span, low_max):
    """Either rule for one box, given its levels ``lv`` (:func:`_levels`).  The candidate
    regions {L < cut} grow from the first threshold tried to the last: the paper rule's
    smallest t first, the enclosed rule's strongest contour (largest t) first.  The
    confident region is the first that qualifies (covers ``alpha`` of the box and, for the
    enclosed rule, spans ``span`` of its height and width), else the region grown past the
    last candidate until one does; uncertain is the last candidate minus the confident
    region (nothing after a fallback), widened by ``band``, cut to ``floor`` (< 0: off).  A
    confident contour weaker than ``clear`` (UCM scale; 0: off) hands the box to the box
    prior (:func:`_prior_box`, ``prior``, ``prior_band``), recorded as a fallback.  With
    ``low_alpha`` > 0 the region chosen the same way for ``low_alpha`` replaces it when the
    ``alpha`` region's contour is weaker than ``low_ratio`` times its own, it spans ``low_span``
    of the box and the box is under ``low_max`` px (0: any); its uncertain region is then cut
    to what contours of ``low_ratio`` times its strength enclose.
    ``span``, ``band``, ``clear``, ``floor`` and the ``low_`` knobs are the enclosed rule's only."""
    area = (x1 - x0) * (y1 - y0)
    bh = y1 - y0
    bw = x1 - x0
    nt = thresholds.shape[0]
    if not enclosed:
        span = 0.0
        band = -1.0
        clear = 0.0
        floor = -1.0
        low_alpha = 0.0
    if m == 0 and clear > 0:  # no contour at all: no clear object
        n_conf, n_unc = _prior_box(conf, unc, lv, m, x0, y0, x1, y1, bit, prior, prior_band)
        info[i, 0] = 0.0
        info[i, 1] = 1.0
        info[i, 2] = area
        info[i, 3] = n_conf
        info[i, 4] = n_unc
        return
    if m == 0:  # no boundary anywhere near the box: all of it
        _paint(conf, unc, lv, x0, y0, x1, y1, bit, 257, 257)
        info[i, 0] = thresholds[nt - 1] if enclosed else thresholds[0]
        info[i, 2] = area
        info[i, 3] = area
        return
    # below[u] = |{L < u}|
    below[:] = 0
    for k in range(area):
        below[lv[k] + 1] += 1
    for u in range(1, 258):
        below[u] += below[u - 1]
    low = 0 < low_alpha < alpha and (low_max <= 0 or area < low_max)
    lines = span > 0 or (low and low_span > 0)
    row_min, col_min = _line_mins(lv, bh if lines else 0, bw if lines else 0)
    need_h = span * bh - 1e-9
    need_w = span * bw - 1e-9
    u_conf, u_unc, chosen, fallback = _choose(below, alpha * area, span, row_min, col_min, need_h, need_w,
                                              thresholds, m, enclosed)
    second = False
    if low:  # the second reading: a smaller region, enclosed by a much stronger contour, reaching the sides
        l_conf, l_unc, l_chosen, l_fallback = _choose(below, low_alpha * area, span, row_min, col_min, need_h,
                                                      need_w, thresholds, m, enclosed)
        second = 257 - u_conf < low_ratio * (257 - l_conf) and (
            low_span <= 0 or (_extent(row_min, l_conf) >= low_span * bh - 1e-9 and
                              _extent(col_min, l_conf) >= low_span * bw - 1e-9))
        if second:
            u_conf, u_unc, chosen, fallback = l_conf, l_unc, l_chosen, l_fallback
    if clear > 0 and 257 - u_conf < clear * 255:  # the confident contour is too weak: no clear object
        n_conf, n_unc = _prior_box(conf, unc, lv, m, x0, y0, x1, y1, bit, prior, prior_band)
        info[i, 0] = chosen
        info[i, 1] = 1.0
        info[i, 2] = area
        info[i, 3] = n_conf
        info[i, 4] = n_unc
        return
    if band >= 0:  # what a contour of band x the confident one's strength encloses is uncertain too
        u_band = 257 - np.int64(np.floor(band * (257 - u_conf)))
        if u_band > u_unc:
            u_unc = u_band
    if floor >= 0:  # ... but only what a contour of floor x its strength encloses
        u_floor = 257 - np.int64(np.ceil(floor * (257 - u_conf)))
        if u_floor < u_conf:
            u_floor = u_conf
        if u_floor < u_unc:
            u_unc = u_floor
    if second:  # uncertain: only what contours of low_ratio x the confident one's strength enclose
        u_low = 257 - np.int64(np.ceil(low_ratio * (257 - u_conf)))
        if u_low < u_conf:
            u_low = u_conf
        if u_low < u_unc:
            u_unc = u_low
    _paint(conf, unc, lv, x0, y0, x1, y1, bit, u_conf, u_unc)
    info[i, 0] = chosen
    info[i, 1] = 1.0 if fallback else 0.0
    info[i, 2] = area
    info[i, 3] = below[u_conf]
    info[i, 4] = below[u_unc] - below[u_conf]


@numba.njit(cache=True)
def _ucm_boxes(ucm2, boxes, bits, thresholds, alpha, enclosed, margin, span, band, clear, prior, prior_band, floor,
               small_box, low_alpha, low_ratio, low_span, low_max, conf, unc, info, head, nxt, node, d, lv, stack, tmp):
    below = np.zeros(258, np.int64)
    for i in range(boxes.shape[0]):
        x0, y0, x1, y1 = boxes[i, 0], boxes[i, 1], boxes[i, 2], boxes[i, 3]
        m, enc = _levels(ucm2, x0, y0, x1, y1, enclosed, margin, head, nxt, node, d, lv, stack, tmp)
        _rule_box(conf, unc, info, i, lv, m, x0, y0, x1, y1, bits[i], thresholds, alpha, below, enc, span, band,
                  clear, prior, prior_band, floor, low_alpha, low_ratio, low_span, low_max)
        if enc and (x1 - x0) * (y1 - y0) < small_box:  # a small box: no background, the rest is uncertain
            _paint(unc, unc, lv, x0, y0, x1, y1, bits[i], 257, 257)
            info[i, 4] = info[i, 2] - info[i, 3]


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


def ucm_box_masks(ucm2, boxes, dtype, thresholds, alpha, rule, margin, span=0.0, band=None, clear=0.0,
                  prior=0.35, prior_band=0.05, floor=None, small_box=0.0, low_alpha=0.0, low_ratio=0.7,
                  low_span=0.9, low_max=12000.0):
    """The UCM rule's per-pixel confident and uncertain bitsets and per-box info.

    ``span``, ``band``, ``clear`` (with ``prior`` and ``prior_band``), ``floor``, ``small_box`` and
    ``low_alpha`` (with ``low_ratio``, ``low_span``, ``low_max``) refine the enclosed rule (module
    docstring); their defaults here leave them off.

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
        n = _work_size(boxes, enclosed, float(margin), h, w)
        _ucm_boxes(np.ascontiguousarray(ucm2, np.uint8), boxes, bits, t, float(alpha), enclosed,
                   float(margin), float(span), -1.0 if band is None else float(band), float(clear), float(prior),
                   float(prior_band), -1.0 if floor is None else float(floor), float(small_box), float(low_alpha),
                   float(low_ratio), float(low_span), float(low_max), conf, unc, info, *_buffers(n))
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
    work = _buffers(_work_size(np.array([[x0, y0, x1, y1]], np.int64), True, float(margin), height, width))
    m, enclosed = _levels(u, x0, y0, x1, y1, rule == "enclosed", float(margin), *work)
    lv = work[4][:(y1 - y0) * (x1 - x0)].reshape(y1 - y0, x1 - x0)
    if m == 0:
        return np.ones((len(thresholds),) + lv.shape, bool)
    return np.stack([lv < _cut(t, m, enclosed) for t in thresholds])

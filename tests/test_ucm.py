"""Tests of pipeline.ucm.algorithm: boundary map, watershed + mean-boundary merging, higra baseline, import."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import scipy.io
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from pipeline.ucm import algorithm as ucm
from pipeline.ucm.external import load_external_ucm2
from pipeline.core.errors import InputError

# ----------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------


def edge_cells(u):
    """The (H, W-1) horizontal-pair and (H-1, W) vertical-pair edge cells of a ucm2."""
    return u[1::2, 2:-1:2], u[2:-1:2, 1::2]


def segment(u, t):
    """Label image of the 4-connected pixel groups joined by edges < t."""
    H, W = (u.shape[0] - 1) // 2, (u.shape[1] - 1) // 2
    eh, ev = edge_cells(u)
    idx = np.arange(H * W).reshape(H, W)
    src = np.concatenate([idx[:, :-1][eh < t], idx[:-1, :][ev < t]])
    dst = np.concatenate([idx[:, 1:][eh < t], idx[1:, :][ev < t]])
    graph = coo_matrix((np.ones(src.size), (src, dst)), shape=(H * W, H * W))
    return connected_components(graph, directed=False)[1].reshape(H, W)


def n_pairs(a, b):
    return np.unique(np.stack([a.ravel(), b.ravel()]), axis=1).shape[1]


def same_partition(a, b):
    na, nb = np.unique(a).size, np.unique(b).size
    return na == nb == n_pairs(a, b)


def is_nested(fine, coarse):
    """Every region of ``fine`` lies inside one region of ``coarse``."""
    return n_pairs(fine, coarse) == np.unique(fine).size


def check_layout(u):
    H2, W2 = u.shape
    assert H2 % 2 == 1 and W2 % 2 == 1
    assert np.all(u[1::2, 1::2] == 0), "pixel cells must be 0"
    for frame in (u[0, 1::2], u[-1, 1::2], u[1::2, 0], u[1::2, -1]):
        assert np.all(frame == 0), "frame edge cells must be 0"
    padded = np.pad(u, 1)
    neigh = np.maximum.reduce([padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]])
    np.testing.assert_array_equal(u[0::2, 0::2], neigh[0::2, 0::2], "vertex != max of its edges")


def check_ultrametric(u):
    """Thresholds give nested partitions, and every edge of value v separates two regions at v."""
    eh, ev = edge_cells(u)
    levels = np.unique(np.concatenate([eh.ravel(), ev.ravel(), [0]]))
    previous = None
    for t in list(levels[levels > 0]) + [np.inf]:
        seg = segment(u, t)
        assert np.all(seg[:, :-1][eh >= t] != seg[:, 1:][eh >= t]), f"edge >= {t} inside a region"
        assert np.all(seg[:-1, :][ev >= t] != seg[1:, :][ev >= t]), f"edge >= {t} inside a region"
        if previous is not None:
            assert is_nested(previous, seg)
        previous = seg


def scene(height=60, width=80):
    """Piecewise-constant RGB image: background, two rectangles, a disc; and its true labels."""
    img = np.full((height, width, 3), (40, 90, 160), np.uint8)
    cv2.rectangle(img, (5, 8), (30, 40), (200, 60, 50), -1)
    cv2.rectangle(img, (45, 5), (75, 25), (90, 200, 90), -1)
    cv2.circle(img, (58, 44), 11, (230, 220, 60), -1)
    _, labels = np.unique(img.reshape(-1, 3), axis=0, return_inverse=True)
    return img, labels.reshape(height, width)


def true_boundary_masks(labels):
    return labels[:, 1:] != labels[:, :-1], labels[1:, :] != labels[:-1, :]


# ----------------------------------------------------------------------------------
# boundary_map
# ----------------------------------------------------------------------------------


def test_boundary_map_shapes_range_and_flat_image():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (23, 31, 3), dtype=np.uint8)
    eh, ev = ucm.boundary_map(img)
    assert eh.shape == (23, 30) and ev.shape == (22, 31)
    assert eh.dtype == np.float32 and ev.dtype == np.float32
    for e in (eh, ev):
        assert e.min() >= 0 and e.max() <= 1
    eh, ev = ucm.boundary_map(np.full((10, 12, 3), 77, np.uint8))
    assert not eh.any() and not ev.any()
    for H, W in [(1, 1), (1, 6), (5, 1)]:
        eh, ev = ucm.boundary_map(rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
        assert eh.shape == (H, W - 1) and ev.shape == (H - 1, W)
        assert ucm.ucm2(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).shape == (2 * H + 1, 2 * W + 1)


def test_boundary_map_peaks_on_a_step():
    img = np.zeros((20, 30, 3), np.uint8)
    img[:, 15:] = (255, 128, 0)
    eh, ev = ucm.boundary_map(img)
    assert np.all(np.argmax(eh, axis=1) == 14)
    assert np.allclose(eh[:, 14], 1.0)
    # the gradient magnitude on a vertical pair is the step seen along the pair
    assert np.all(np.isin(np.argmax(ev, axis=1), [14, 15]))
    assert np.all(np.diff(eh[:, :15], axis=1) > 0) and np.all(np.diff(eh[:, 14:], axis=1) < 0)
    assert eh[:, :5].max() < 0.05 and ev[:, :5].max() < 0.05


@pytest.mark.parametrize("bad", [np.zeros((5, 5), np.uint8), np.zeros((5, 5, 3), np.float32), np.zeros((5, 5, 4), np.uint8)])
def test_boundary_map_rejects_non_rgb_uint8(bad):
    with pytest.raises(ValueError):
        ucm.boundary_map(bad)


# ----------------------------------------------------------------------------------
# ucm2_from_edges: hand-computed cases
# ----------------------------------------------------------------------------------


def test_hand_computed_1x4_boundary_on_strongest_edge():
    # altitudes 0.2, 0.9, 0.9, 0.1: minima at both ends; the two middle pixels tie in
    # altitude, but each is reached through its weak edge, so the cut is the 0.9 edge
    eh = np.array([[0.2, 0.9, 0.1]], np.float32)
    ev = np.zeros((0, 4), np.float32)
    u = ucm.ucm2_from_edges(eh, ev)
    expected = np.zeros((3, 9), np.float32)
    expected[:, 4] = 0.9
    np.testing.assert_allclose(u, expected, atol=1e-6)
    np.testing.assert_array_equal(ucm.superpixels(eh, ev), [[0, 0, 1, 1]])


def test_hand_computed_merge_order_combines_arcs():
    # A A B B      A|B: edges 0.3, 0.5 (mean 0.4)
    # A A B B      A|C: edges 0.9, 0.7 (mean 0.8)
    # A A C C      B|C: edges 0.6, 0.6 (mean 0.6)
    # A A C C      all edges inside a region are 0
    eh = np.zeros((4, 3), np.float32)
    ev = np.zeros((3, 4), np.float32)
    eh[0, 1], eh[1, 1] = 0.3, 0.5
    eh[2, 1], eh[3, 1] = 0.9, 0.7
    ev[1, 2], ev[1, 3] = 0.6, 0.6
    sp = ucm.superpixels(eh, ev)
    truth = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 2, 2], [0, 0, 2, 2]])
    assert same_partition(sp, truth)

    u = ucm.ucm2_from_edges(eh, ev)
    # A and B merge first at 0.4; then A|C and B|C are one arc of mean
    # (0.9 + 0.7 + 0.6 + 0.6) / 4 = 0.7, so C joins at 0.7 (not 0.8 nor 0.6)
    e = np.zeros((9, 9), np.float32)
    e[1, 4] = e[3, 4] = 0.4  # A|B edges
    e[5, 4] = e[7, 4] = 0.7  # A|C edges
    e[4, 5] = e[4, 7] = 0.7  # B|C edges
    e[0, 4] = e[2, 4] = 0.4  # vertices
    e[4, 4] = e[6, 4] = e[8, 4] = e[4, 6] = e[4, 8] = 0.7
    np.testing.assert_allclose(u, e, atol=1e-6)


def test_uniform_and_degenerate_shapes():
    for H, W in [(1, 1), (1, 5), (4, 1), (6, 7)]:
        u = ucm.ucm2_from_edges(np.zeros((H, W - 1)), np.zeros((H - 1, W)))
        assert u.shape == (2 * H + 1, 2 * W + 1) and u.dtype == np.float32
        assert not u.any()


def test_rejects_bad_edge_maps():
    with pytest.raises(ValueError):
        ucm.ucm2_from_edges(np.zeros((3, 4)), np.zeros((3, 5)))
    with pytest.raises(ValueError):
        ucm.ucm2_from_edges(np.full((2, 2), np.nan), np.zeros((1, 3)))


# ----------------------------------------------------------------------------------
# piecewise-constant image: the true regions come back
# ----------------------------------------------------------------------------------


def test_piecewise_constant_regions_recovered_exactly():
    img, labels = scene()
    u = ucm.ucm2_from_edges(*ucm.boundary_map(img, scales=(0.5, 1.0, 2.0, 4.0)))
    check_layout(u)
    eh, ev = edge_cells(u)
    bh, bv = true_boundary_masks(labels)
    weakest_true = min(eh[bh].min(), ev[bv].min())
    strongest_false = max(eh[~bh].max(), ev[~bv].max())
    assert strongest_false < weakest_true
    seg = segment(u, weakest_true - 1e-6)
    assert same_partition(seg, labels)


def test_piecewise_constant_default_scales_uint8():
    # at the default scales (>= 1 px of smoothing) a region may lose a corner pixel
    img, labels = scene()
    u = ucm.ucm2(img)
    assert u.dtype == np.uint8 and u.shape == (121, 161)
    check_layout(u)
    levels = np.unique(u)
    n_true = np.unique(labels).size
    counts = {t: np.unique(segment(u, t)).size for t in levels[levels > 0]}
    t = max(t for t, n in counts.items() if n >= n_true)
    seg = segment(u, t)
    assert np.unique(seg).size == n_true
    for r in np.unique(labels):
        best = max(np.sum((labels == r) & (seg == s)) / np.sum((labels == r) | (seg == s)) for s in np.unique(seg))
        assert best > 0.97


# ----------------------------------------------------------------------------------
# properties: layout and ultrametricity on random inputs
# ----------------------------------------------------------------------------------

_sizes = st.tuples(st.integers(1, 7), st.integers(1, 7))


@st.composite
def edge_maps(draw):
    H, W = draw(_sizes)
    levels = draw(st.sampled_from([None, 3, 6]))  # few levels: many ties and plateaus
    if levels is None:
        elems = st.floats(0, 1, width=32)
    else:
        elems = st.integers(0, levels).map(lambda k, n=levels: np.float32(k / n))
    eh = draw(arrays(np.float32, (H, W - 1), elements=elems))
    ev = draw(arrays(np.float32, (H - 1, W), elements=elems))
    return eh, ev


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edge_maps())
def test_random_edge_maps_give_ultrametric_ucm2(maps):
    eh, ev = maps
    H, W = eh.shape[0], ev.shape[1]
    u = ucm.ucm2_from_edges(eh, ev)
    assert u.shape == (2 * H + 1, 2 * W + 1) and u.dtype == np.float32
    assert u.min() >= 0 and u.max() <= 1
    check_layout(u)
    check_ultrametric(u)
    # superpixels: every pixel labelled, each region connected, contours exactly between them
    sp = ucm.superpixels(eh, ev)
    n = sp.max() + 1
    assert sorted(np.unique(sp)) == list(range(n))
    for r in range(n):
        mask = np.pad(sp == r, 1).astype(np.uint8)
        assert cv2.connectedComponents(mask, connectivity=4)[0] == 2
    ch, cv = edge_cells(u)
    assert np.all(ch[sp[:, 1:] == sp[:, :-1]] == 0) and np.all(cv[sp[1:] == sp[:-1]] == 0)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), _sizes)
def test_random_images_give_ultrametric_uint8_ucm2(seed, size):
    rng = np.random.default_rng(seed)
    H, W = size[0] + 3, size[1] + 3
    img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    if seed % 2:  # blocky: larger regions with ties
        img = np.repeat(np.repeat(img[: (H + 1) // 2, : (W + 1) // 2], 2, 0), 2, 1)[:H, :W]
    u = ucm.ucm2(img)
    assert u.shape == (2 * H + 1, 2 * W + 1) and u.dtype == np.uint8
    check_layout(u)
    check_ultrametric(u)


def reference_merge(eh, ev, sp):
    """Plain-Python greedy lowest-mean-arc merging of the superpixels ``sp`` (a slow oracle)."""
    H, W = sp.shape
    arcs = {}
    pairs = [((y, x), (y, x + 1), eh[y, x], (2 * y + 1, 2 * x + 2)) for y in range(H) for x in range(W - 1)]
    pairs += [((y, x), (y + 1, x), ev[y, x], (2 * y + 2, 2 * x + 1)) for y in range(H - 1) for x in range(W)]
    for p, q, w, pos in pairs:
        a, b = sorted((sp[p], sp[q]))
        if a != b:
            arc = arcs.setdefault((a, b), [0.0, 0, []])
            arc[0] += float(w)
            arc[1] += 1
            arc[2].append(pos)
    u = np.zeros((2 * H + 1, 2 * W + 1), np.float32)
    prev = 0.0
    while arcs:
        key = min(arcs, key=lambda k: arcs[k][0] / arcs[k][1])
        total, count, cells = arcs.pop(key)
        prev = max(prev, total / count)
        for cell in cells:
            u[cell] = prev
        keep, gone = key
        for k in [k for k in arcs if gone in k]:
            other = k[0] if k[1] == gone else k[1]
            total, count, cells = arcs.pop(k)
            arc = arcs.setdefault(tuple(sorted((keep, other))), [0.0, 0, []])
            arc[0] += total
            arc[1] += count
            arc[2].extend(cells)
    return ucm.ucm2_vertices(u)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.tuples(st.integers(2, 9), st.integers(2, 9)))
def test_merging_matches_slow_reference(seed, size):
    rng = np.random.default_rng(seed)
    H, W = size
    eh = rng.random((H, W - 1)).astype(np.float32)  # continuous values: no ties in the merge order
    ev = rng.random((H - 1, W)).astype(np.float32)
    expected = reference_merge(eh, ev, ucm.superpixels(eh, ev))
    np.testing.assert_allclose(ucm.ucm2_from_edges(eh, ev), expected, atol=1e-6)


# ----------------------------------------------------------------------------------
# higra baseline
# ----------------------------------------------------------------------------------


def test_higra_layout_matches_khalimsky_interior():
    import higra as hg

    rng = np.random.default_rng(3)
    H, W = 5, 7
    eh = rng.random((H, W - 1)).astype(np.float32)
    ev = rng.random((H - 1, W)).astype(np.float32)
    u = ucm.ucm2_higra(eh, ev, "mean_pb")
    check_layout(u)
    check_ultrametric(u)
    # same hierarchy computed directly in higra, drawn by higra on its Khalimsky grid
    graph = hg.get_4_adjacency_graph((H, W))
    src, dst = graph.edge_list()
    w = np.array([eh[s // W, s % W] if d == s + 1 else ev[s // W, s % W] for s, d in zip(src, dst)], np.float64)
    tree, alt = hg.mean_pb_hierarchy(graph, w, shape=(H, W))
    k = hg.graph_4_adjacency_2_khalimsky(graph, hg.saliency(tree, alt))
    np.testing.assert_allclose(u[1:-1, 1:-1], k, atol=1e-6)


def test_higra_single_cut_same_place_as_ours():
    eh = np.zeros((3, 4), np.float32)
    eh[:, 1] = 0.8
    ev = np.zeros((2, 5), np.float32)
    ours = ucm.ucm2_from_edges(eh, ev)
    for method in ("area", "mean_pb"):
        theirs = ucm.ucm2_higra(eh, ev, method)
        np.testing.assert_array_equal(theirs > 0, ours > 0)
    np.testing.assert_allclose(ucm.ucm2_higra(eh, ev, "mean_pb"), ours, atol=1e-6)
    np.testing.assert_allclose(ucm.ucm2_higra(eh, ev, "area").max(), 1.0)


def test_higra_agrees_on_piecewise_constant_boundaries():
    img, labels = scene()
    eh, ev = ucm.boundary_map(img, scales=(0.5, 1.0, 2.0, 4.0))
    ours = ucm.ucm2_from_edges(eh, ev)
    bh, bv = true_boundary_masks(labels)
    for method in ("mean_pb", "area"):
        theirs = ucm.ucm2_higra(eh, ev, method)
        check_layout(theirs)
        th, tv = edge_cells(theirs)
        weakest_true = min(th[bh].min(), tv[bv].min())
        assert weakest_true > 0
        seg = segment(theirs, weakest_true - 1e-6)
        assert same_partition(seg, segment(ours, min(edge_cells(ours)[0][bh].min(), edge_cells(ours)[1][bv].min()) - 1e-6))
    with pytest.raises(ValueError):
        ucm.ucm2_higra(eh, ev, "nope")


# ----------------------------------------------------------------------------------
# load_external_ucm2
# ----------------------------------------------------------------------------------


@pytest.fixture
def ext():
    rng = np.random.default_rng(7)
    H, W = 6, 9
    u = ucm.ucm2_from_edges(rng.random((H, W - 1)), rng.random((H - 1, W)))
    return H, W, u


def test_load_external_round_trips(tmp_path, ext):
    H, W, u = ext
    scipy.io.savemat(tmp_path / "a.mat", {"ucm2": u.astype(np.float64)})
    np.testing.assert_allclose(load_external_ucm2(tmp_path / "a.mat", H, W), u, atol=1e-7)
    scipy.io.savemat(tmp_path / "b.mat", {"ucm": u.astype(np.float64), "other": np.zeros(3)})
    np.testing.assert_allclose(load_external_ucm2(tmp_path / "b.mat", H, W), u, atol=1e-7)
    np.save(tmp_path / "c.npy", u)
    got = load_external_ucm2(tmp_path / "c.npy", H, W)
    assert got.dtype == np.float32 and got.shape == (2 * H + 1, 2 * W + 1)
    np.testing.assert_array_equal(got, u)
    cv2.imwrite(str(tmp_path / "d8.png"), np.rint(u * 255).astype(np.uint8))
    np.testing.assert_allclose(load_external_ucm2(tmp_path / "d8.png", H, W), u, atol=0.5 / 255 + 1e-6)
    cv2.imwrite(str(tmp_path / "d16.png"), np.rint(u * 65535).astype(np.uint16))
    np.testing.assert_allclose(load_external_ucm2(tmp_path / "d16.png", H, W), u, atol=0.5 / 65535 + 1e-6)


def test_load_external_reads_matlab_v73(tmp_path, ext):
    import h5py

    H, W, u = ext
    path = tmp_path / "v73.mat"
    with h5py.File(path, "w", userblock_size=512) as f:
        f["ucm2"] = u.astype(np.float64).T  # MATLAB stores column-major
    header = b"MATLAB 7.3 MAT-file".ljust(124, b" ") + b"\x00\x02IM"
    with open(path, "r+b") as f:
        f.write(header)
    np.testing.assert_allclose(load_external_ucm2(path, H, W), u, atol=1e-7)


def test_load_external_rejects_wrong_shape(tmp_path, ext):
    H, W, u = ext
    np.save(tmp_path / "small.npy", u[:-2])
    with pytest.raises(InputError) as err:
        load_external_ucm2(tmp_path / "small.npy", H, W)
    assert "small.npy" in str(err.value) and "expected (2H+1)x(2W+1)=13x19" in str(err.value)
    scipy.io.savemat(tmp_path / "img.mat", {"ucm": u[1::2, 1::2]})  # image-size, not doubled
    with pytest.raises(InputError, match="img.mat"):
        load_external_ucm2(tmp_path / "img.mat", H, W)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_load_external_rejects_nan_inf(tmp_path, ext, bad):
    H, W, u = ext
    u = u.copy()
    u[3, 4] = bad
    np.save(tmp_path / "bad.npy", u)
    with pytest.raises(InputError, match=r"bad\.npy.*NaN/inf"):
        load_external_ucm2(tmp_path / "bad.npy", H, W)
    scipy.io.savemat(tmp_path / "bad.mat", {"ucm2": u})
    with pytest.raises(InputError, match=r"bad\.mat.*NaN/inf"):
        load_external_ucm2(tmp_path / "bad.mat", H, W)


def test_load_external_rejects_out_of_range_and_unreadable(tmp_path, ext):
    H, W, u = ext
    np.save(tmp_path / "big.npy", u * 3)
    with pytest.raises(InputError, match=r"big\.npy.*\[0, 1\]"):
        load_external_ucm2(tmp_path / "big.npy", H, W)
    for name in ("junk.mat", "junk.npy", "junk.png"):
        (tmp_path / name).write_bytes(b"not a ucm at all")
        with pytest.raises(InputError, match=name.replace(".", r"\.")):
            load_external_ucm2(tmp_path / name, H, W)
    scipy.io.savemat(tmp_path / "novar.mat", {"seg": u})
    with pytest.raises(InputError, match="no variable 'ucm2'"):
        load_external_ucm2(tmp_path / "novar.mat", H, W)
    with pytest.raises(InputError, match="not found"):
        load_external_ucm2(tmp_path / "missing.npy", H, W)
    (tmp_path / "x.txt").write_text("0.5")
    with pytest.raises(InputError, match="unsupported"):
        load_external_ucm2(tmp_path / "x.txt", H, W)

"""Assign training images to the pixel, box and image subsets (SPEC 2.2).

The order is a seeded hash of each id, so the split is the same on every run
and machine, and adding images does not reshuffle the ones already there.
Images without a true mask cannot be in the pixel subset.
"""

from __future__ import annotations

import hashlib

from pipeline.core.errors import InputError

SUBSETS = ("pixel", "box", "image")


def counts_from_ratio(n: int, ratio) -> dict[str, int]:
    """Split ``n`` images by the ratio p:b:i, largest remainder first.

    The paper's Table 1 counts are not all reachable by one rounding rule
    (1:5:10 of 10,582 gives 662/3310/6610); use explicit counts for those.
    """
    ratio = [float(r) for r in ratio]
    if len(ratio) != 3 or min(ratio) < 0 or sum(ratio) <= 0:
        raise InputError("params.yaml", f"split.ratio must be three non-negative numbers p:b:i, got {ratio}")
    exact = [n * r / sum(ratio) for r in ratio]
    counts = [int(x) for x in exact]
    for k in sorted(range(3), key=lambda k: (-(exact[k] - counts[k]), k))[: n - sum(counts)]:
        counts[k] += 1
    return dict(zip(SUBSETS, counts))


def _order_key(seed: int, image_id: str) -> bytes:
    return hashlib.sha256(f"{seed}:{image_id}".encode()).digest()


def split_ids(ids, with_mask, ratio=(1, 5, 10), counts: dict | None = None, seed: int = 0,
              where="params.yaml") -> dict[str, str]:
    """Assign each training id to a subset.

    Parameters
    ----------
    ids : sequence of str
        Training image ids.
    with_mask : set of str
        Ids that have a true mask (the only ones eligible for the pixel subset).
    ratio : (p, b, i)
        Used when ``counts`` is None.
    counts : dict, optional
        Explicit ``{"pixel": n_p, "box": n_b, "image": n_i}``; images beyond their
        sum are left out of every subset.
    seed : int

    Returns
    -------
    dict id -> "pixel" | "box" | "image" (ids left out are absent).
    """
    ids = sorted(set(ids))
    if not ids:
        raise InputError(where, "no training images to split")
    if counts is not None:
        try:
            want = {k: int(counts.get(k, 0)) for k in SUBSETS}
        except (TypeError, ValueError, AttributeError):
            raise InputError(where, f"split.counts must map pixel/box/image to integers, got {counts}") from None
        unknown = set(counts) - set(SUBSETS)
        if unknown or min(want.values()) < 0:
            raise InputError(where, f"split.counts must map pixel/box/image to counts >= 0, got {counts}")
        if sum(want.values()) > len(ids):
            raise InputError(where, f"split counts {want} add up to {sum(want.values())} but there are only "
                                    f"{len(ids)} training images")
    else:
        want = counts_from_ratio(len(ids), ratio)
    order = sorted(ids, key=lambda i: _order_key(seed, i))
    masked = [i for i in order if i in with_mask]
    if want["pixel"] > len(masked):
        raise InputError(where, f"{want['pixel']} pixel-subset images asked for but only {len(masked)} "
                                f"training images have a true mask")
    assignment = {i: "pixel" for i in masked[: want["pixel"]]}
    rest = [i for i in order if i not in assignment]
    for i in rest[: want["box"]]:
        assignment[i] = "box"
    for i in rest[want["box"]: want["box"] + want["image"]]:
        assignment[i] = "image"
    return assignment

"""Assign training images to the pixel, box and image subsets (SPEC 2.2).

The order is a seeded hash of each id, so the split is the same on every run
and machine, and adding images does not reshuffle the ones already there.
Images without a true mask cannot be in the pixel subset.
"""

from __future__ import annotations

import hashlib

from pipeline.core.config import SplitConfig, record
from pipeline.core.errors import InputError
from pipeline.core.fileio import read_json, write_json
from pipeline.core.index import load_annotations, load_images

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


def split_ids(ids, with_mask, ratio=None, counts: dict | None = None, seed: int = 0,
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
    elif ratio is not None:
        want = counts_from_ratio(len(ids), ratio)
    else:
        raise ValueError("split_ids needs ratio or counts")
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


def run_split(images_json, annotations_json, out, cfg: SplitConfig) -> dict[str, int]:
    """The split stage: write ``out`` (``data/split.json``) for the index's training images.

    The file is ``{"format": "mixseg-split", "version": 1, "seed", "counts",
    "assignment": {id: "pixel" | "box" | "image"}}``; returns the counts.
    """
    images = load_images(images_json)
    _, ann = load_annotations(annotations_json)
    train = [r["id"] for r in images if r["split"] == "train"]
    with_mask = {i for i in train if ann[i]["mask"] is not None}
    counts = None if cfg.counts is None else record(cfg.counts)
    assignment = split_ids(train, with_mask, ratio=cfg.ratio, counts=counts, seed=cfg.seed)
    counts = {k: sum(v == k for v in assignment.values()) for k in SUBSETS}
    write_json(out, {"format": "mixseg-split", "version": 1, "seed": cfg.seed, "counts": counts,
                     "assignment": dict(sorted(assignment.items()))})
    return counts


def load_split(path) -> dict[str, str]:
    """``{id: subset}`` from a split file written by :func:`run_split`."""
    doc = read_json(path)
    if doc.get("format") != "mixseg-split":
        raise InputError(path, "not a mixseg split file (run `mixseg split`)")
    return doc["assignment"]

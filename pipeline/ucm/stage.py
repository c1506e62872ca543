"""The ucm stage: one ultrametric contour map per training image, in HDF5 shards.

Depends on the images index alone, so changing boxes, masks or the split never
recomputes UCMs.  ``method``: ``mixseg`` (our numba OWT-UCM), ``higra`` (higra's
watershed-by-area hierarchy on the same boundary map) or ``external`` (a folder
of ucm2 files from gPb, MCG or COB: ``<id>.mat`` / ``.npy`` / ``.png``).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from pipeline.ucm import algorithm as ucm_mod
from pipeline.core.errors import ErrorPolicy, InputError
from pipeline.core.fileio import read_image
from pipeline.core.index import load_images
from pipeline.core.parallel import plan_shards, run_sharded
from pipeline.core.shards import write_ucm_shard
from pipeline.ucm.external import external_path, load_external_ucm2

METHODS = ("mixseg", "higra", "external")
def image_ucm2(record: dict, params: dict) -> np.ndarray:
    """The (2H+1, 2W+1) uint8 UCM of one image record of images.json."""
    method = params.get("method", "mixseg")
    h, w = record["height"], record["width"]
    if method == "external":
        folder = Path(params["external_dir"])
        u = load_external_ucm2(external_path(folder, record["id"]), h, w)
        return np.round(u * 255).astype(np.uint8)
    image = read_image(record["path"])
    if image.shape[:2] != (h, w):
        raise InputError(record["path"], f"image is {image.shape[1]}x{image.shape[0]}, the index says {w}x{h}; "
                                         "rerun the source stage")
    scales = tuple(params.get("scales", (1.0, 2.0, 4.0)))
    if method == "mixseg":
        return ucm_mod.ucm2(image, scales=scales)
    if method == "higra":
        eh, ev = ucm_mod.boundary_map(image, scales=scales)
        return np.round(ucm_mod.ucm2_higra(eh, ev, method="area") * 255).astype(np.uint8)
    raise InputError("params.yaml", f"ucm.method must be one of {METHODS}, not {method!r}")


def _ucm_shard(ids, path, records, params, policy=None):
    policy = policy or ErrorPolicy("fail")
    done, ucms = [], []
    for i in ids:
        try:
            ucms.append(image_ucm2(records[i], params))
            done.append(i)
        except InputError as e:
            policy.handle(i, e)
    write_ucm_shard(path, done, ucms, params=params)
    return len(done)


def run_ucm(images_json, out_dir, params: dict, progress: bool = True) -> dict:
    """Compute the UCM of every training image and write ``out_dir/ucm-NNNNN.h5``.

    ``on_error: skip`` skips an image whose UCM cannot be made (unreadable or
    mis-sized image, missing or bad external UCM) and lists it with the reason in
    ``out_dir/skipped.json`` (written with the shards, atomically; ``[]`` when
    none); the default ``fail`` stops at the first one.
    """
    method = params.get("method", "mixseg")
    policy = ErrorPolicy(params.get("on_error", "fail"))
    if method not in METHODS:
        raise InputError("params.yaml", f"ucm.method must be one of {METHODS}, not {method!r}")
    if method == "external":
        ext = params.get("external_dir")
        if not ext or not Path(ext).is_dir():
            raise InputError(ext or "params.yaml", "ucm.external_dir must be a folder of ucm2 files")
    records = {r["id"]: r for r in load_images(images_json) if r["split"] == "train"}
    if not records:
        raise InputError(images_json, "no training images")
    shards = plan_shards(records, params.get("shard_size", 200))
    task = functools.partial(_ucm_shard, records=records, params=params)
    done = run_sharded(task, shards, out_dir, lambda k: f"ucm-{k:05d}.h5", params.get("workers", 1), "ucm",
                       progress, policy=policy)
    return {"images": sum(done), "shards": len(shards), "method": method, "skipped": len(policy.skipped)}


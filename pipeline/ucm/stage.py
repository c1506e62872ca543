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
from pipeline.core.config import UcmConfig, record
from pipeline.core.errors import ErrorPolicy, InputError
from pipeline.core.fileio import read_image
from pipeline.core.index import load_images
from pipeline.core.parallel import each_item, plan_shards, run_sharded
from pipeline.core.shards import write_ucm_shard
from pipeline.ucm.external import external_path, load_external_ucm2


def image_ucm2(image: dict, params: UcmConfig) -> np.ndarray:
    """The (2H+1, 2W+1) uint8 UCM of one image record of images.json."""
    h, w = image["height"], image["width"]
    if params.method == "external":
        u = load_external_ucm2(external_path(Path(params.external_dir), image["id"]), h, w)
        return np.round(u * 255).astype(np.uint8)
    pixels = read_image(image["path"])
    if pixels.shape[:2] != (h, w):
        raise InputError(image["path"], f"image is {pixels.shape[1]}x{pixels.shape[0]}, the index says {w}x{h}; "
                                        "rerun the source stage")
    if params.method == "mixseg":
        return ucm_mod.ucm2(pixels, scales=params.scales)
    eh, ev = ucm_mod.boundary_map(pixels, scales=params.scales)  # higra
    return np.round(ucm_mod.ucm2_higra(eh, ev, method="area") * 255).astype(np.uint8)


def _ucm_shard(ids, path, records, params, policy=None, tick=None):
    done = each_item(ids, lambda i: image_ucm2(records[i], params), policy, tick)
    write_ucm_shard(path, [i for i, _ in done], [u for _, u in done], params=record(params))
    return len(done)


def run_ucm(images_json, out_dir, params: UcmConfig, progress: bool = True) -> dict:
    """Compute the UCM of every training image and write ``out_dir/ucm-NNNNN.h5``.

    ``on_error: skip`` skips an image whose UCM cannot be made (unreadable or
    mis-sized image, missing or bad external UCM) and lists it with the reason in
    ``out_dir/skipped.json`` (written with the shards, atomically; ``[]`` when
    none); the default ``fail`` stops at the first one.
    """
    policy = ErrorPolicy(params.on_error)
    if params.method == "external" and not Path(params.external_dir).is_dir():
        raise InputError(params.external_dir, "ucm.external_dir must be a folder of ucm2 files")
    records = {r["id"]: r for r in load_images(images_json) if r["split"] == "train"}
    if not records:
        raise InputError(images_json, "no training images")
    shards = plan_shards(records, params.shard_size)
    # the records go to each task sliced to its shard (run_sharded's by_id), not bound into the task
    task = functools.partial(_ucm_shard, params=params)
    done = run_sharded(task, shards, out_dir, lambda k: f"ucm-{k:05d}.h5", params.workers, "ucm",
                       progress, policy=policy, by_id={"records": records})
    return {"images": sum(done), "shards": len(shards), "method": params.method, "skipped": len(policy.skipped)}


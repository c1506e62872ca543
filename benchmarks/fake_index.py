"""A generated COCO-like index (images.json, annotations.json, split.json) of any size whose
image files do not exist: for measuring what the stages send to workers (bench_cluster.py
--payload, tests/test_task_payload.py) without running the work."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path


def fake_index(folder: Path, n: int, boxes_per_image: int = 7, seed: int = 0) -> Path:
    """images.json, annotations.json, split.json of ``n`` COCO-like images (90% train; 10% of the
    train images and every val image with a mask; 60% box, 30% image, 10% pixel subset) with
    realistic field sizes; the files they name do not exist.  Also an empty ``ucm`` folder."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    images, anns, assignment = [], [], {}
    for k in range(n):
        i = f"{k:012d}"
        split = "val" if k % 10 == 9 else "train"
        h, w = rng.randint(240, 640), rng.randint(320, 640)
        images.append({"id": i, "path": f"data/coco/{split}2017/{i}.jpg",
                       "md5": hashlib.md5(i.encode()).hexdigest(), "height": h, "width": w, "split": split})
        boxes = []
        for _ in range(boxes_per_image):
            x0, y0 = rng.randrange(w - 8), rng.randrange(h - 8)
            boxes.append([x0, y0, rng.randint(x0 + 4, w), rng.randint(y0 + 4, h), rng.randint(1, 80)])
        mask = None
        if split == "val" or k % 10 == 0:
            mask = {"path": f"data/coco/masks/{i}.png", "format": "png", "lut": None,
                    "md5": hashlib.md5(i.encode() + b"m").hexdigest()}
        anns.append({"id": i, "mask": mask, "boxes": boxes, "tags": sorted({b[4] for b in boxes})})
        if split == "train":
            assignment[i] = "pixel" if mask else ("box" if k % 10 < 6 else "image")
    classes = ["background"] + [f"class_{c:02d}" for c in range(1, 81)]
    (folder / "images.json").write_text(json.dumps({"format": "mixseg-images", "version": 1, "items": images}))
    (folder / "annotations.json").write_text(json.dumps({"format": "mixseg-annotations", "version": 1,
                                                         "classes": classes, "items": anns}))
    (folder / "split.json").write_text(json.dumps({"format": "mixseg-split", "version": 1, "seed": 0,
                                                   "assignment": assignment}))
    (folder / "ucm").mkdir(exist_ok=True)
    return folder

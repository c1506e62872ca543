"""The ``grabcut`` box strategy: OpenCV's GrabCut initialised from each box.

Per box, ``cv2.grabCut`` runs with ``GC_INIT_WITH_RECT`` on a crop of the image
around the box (the box grown by ``context`` of its width / height on each side,
clipped to the image): pixels of the crop outside the box seed the background
colour model, the box the probable foreground.  What GrabCut keeps as
(probable) foreground inside the box is the box's confident mask.  Running on a
crop rather than the whole image keeps the cost proportional to the box and
models the background by what surrounds the object; ``context=None`` uses the
whole image (the textbook set-up).

When GrabCut cannot run or returns an empty foreground -- a box that covers its
whole crop (no background pixels to learn from), one too thin for the colour
models, or an object GrabCut loses entirely -- the whole box is taken, as
``raw_box`` would, and the box is counted as a fallback.

GrabCut's GMM initialisation draws from OpenCV's global RNG; it is reseeded with
``seed`` before every box, so equal inputs give equal masks.
"""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.core.config import GrabcutConfig


def grabcut_box_masks(image: np.ndarray, boxes, iterations: int = GrabcutConfig.iterations,
                      context: float | None = GrabcutConfig.context, seed: int = 0):
    """GrabCut foreground of each box.

    Parameters
    ----------
    image : (H, W, 3) uint8 array
        The image (RGB; GrabCut's colour models do not care about channel order).
    boxes : (M, 5) int array
        ``x0, y0, x1, y1, c``, 0-based, end-exclusive.
    iterations : int
        GrabCut iterations (>= 1).
    context : float or None
        Crop margin around the box as a fraction of its size; None: the whole image.
    seed : int
        OpenCV RNG seed, set before each box.

    Returns
    -------
    masks : list of (y1-y0, x1-x0) bool arrays
        The confident mask of each box.
    fallback : (M,) bool array
        True where GrabCut gave nothing and the whole box was taken.
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"grabcut needs an (H, W, 3) uint8 image, got {img.shape} {img.dtype}")
    if int(iterations) < 1:
        raise ValueError(f"grabcut iterations must be >= 1, got {iterations}")
    H, W = img.shape[:2]
    boxes = np.asarray(boxes, np.int64).reshape(-1, 5)
    masks, fallback = [], np.zeros(len(boxes), bool)
    bgd = np.zeros((1, 65), np.float64)
    fgd = np.zeros((1, 65), np.float64)
    for i, (x0, y0, x1, y1, _) in enumerate(boxes):
        if context is None:
            X0, Y0, X1, Y1 = 0, 0, W, H
        else:
            mx = max(1, int(round(context * (x1 - x0))))
            my = max(1, int(round(context * (y1 - y0))))
            X0, Y0, X1, Y1 = max(x0 - mx, 0), max(y0 - my, 0), min(x1 + mx, W), min(y1 + my, H)
        fg = None
        if (X0, Y0, X1, Y1) != (x0, y0, x1, y1):  # some background to learn from
            crop = np.ascontiguousarray(img[Y0:Y1, X0:X1])
            mask = np.zeros(crop.shape[:2], np.uint8)
            rect = (int(x0 - X0), int(y0 - Y0), int(x1 - x0), int(y1 - y0))
            bgd[:] = 0
            fgd[:] = 0
            cv2.setRNGSeed(int(seed))
            try:
                cv2.grabCut(crop, mask, rect, bgd, fgd, int(iterations), cv2.GC_INIT_WITH_RECT)
                m = mask[y0 - Y0:y1 - Y0, x0 - X0:x1 - X0]
                fg = (m == cv2.GC_FGD) | (m == cv2.GC_PR_FGD)
            except cv2.error:  # e.g. too few pixels for the colour models
                fg = None
        if fg is None or not fg.any():
            fg = np.ones((y1 - y0, x1 - x0), bool)
            fallback[i] = True
        masks.append(fg)
    return masks, fallback

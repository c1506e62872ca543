"""Colours for drawing class maps: a class named after a colour is drawn in it.

The synthetic classes are named ``red_stripes``, ``lime_waves``, ``violet_waves`` …;
drawing them in the PASCAL VOC palette made ``lime_waves`` orange.  A class whose name
starts with a CSS colour word (``red``, ``lime``, ``gold`` …, matched before the first
``_``, ``-`` or space) gets that colour; background is black; every other class keeps
its PASCAL VOC palette colour, for any number of classes (the VOC map has 256).
"""

from __future__ import annotations

import re

import numpy as np

from pipeline.core.fileio import voc_palette


def class_palette(classes) -> np.ndarray:
    """(len(classes), 3) uint8 RGB, one colour per class name (index 0 = background)."""
    from matplotlib.colors import CSS4_COLORS, to_rgb
    voc = voc_palette()
    out = np.zeros((len(classes), 3), np.uint8)
    for i, name in enumerate(classes):
        word = re.split(r"[_\- ]", str(name).lower(), maxsplit=1)[0]
        if i == 0:
            continue
        if word in CSS4_COLORS:
            out[i] = np.round(np.array(to_rgb(CSS4_COLORS[word])) * 255)
        else:
            out[i] = voc[i % 255 if i % 255 else 1]
    return out

"""The synthetic default dataset, written in the exact PASCAL VOC layout (SPEC section 7).

Every image holds 1-5 objects of ``C`` classes whose identity is carried by
appearance -- each class has its own colour pair *and* texture (stripes at a
class orientation and period, dots, checker, rings, hatching, waves, zigzag,
spots, grain), jittered per instance in hue, saturation, brightness, texture
scale and orientation.  Object shapes are not boxes (Fourier blobs, stars,
crescents, rings with holes, wedge-cut blobs, thin bent bars, arcs, crosses), so
a box covers a lot of background.  Backgrounds are cluttered: a warped Voronoi
mosaic of background textures (plain, gradients, smooth noise, grain, wood,
tiles) plus non-class distractor shapes painted as background.  Objects
overlap and occlude each other, some cast shadows, some have blurred (weak)
edges; lighting varies across the image and mild noise is added.

Layout written under ``out_root/VOCdevkit/VOC2012/``::

    JPEGImages/<id>.jpg               RGB, JPEG quality 90
    SegmentationClass/<id>.png        VOC palette PNG, 0 = background, 1..C, 255 = void
    SegmentationObject/<id>.png       VOC palette PNG, k = the k-th <object> of the XML, 255 = void
    Annotations/<id>.xml              VOC XML, boxes = tight boxes of the instance's labelled pixels
    ImageSets/Segmentation/{train,val,trainval}.txt
    classes.txt                       "background", then the C class names, one a line

Like real VOC, a thin void band (255) runs along object boundaries in both
PNGs.  It lies on the *outer* side of each object: on the background, or on the
occluded object where two objects touch, so an object's labelled pixels are
exactly its visible pixels minus the strip hidden under the band, and its box
(the tight box of its pixels in ``SegmentationObject``) covers all of them.

Each image is drawn from its own generator seeded by ``(seed, index)``, so the
tree is byte-identical for any ``n_jobs``.  Texture periods, band widths and
blur radii scale with ``min(height, width) / 120``, so a 500x375 dataset looks
like an up-sampled 160x120 one.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from joblib import Parallel, delayed
from PIL import Image, ImageDraw
from tqdm import tqdm

from pipeline.core.config import SyntheticConfig
from pipeline.core.errors import InputError
from pipeline.core.fileio import atomic_path, read_image, read_label_png, voc_palette, write_palette_png
from pipeline.sources.vocxml import read_voc_xml, write_voc_xml

VOID = 255
JPEG_QUALITY = 90
BASE_SIZE = 120.0  # the image side at which texture periods and widths are given
MIN_SIZE = 32
MAX_OBJECTS = 5
OBJECT_COUNT_P = (0.30, 0.28, 0.20, 0.13, 0.09)  # P(1..5 objects)
MIN_VISIBLE_FRACTION = 0.30  # an object keeps at least this share of its own area labelled
SUBDIRS = ("JPEGImages", "SegmentationClass", "SegmentationObject", "Annotations",
           "ImageSets/Segmentation")


@dataclass(frozen=True)
class ClassStyle:
    """Appearance of one object class.

    Attributes
    ----------
    name : str
        Class name written to the XML and ``classes.txt``.
    texture : str
        Texture kind, a key of the texture functions (``stripes``, ``dots``, ...).
    colour, second : tuple of float
        HSV (hue in degrees, saturation, value) of the two colours the texture
        blends between (texture value 0 -> ``colour``, 1 -> ``second``).
    period : float
        Texture period in pixels at a 120-pixel image side.
    angle : float
        Texture orientation in degrees: the direction *across* the stripes (0 gives
        vertical stripes).
    """

    name: str
    texture: str
    colour: tuple[float, float, float]
    second: tuple[float, float, float]
    period: float
    angle: float = 0.0


# Pairs share a colour but not a texture (red_stripes/red_dots, blue_checker/blue_stripes)
# or a texture but not a colour/orientation (red_stripes/cyan_stripes/blue_stripes), so
# neither colour nor texture alone identifies a class.
CLASS_STYLES: tuple[ClassStyle, ...] = (
    ClassStyle("red_stripes", "stripes", (0, 0.85, 0.85), (0, 0.80, 0.30), 6.0, 0),
    ClassStyle("green_dots", "dots", (125, 0.75, 0.55), (80, 0.35, 0.95), 7.0, 0),
    ClassStyle("blue_checker", "checker", (220, 0.80, 0.75), (220, 0.15, 0.95), 8.0, 0),
    ClassStyle("yellow_zigzag", "zigzag", (52, 0.85, 0.95), (45, 0.70, 0.25), 7.0, 90),
    ClassStyle("purple_rings", "rings", (280, 0.65, 0.65), (280, 0.25, 0.95), 6.0, 0),
    ClassStyle("orange_spots", "spots", (28, 0.90, 0.95), (18, 0.85, 0.30), 6.0, 0),
    ClassStyle("cyan_stripes", "stripes", (185, 0.80, 0.85), (190, 0.80, 0.30), 6.0, 90),
    ClassStyle("red_dots", "dots", (0, 0.80, 0.80), (0, 0.10, 0.97), 6.0, 0),
    ClassStyle("brown_grain", "grain", (25, 0.65, 0.45), (32, 0.55, 0.80), 2.0, 0),
    ClassStyle("magenta_hatch", "hatch", (315, 0.75, 0.85), (315, 0.70, 0.30), 6.0, 45),
    ClassStyle("lime_waves", "waves", (85, 0.80, 0.85), (120, 0.80, 0.30), 6.0, 30),
    ClassStyle("blue_stripes", "stripes", (225, 0.80, 0.70), (210, 0.25, 0.95), 5.0, 135),
    ClassStyle("pink_checker", "checker", (340, 0.45, 0.95), (340, 0.85, 0.55), 6.0, 45),
    ClassStyle("teal_rings", "rings", (170, 0.80, 0.55), (160, 0.30, 0.90), 8.0, 0),
    ClassStyle("olive_hatch", "hatch", (60, 0.70, 0.55), (60, 0.25, 0.90), 7.0, 0),
    ClassStyle("navy_grain", "grain", (235, 0.75, 0.35), (225, 0.60, 0.75), 2.0, 0),
    ClassStyle("gold_dots", "dots", (45, 0.85, 0.85), (30, 0.80, 0.35), 8.0, 0),
    ClassStyle("violet_waves", "waves", (265, 0.60, 0.80), (265, 0.80, 0.35), 7.0, 120),
    ClassStyle("salmon_zigzag", "zigzag", (10, 0.50, 0.95), (5, 0.80, 0.45), 6.0, 0),
    ClassStyle("white_spots", "spots", (0, 0.03, 0.95), (0, 0.05, 0.12), 5.0, 0),
)

# Shape kinds of objects and how often each is drawn.
SHAPE_KINDS = ("blob", "star", "crescent", "ring", "pacman", "bar", "arc", "cross")
SHAPE_P = (0.22, 0.12, 0.12, 0.10, 0.12, 0.14, 0.10, 0.08)


@dataclass
class Sample:
    """One generated image and its ground truth.

    Attributes
    ----------
    image : numpy.ndarray
        (H, W, 3) uint8 RGB.
    class_map : numpy.ndarray
        (H, W) uint8; 0 background, 1..C classes, 255 void.
    object_map : numpy.ndarray
        (H, W) uint8; 0 background, k = the k-th object, 255 void.
    objects : list of tuple
        ``(class_index, (x0, y0, x1, y1))`` per object, 0-based end-exclusive boxes,
        in instance order.
    """

    image: np.ndarray
    class_map: np.ndarray
    object_map: np.ndarray
    objects: list


def class_names(num_classes: int) -> list[str]:
    """Return ``["background", <num_classes names>]`` for the synthetic classes."""
    _check_num_classes(num_classes)
    return ["background"] + [s.name for s in CLASS_STYLES[:num_classes]]


def _check_num_classes(num_classes) -> None:
    if not isinstance(num_classes, (int, np.integer)) or not 1 <= num_classes <= len(CLASS_STYLES):
        raise ValueError(f"num_classes must be an integer in 1..{len(CLASS_STYLES)}, got {num_classes!r}")


# --------------------------------------------------------------------------------------
# colours and textures


def _hsv_rgb(h: float, s: float, v: float) -> np.ndarray:
    """HSV (hue in degrees) to an RGB float32 triple in [0, 1]."""
    r, g, b = colorsys.hsv_to_rgb((h % 360.0) / 360.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return np.array([r, g, b], np.float32)


def _value_noise(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> np.ndarray:
    """Smooth random field of ``shape``, features about ``cell`` pixels wide, standardised."""
    h, w = shape
    gh = max(2, int(round(h / cell)) + 2)
    gw = max(2, int(round(w / cell)) + 2)
    grid = rng.random((gh, gw), dtype=np.float32)
    field = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
    return (field - field.mean()) / (field.std() + 1e-6)


def _rotate(x: np.ndarray, y: np.ndarray, angle_deg: float) -> tuple[np.ndarray, np.ndarray]:
    a = math.radians(angle_deg)
    c, s = math.cos(a), math.sin(a)
    return x * c + y * s, -x * s + y * c


def _crisp(wave: np.ndarray, sharpness: float = 1.6) -> np.ndarray:
    """Map a wave in [-1, 1] to [0, 1] with steep but anti-aliased transitions."""
    return np.clip(0.5 + sharpness * wave, 0.0, 1.0)


def _texture(kind: str, x: np.ndarray, y: np.ndarray, period: float, angle: float,
             rng: np.random.Generator) -> np.ndarray:
    """Texture value in [0, 1] at local coordinates ``x, y`` (pixels).

    Parameters
    ----------
    kind : str
        Texture kind.
    x, y : numpy.ndarray
        Coordinates (same shape, float32) relative to the texture origin.
    period : float
        Texture period in pixels.
    angle : float
        Orientation in degrees (direction of the texture's wave vector).
    rng : numpy.random.Generator
        Source of the phase and of noise fields.
    """
    two_pi = np.float32(2 * math.pi)
    phase = np.float32(rng.uniform(0, 2 * math.pi))
    u, v = _rotate(x, y, angle)
    p = np.float32(period)
    if kind == "plain":
        return np.zeros_like(x)
    if kind == "gradient":
        return np.clip(0.5 + u / (2.0 * p), 0.0, 1.0)
    if kind == "stripes":
        return _crisp(np.sin(two_pi * u / p + phase))
    if kind == "dots":
        row_h = p * np.float32(0.866)
        row = np.floor(v / row_h)
        du = np.mod(u + 0.5 * p * np.mod(row, 2) + phase, p) - 0.5 * p
        dv = np.mod(v, row_h) - 0.5 * row_h
        return np.clip(0.3 * p - np.sqrt(du * du + dv * dv) + 0.5, 0.0, 1.0)
    if kind == "checker":
        return _crisp(np.sin(two_pi * u / p + phase) * np.sin(two_pi * v / p), 3.0)
    if kind == "rings":
        return _crisp(np.sin(two_pi * np.sqrt(x * x + y * y) / p + phase))
    if kind == "hatch":
        m = np.maximum(np.cos(two_pi * u / p + phase), np.cos(two_pi * v / p))
        return np.clip((m - 0.55) * 4.0, 0.0, 1.0)
    if kind == "waves":
        return _crisp(np.sin(two_pi * (u + 0.6 * p * np.sin(two_pi * v / (3.0 * p))) / p + phase))
    if kind == "zigzag":
        tri = np.abs(np.mod(v / p, 1.0) - 0.5) * 2.0 - 0.5  # triangle wave in [-0.5, 0.5]
        return _crisp(np.sin(two_pi * (u + 0.8 * p * tri) / p + phase))
    if kind == "spots":
        return np.clip((_value_noise(rng, x.shape, p) - 0.5) * 2.5, 0.0, 1.0)
    if kind == "grain":
        return np.clip(0.5 + 0.35 * _value_noise(rng, x.shape, p), 0.0, 1.0)
    if kind == "smooth":
        return np.clip(0.5 + 0.3 * _value_noise(rng, x.shape, p), 0.0, 1.0)
    if kind == "wood":
        warp = 0.8 * p * _value_noise(rng, x.shape, 4.0 * p)
        return 0.5 + 0.5 * np.sin(two_pi * (u + warp) / p + phase)
    if kind == "tiles":
        m = np.maximum(np.cos(two_pi * u / p), np.cos(two_pi * v / p))
        return np.clip((m - 0.85) * 6.0, 0.0, 1.0)
    raise ValueError(f"unknown texture kind {kind!r}")


def _paint(t: np.ndarray, c1: np.ndarray, c2: np.ndarray) -> np.ndarray:
    """Blend two RGB colours by the texture ``t`` -> (h, w, 3) float32."""
    return c1 + t[..., None] * (c2 - c1)


# --------------------------------------------------------------------------------------
# shapes


def _grid(cx: float, cy: float, ext: float, height: int, width: int):
    """Pixel window around (cx, cy) of half-size ``ext``, clipped to the image.

    Returns ``(y0, y1, x0, x1, X, Y)`` with ``X, Y`` float32 coordinates relative to the
    centre, or ``None`` if the window misses the image.
    """
    x0, x1 = max(0, int(math.floor(cx - ext))), min(width, int(math.ceil(cx + ext)) + 1)
    y0, y1 = max(0, int(math.floor(cy - ext))), min(height, int(math.ceil(cy + ext)) + 1)
    if x0 >= x1 or y0 >= y1:
        return None
    xs = np.arange(x0, x1, dtype=np.float32) - np.float32(cx)
    ys = np.arange(y0, y1, dtype=np.float32) - np.float32(cy)
    X, Y = np.meshgrid(xs, ys)
    return y0, y1, x0, x1, X, Y


def _wrap(a):
    return np.mod(a + np.pi, 2 * np.pi) - np.pi


def _sample_shape(rng: np.random.Generator, kind: str) -> dict:
    """Draw the shape parameters (size and position excluded) of one object."""
    p = {"kind": kind, "rot": rng.uniform(0, 360)}
    if kind in ("blob", "ring", "pacman"):
        k = np.arange(2, 6)
        p["amp"] = rng.uniform(0, 0.36, 4) / k
        p["phi"] = rng.uniform(0, 2 * math.pi, 4)
    p["aspect"] = rng.uniform(0.6, 1.6) if kind in ("blob", "star", "crescent", "ring", "pacman") else 1.0
    if kind == "star":
        p["points"] = int(rng.integers(4, 8))
        p["inner"] = rng.uniform(0.35, 0.6)
        p["power"] = rng.uniform(1.0, 2.5)
    elif kind == "crescent":
        p["offset"] = rng.uniform(0.35, 0.65)
        p["cut"] = rng.uniform(0.75, 0.95)
    elif kind == "ring":
        p["hole"] = rng.uniform(0.35, 0.55)
        p["hole_off"] = rng.uniform(-0.12, 0.12, 2)
    elif kind == "pacman":
        p["wedge"] = rng.uniform(0.35, 0.8)
        p["wedge_at"] = rng.uniform(-math.pi, math.pi)
    elif kind == "bar":
        p["thin"] = rng.uniform(0.12, 0.28)
        p["bend"] = rng.uniform(-0.5, 0.5)
    elif kind == "arc":
        p["width"] = rng.uniform(0.12, 0.24)
        p["span"] = rng.uniform(2.0, 4.6)
    elif kind == "cross":
        p["arm"] = rng.uniform(0.18, 0.34)
    return p


_REACH = {"blob": 1.5, "star": 1.05, "crescent": 1.05, "ring": 1.5, "pacman": 1.5,
          "bar": 1.3, "arc": 1.05, "cross": 1.1}


def _shape_mask(p: dict, cx: float, cy: float, R: float, height: int, width: int) -> np.ndarray:
    """Boolean (H, W) mask of a shape of radius ``R`` centred at (cx, cy)."""
    mask = np.zeros((height, width), bool)
    ext = R * _REACH[p["kind"]] * max(1.0, p["aspect"]) + 1.0
    g = _grid(cx, cy, ext, height, width)
    if g is None:
        return mask
    y0, y1, x0, x1, X, Y = g
    u, v = _rotate(X, Y, p["rot"])
    v = v / np.float32(p["aspect"])
    rho = np.sqrt(u * u + v * v)
    th = np.arctan2(v, u)
    kind = p["kind"]
    if kind in ("blob", "ring", "pacman"):
        r = np.ones_like(th)
        for i, k in enumerate(range(2, 6)):
            r += np.float32(p["amp"][i]) * np.cos(k * th + np.float32(p["phi"][i]))
        m = rho < R * r
        if kind == "ring":
            hx, hy = p["hole_off"] * R
            m &= np.hypot(u - hx, v - hy) > p["hole"] * R
        elif kind == "pacman":
            m &= np.abs(_wrap(th - p["wedge_at"])) > p["wedge"]
    elif kind == "star":
        q = p["inner"]
        r = q + (1 - q) * (0.5 + 0.5 * np.cos(p["points"] * th)) ** p["power"]
        m = rho < R * r
    elif kind == "crescent":
        m = (rho < R) & (np.hypot(u - p["offset"] * R, v) > p["cut"] * R)
    elif kind == "bar":
        vb = v - p["bend"] * u * u / R
        m = (u / R) ** 2 + (vb / (p["thin"] * R)) ** 2 < 1.0
    elif kind == "arc":
        m = (np.abs(rho - 0.8 * R) < p["width"] * R) & (np.abs(th) < p["span"] / 2)
    elif kind == "cross":
        a = p["arm"] * R
        m = ((np.abs(u) < R) & (np.abs(v) < a)) | ((np.abs(v) < R) & (np.abs(u) < a))
    else:
        raise ValueError(f"unknown shape kind {kind!r}")
    mask[y0:y1, x0:x1] = m
    return mask


# --------------------------------------------------------------------------------------
# layout: which object is where, and what the labels are


def _band_width(scale: float) -> int:
    return max(1, int(round(2 * scale)))


def _void_band(inst: np.ndarray, width: int) -> np.ndarray:
    """Pixels within ``width`` of a pixel of a higher layer (objects above background,
    later objects above earlier ones): the outer boundary band of every object."""
    k = 2 * width + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    return cv2.dilate(inst, kernel) > inst


def _labelled_counts(masks: list[np.ndarray], band: int) -> np.ndarray:
    """Labelled (visible, non-void) pixel count of each mask when stacked in order."""
    inst = np.zeros(masks[0].shape, np.uint8)
    for k, m in enumerate(masks, 1):
        inst[m] = k
    keep = ~_void_band(inst, band)
    return np.bincount(inst[keep], minlength=len(masks) + 1)[1:]


def _layout(rng: np.random.Generator, height: int, width: int, num_classes: int, scale: float) -> list[dict]:
    """Choose 1-5 objects: class, shape, size, position, in painting order.

    Objects are placed at random, or (in about half of the multi-object images)
    next to an earlier object so that they overlap.  A candidate is rejected if
    it, or any object below it, would keep less than ``MIN_VISIBLE_FRACTION`` of
    its area or fewer than ``min_px`` labelled pixels.
    """
    side = min(height, width)
    min_px = max(12, int(0.003 * height * width))
    band = _band_width(scale)
    n_target = int(rng.choice(np.arange(1, MAX_OBJECTS + 1), p=OBJECT_COUNT_P))
    cluster = rng.random() < 0.55
    objects: list[dict] = []
    for _ in range(12 * n_target):
        if len(objects) == n_target:
            break
        kind = SHAPE_KINDS[int(rng.choice(len(SHAPE_KINDS), p=SHAPE_P))]
        shape = _sample_shape(rng, kind)
        R = side * math.exp(rng.uniform(math.log(0.07), math.log(0.36)))
        if kind in ("bar", "arc", "cross"):
            R *= 1.25  # thin shapes need more length for the same area
        if objects and (cluster or rng.random() < 0.2):
            ref = objects[int(rng.integers(len(objects)))]
            d = (ref["R"] + R) * rng.uniform(0.3, 0.85)
            a = rng.uniform(0, 2 * math.pi)
            cx, cy = ref["cx"] + d * math.cos(a), ref["cy"] + d * math.sin(a)
        else:
            cx, cy = rng.uniform(0.08, 0.92) * width, rng.uniform(0.08, 0.92) * height
        if objects and rng.random() < 0.2:
            cls = objects[int(rng.integers(len(objects)))]["cls"]  # a second instance of a class
        else:
            cls = int(rng.integers(1, num_classes + 1))
        mask = _shape_mask(shape, cx, cy, R, height, width)
        if mask.sum() < min_px:
            continue
        masks = [o["mask"] for o in objects] + [mask]
        counts = _labelled_counts(masks, band)
        areas = np.array([m.sum() for m in masks])
        if np.all(counts >= np.maximum(min_px, MIN_VISIBLE_FRACTION * areas)):
            objects.append({"cls": cls, "shape": shape, "R": R, "cx": cx, "cy": cy, "mask": mask})
    if not objects:  # never seen in practice; guarantees the ">= 1 object" contract
        shape = _sample_shape(rng, "blob")
        R = 0.25 * side
        objects.append({"cls": int(rng.integers(1, num_classes + 1)), "shape": shape, "R": R,
                        "cx": width / 2, "cy": height / 2,
                        "mask": _shape_mask(shape, width / 2, height / 2, R, height, width)})
    return objects


def _labels(objects: list[dict], band: int):
    """Class map, object map and tight boxes of the labelled pixels of each object."""
    shape = objects[0]["mask"].shape
    inst = np.zeros(shape, np.uint8)
    for k, o in enumerate(objects, 1):
        inst[o["mask"]] = k
    void = _void_band(inst, band)
    lut = np.array([0] + [o["cls"] for o in objects], np.uint8)
    cls_map = lut[inst]
    obj_map = inst.copy()
    cls_map[void] = VOID
    obj_map[void] = VOID
    boxes = []
    for k in range(1, len(objects) + 1):
        ys, xs = np.nonzero(obj_map == k)
        boxes.append((int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))
    return cls_map, obj_map, boxes


# --------------------------------------------------------------------------------------
# rendering


def _background(rng: np.random.Generator, height: int, width: int, scale: float) -> np.ndarray:
    """Cluttered background: a warped Voronoi mosaic of textured low-saturation regions."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    n_regions = int(rng.integers(2, 6))
    seeds = rng.uniform(0, 1, (n_regions, 2)) * (width, height)
    warp = 0.08 * min(height, width)
    wx = xs + warp * _value_noise(rng, (height, width), 30 * scale)
    wy = ys + warp * _value_noise(rng, (height, width), 30 * scale)
    d = np.stack([(wx - sx) ** 2 + (wy - sy) ** 2 for sx, sy in seeds])
    region = np.argmin(d, axis=0)
    img = np.empty((height, width, 3), np.float32)
    for r in range(n_regions):
        kind = ("plain", "gradient", "smooth", "grain", "wood", "tiles")[int(rng.integers(6))]
        sat_max = 0.5 if kind in ("plain", "gradient", "smooth") else 0.3
        h = rng.uniform(0, 360)
        c1 = _hsv_rgb(h, rng.uniform(0, sat_max), rng.uniform(0.2, 0.9))
        c2 = _hsv_rgb(h + rng.uniform(-30, 30), rng.uniform(0, sat_max), rng.uniform(0.2, 0.9))
        if kind in ("grain", "wood", "tiles"):  # low-contrast textures
            c2 = c1 + rng.uniform(0.2, 0.45) * (c2 - c1) + np.float32(rng.choice([-1, 1]) * 0.12)
        period = {"plain": 1.0, "gradient": rng.uniform(0.3, 1.0) * max(height, width),
                  "smooth": rng.uniform(12, 35) * scale, "grain": rng.uniform(1.0, 2.5) * scale,
                  "wood": rng.uniform(5, 14) * scale, "tiles": rng.uniform(10, 20) * scale}[kind]
        t = _texture(kind, xs - seeds[r, 0], ys - seeds[r, 1], period, rng.uniform(0, 180), rng)
        sel = region == r
        img[sel] = _paint(t[sel], c1, c2)
    return img


def _distractors(rng: np.random.Generator, img: np.ndarray, scale: float) -> None:
    """Paint 0-4 non-class shapes (rectangles, polygons, ellipses, lines) into ``img``;
    they are background: plain, gradient or smooth-noise fills, any colour."""
    height, width = img.shape[:2]
    side = min(height, width)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    for _ in range(int(rng.integers(0, 5))):
        m = np.zeros((height, width), np.uint8)
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        size = side * rng.uniform(0.06, 0.3)
        kind = int(rng.integers(4))
        if kind == 0:  # rotated rectangle
            rect = ((cx, cy), (size * rng.uniform(0.6, 2.0), size * rng.uniform(0.4, 1.5)), rng.uniform(0, 180))
            cv2.fillPoly(m, [np.round(cv2.boxPoints(rect)).astype(np.int32)], 1)
        elif kind == 1:  # random convex polygon
            ang = np.sort(rng.uniform(0, 2 * math.pi, int(rng.integers(3, 7))))
            rad = size * rng.uniform(0.5, 1.0, ang.size)
            pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1)
            cv2.fillPoly(m, [np.round(pts).astype(np.int32)], 1)
        elif kind == 2:  # ellipse
            cv2.ellipse(m, (int(cx), int(cy)), (max(1, int(size)), max(1, int(size * rng.uniform(0.3, 1.0)))),
                        rng.uniform(0, 180), 0, 360, 1, -1)
        else:  # thick straight line (pole, wire)
            a = rng.uniform(0, math.pi)
            dx, dy = 2 * size * math.cos(a), 2 * size * math.sin(a)
            cv2.line(m, (int(cx - dx), int(cy - dy)), (int(cx + dx), int(cy + dy)), 1,
                     max(1, int(round(rng.uniform(1, 4) * scale))))
        if not m.any():
            continue
        tex = ("plain", "gradient", "smooth")[int(rng.integers(3))]
        h = rng.uniform(0, 360)
        c1 = _hsv_rgb(h, rng.uniform(0.05, 0.65), rng.uniform(0.2, 0.95))
        c2 = _hsv_rgb(h + rng.uniform(-20, 20), rng.uniform(0.05, 0.65), rng.uniform(0.2, 0.95))
        period = size * 2 if tex == "gradient" else rng.uniform(8, 20) * scale
        alpha = cv2.GaussianBlur(m.astype(np.float32), (0, 0), 0.5 * scale + 0.1)
        y0, x0 = np.argwhere(alpha > 0).min(0)
        y1, x1 = np.argwhere(alpha > 0).max(0) + 1
        t = _texture(tex, xs[y0:y1, x0:x1] - cx, ys[y0:y1, x0:x1] - cy, period, rng.uniform(0, 180), rng)
        a = alpha[y0:y1, x0:x1, None]
        img[y0:y1, x0:x1] = img[y0:y1, x0:x1] * (1 - a) + _paint(t, c1, c2) * a


def _paint_object(rng: np.random.Generator, img: np.ndarray, o: dict, style: ClassStyle, scale: float) -> None:
    """Composite one object into ``img``: optional shadow, jittered class texture and
    colours, shading across the object, sharp or blurred (weak) edge."""
    height, width = img.shape[:2]
    mask = o["mask"].astype(np.float32)
    ys, xs = np.nonzero(o["mask"])
    if rng.random() < 0.3:  # soft shadow, offset from the object: a boundary that is not one
        a = rng.uniform(0, 2 * math.pi)
        off = o["R"] * rng.uniform(0.08, 0.2)
        M = np.float32([[1, 0, off * math.cos(a)], [0, 1, off * math.sin(a)]])
        sh = cv2.warpAffine(mask, M, (width, height))
        sh = cv2.GaussianBlur(sh, (0, 0), 1.5 * scale + 0.08 * o["R"])
        img *= (1.0 - rng.uniform(0.25, 0.5) * sh)[..., None]
    sigma = rng.uniform(0.8, 2.2) * scale if rng.random() < 0.35 else 0.45 * scale
    pad = int(math.ceil(3 * sigma)) + 1
    y0, y1 = max(0, ys.min() - pad), min(height, ys.max() + 1 + pad)
    x0, x1 = max(0, xs.min() - pad), min(width, xs.max() + 1 + pad)
    alpha = cv2.GaussianBlur(mask[y0:y1, x0:x1], (0, 0), sigma)[..., None]
    hue_j = rng.uniform(-10, 10)
    sat_j = rng.uniform(0.8, 1.1)
    val_j = rng.uniform(0.75, 1.15)
    h1, s1, v1 = style.colour
    h2, s2, v2 = style.second
    c1 = _hsv_rgb(h1 + hue_j, s1 * sat_j, v1 * val_j)
    c2 = _hsv_rgb(h2 + hue_j, s2 * sat_j, v2 * val_j)
    period = style.period * scale * rng.uniform(0.8, 1.25)
    angle = style.angle + rng.uniform(-12, 12)
    X = np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(o["cx"])
    Y = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(o["cy"])
    X, Y = np.broadcast_arrays(X, Y)
    layer = _paint(_texture(style.texture, X, Y, period, angle, rng), c1, c2)
    g = rng.uniform(-0.3, 0.3, 2) / max(o["R"], 1.0)
    layer *= np.clip(1.0 + g[0] * X + g[1] * Y, 0.5, 1.5)[..., None]
    img[y0:y1, x0:x1] = img[y0:y1, x0:x1] * (1 - alpha) + layer * alpha


def _finish(rng: np.random.Generator, img: np.ndarray, scale: float) -> np.ndarray:
    """Lighting gradient, vignette, colour cast, optional defocus, noise; to uint8."""
    height, width = img.shape[:2]
    yy = (np.arange(height, dtype=np.float32)[:, None] / height - 0.5)
    xx = (np.arange(width, dtype=np.float32)[None, :] / width - 0.5)
    gx, gy = rng.uniform(-0.4, 0.4, 2)
    light = rng.uniform(0.8, 1.15) * (1 + gx * xx + gy * yy - rng.uniform(0, 0.4) * (xx * xx + yy * yy))
    img = img * light[..., None] * rng.uniform(0.93, 1.07, 3).astype(np.float32)
    if rng.random() < 0.25:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, 0.8) * scale)
    img = img + np.float32(rng.uniform(0.006, 0.02)) * rng.standard_normal(img.shape, dtype=np.float32)
    return np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)


def render_sample(seed: int, index: int, height: int = 120, width: int = 160, num_classes: int = 12) -> Sample:
    """Generate image ``index`` of the dataset with base ``seed``, in memory.

    Parameters
    ----------
    seed, index : int
        The image's generator is ``numpy.random.default_rng([seed, index])``, so the
        result depends on nothing else.
    height, width : int
        Image size in pixels (at least 32).
    num_classes : int
        Number of object classes ``C`` (the first ``C`` of :data:`CLASS_STYLES`).

    Returns
    -------
    Sample
        The image, its class and object maps, and per object ``(class, box)``.
    """
    _check_num_classes(num_classes)
    if height < MIN_SIZE or width < MIN_SIZE:
        raise ValueError(f"image size must be at least {MIN_SIZE}x{MIN_SIZE}, got {width}x{height}")
    rng = np.random.default_rng([int(seed), int(index)])
    scale = min(height, width) / BASE_SIZE
    objects = _layout(rng, height, width, num_classes, scale)
    cls_map, obj_map, boxes = _labels(objects, _band_width(scale))
    img = _background(rng, height, width, scale)
    _distractors(rng, img, scale)
    for o in objects:
        _paint_object(rng, img, o, CLASS_STYLES[o["cls"] - 1], scale)
    img = _finish(rng, img, scale)
    return Sample(img, cls_map, obj_map, [(o["cls"], b) for o, b in zip(objects, boxes)])


# --------------------------------------------------------------------------------------
# writing the dataset


def _boxes_overlap(a, b) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def _write_text(path: Path, lines) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text("".join(f"{s}\n" for s in lines))


def _write_one(voc: str, index: int, image_id: str, seed: int, height: int, width: int,
               num_classes: int) -> dict:
    """Render image ``index`` and write its four files under ``voc``; return its statistics."""
    voc = Path(voc)
    s = render_sample(seed, index, height, width, num_classes)
    names = class_names(num_classes)
    with atomic_path(voc / "JPEGImages" / f"{image_id}.jpg") as tmp:
        Image.fromarray(s.image).save(tmp, format="JPEG", quality=JPEG_QUALITY)
    write_palette_png(voc / "SegmentationClass" / f"{image_id}.png", s.class_map)
    write_palette_png(voc / "SegmentationObject" / f"{image_id}.png", s.object_map)
    write_voc_xml(voc / "Annotations" / f"{image_id}.xml", f"{image_id}.jpg", width, height,
                  [(names[c], box) for c, box in s.objects])
    pairs = diff_pairs = 0
    for i in range(len(s.objects)):
        for j in range(i + 1, len(s.objects)):
            if _boxes_overlap(s.objects[i][1], s.objects[j][1]):
                pairs += 1
                diff_pairs += s.objects[i][0] != s.objects[j][0]
    fills = []
    for k, (_, (x0, y0, x1, y1)) in enumerate(s.objects, 1):
        fills.append(float((s.object_map[y0:y1, x0:x1] == k).mean()))
    return {"classes": [c for c, _ in s.objects], "pairs": pairs, "diff_pairs": diff_pairs,
            "fills": fills, "void": int((s.class_map == VOID).sum()), "pixels": height * width}


def generate(out_root, num_train: int = SyntheticConfig.num_train, num_val: int = SyntheticConfig.num_val, height: int = SyntheticConfig.height,
             width: int = SyntheticConfig.width, num_classes: int = SyntheticConfig.num_classes, seed: int = SyntheticConfig.seed, n_jobs: int = 1,
             progress: bool = True) -> dict:
    """Write the synthetic dataset in the PASCAL VOC layout under ``out_root/VOCdevkit/VOC2012``.

    The ``VOC2012`` folder is built under a temporary name and renamed into place
    when complete (replacing an older one), and every file in it is written
    atomically, so a crash never leaves a partial dataset.  Image ``i`` has id
    ``syn_{i:06d}``; the first ``num_train`` are the train split, the rest val.

    Parameters
    ----------
    out_root : str or path-like
        Folder that receives ``VOCdevkit/VOC2012``.
    num_train, num_val : int
        Images in the train and val splits (together at least 1).
    height, width : int
        Image size (at least 32 each).
    num_classes : int
        Number of object classes, 1..20 (the first of :data:`CLASS_STYLES`).
    seed : int
        Base seed; image ``i`` is drawn from ``default_rng([seed, i])``.
    n_jobs : int
        joblib workers; the output is byte-identical for any value.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    dict
        ``root`` (the VOC2012 folder), ``classes``, ``images``, ``train``, ``val``,
        ``objects``, ``objects_per_class``, ``objects_per_image`` (histogram 1..5),
        ``overlapping_pairs`` (object pairs whose boxes intersect),
        ``overlapping_pairs_diff_class``, ``images_with_overlap`` (images with
        intersecting boxes of different classes), ``mean_box_fill`` (mean share of
        a box covered by its object's labelled pixels) and ``void_fraction``.
    """
    _check_num_classes(num_classes)
    for name, v in (("num_train", num_train), ("num_val", num_val)):
        if not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
    if num_train + num_val < 1:
        raise ValueError("the synthetic dataset needs at least one image (num_train + num_val >= 1)")
    if height < MIN_SIZE or width < MIN_SIZE:
        raise ValueError(f"image size must be at least {MIN_SIZE}x{MIN_SIZE}, got {width}x{height}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    names = class_names(num_classes)
    n = num_train + num_val
    ids = [f"syn_{i:06d}" for i in range(n)]
    voc = Path(out_root) / "VOCdevkit" / "VOC2012"
    with atomic_path(voc) as tmp:
        for sub in SUBDIRS:
            (tmp / sub).mkdir(parents=True, exist_ok=True)
        jobs = (delayed(_write_one)(str(tmp), i, ids[i], int(seed), int(height), int(width), int(num_classes))
                for i in range(n))
        results = Parallel(n_jobs=n_jobs, return_as="generator")(jobs)
        stats = list(tqdm(results, total=n, disable=not progress, desc="synthetic VOC", unit="img"))
        sets = tmp / "ImageSets" / "Segmentation"
        _write_text(sets / "train.txt", ids[:num_train])
        _write_text(sets / "val.txt", ids[num_train:])
        _write_text(sets / "trainval.txt", ids)
        _write_text(tmp / "classes.txt", names)
    per_class = {name: 0 for name in names[1:]}
    per_image = {k: 0 for k in range(1, MAX_OBJECTS + 1)}
    for st in stats:
        per_image[len(st["classes"])] += 1
        for c in st["classes"]:
            per_class[names[c]] += 1
    fills = [f for st in stats for f in st["fills"]]
    return {
        "root": str(voc),
        "classes": names,
        "images": n,
        "train": num_train,
        "val": num_val,
        "objects": len(fills),
        "objects_per_class": per_class,
        "objects_per_image": per_image,
        "overlapping_pairs": sum(st["pairs"] for st in stats),
        "overlapping_pairs_diff_class": sum(st["diff_pairs"] for st in stats),
        "images_with_overlap": sum(st["diff_pairs"] > 0 for st in stats),
        "mean_box_fill": float(np.mean(fills)),
        "void_fraction": sum(st["void"] for st in stats) / sum(st["pixels"] for st in stats),
    }


# --------------------------------------------------------------------------------------
# preview


def _voc_dir(out_root) -> Path:
    root = Path(out_root)
    if (root / "JPEGImages").is_dir():
        return root
    voc = root / "VOCdevkit" / "VOC2012"
    if not voc.is_dir():
        raise InputError(root, "no VOCdevkit/VOC2012 folder here (run the synthetic source first)")
    return voc


def render_preview(out_root, path_png, n: int = 16, cols: int = 4) -> Path:
    """Write a grid PNG of the first ``n`` images, each beside its class map.

    Each image carries its boxes (outlined in the class colour); each class map
    is shown in the VOC palette (void in cream).  A legend of the class colours
    runs along the bottom.

    Parameters
    ----------
    out_root : str or path-like
        The folder given to :func:`generate` (or the VOC2012 folder itself).
    path_png : str or path-like
        Output PNG, written atomically.
    n : int
        Number of images (train ids first, then val).
    cols : int
        Image/class-map pairs per row.

    Returns
    -------
    pathlib.Path
        ``path_png``.
    """
    voc = _voc_dir(out_root)
    sets = voc / "ImageSets" / "Segmentation"
    ids = []
    for split in ("train", "val"):
        f = sets / f"{split}.txt"
        if f.exists():
            ids += [s.strip() for s in f.read_text().splitlines() if s.strip()]
    ids = ids[:max(1, n)]
    if not ids:
        raise InputError(sets, "no image ids in train.txt or val.txt")
    classes_file = voc / "classes.txt"
    names = classes_file.read_text().split() if classes_file.exists() else []
    pal = voc_palette()
    tiles = []
    for image_id in ids:
        img = Image.fromarray(read_image(voc / "JPEGImages" / f"{image_id}.jpg"))
        draw = ImageDraw.Draw(img)
        for obj in read_voc_xml(voc / "Annotations" / f"{image_id}.xml")["objects"]:
            c = names.index(obj["name"]) if obj["name"] in names else 255
            x0, y0, x1, y1 = obj["box"]
            draw.rectangle([x0, y0, x1 - 1, y1 - 1], outline=tuple(int(v) for v in pal[c]))
        cls = pal[read_label_png(voc / "SegmentationClass" / f"{image_id}.png")]
        tiles.append(np.concatenate([np.asarray(img), np.full((img.height, 2, 3), 255, np.uint8), cls], 1))
    th = max(t.shape[0] for t in tiles)
    tw = max(t.shape[1] for t in tiles)
    gap = 6
    rows = math.ceil(len(tiles) / cols)
    legend_h = 16 * math.ceil(max(len(names) - 1, 0) / 6) + (8 if len(names) > 1 else 0)
    grid = np.full((rows * (th + gap) + gap + legend_h, min(cols, len(tiles)) * (tw + gap) + gap, 3), 40, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        y, x = gap + r * (th + gap), gap + c * (tw + gap)
        grid[y:y + t.shape[0], x:x + t.shape[1]] = t
    out = Image.fromarray(grid)
    draw = ImageDraw.Draw(out)
    y0 = rows * (th + gap) + gap
    col_w = max(1, (grid.shape[1] - gap) // 6)
    for i, name in enumerate(names[1:], 1):
        r, c = divmod(i - 1, 6)
        x, y = gap + c * col_w, y0 + r * 16
        draw.rectangle([x, y + 2, x + 10, y + 12], fill=tuple(int(v) for v in pal[i]))
        draw.text((x + 14, y + 1), name, fill=(230, 230, 230))
    path_png = Path(path_png)
    with atomic_path(path_png) as tmp:
        out.save(tmp, format="PNG")
    return path_png

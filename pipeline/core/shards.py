"""Label encodings and the HDF5 shards -- the contract between pipeline and train.

Class-id maps (format 3, any number of classes)
-----------------------------------------------
Every label and true mask is an (H, W) map of codes, uint8 -- or uint16 when its codes do not
fit a byte -- with C+1 = ``num_classes``: ``0..C`` the pixel's one class, the type's maximum
(255 / 65535) **ignored** (VOC void, uncertain box regions), ``C+1+k`` a soft (multi-class)
pixel whose classes are the image's class set ``k`` (two or more, ascending; a shard stores
the sets of all its images as one flat table).  :class:`LabelMap` holds one map with its sets;
:func:`encode_bitsets` builds it from bitsets (a box strategy's, whose bit k may stand for any
global class).  Image-level tags are class-id lists.  Soft pixels are rare, so a map is about a
byte per pixel before compression, and a map without soft pixels (at most 255 classes) is
exactly a VOC class map.  The layout is :data:`pipeline.core.schema.LABEL_ENCODING`.

Bitsets (format 2, at most 64 classes; still read)
--------------------------------------------------
Format 2 stored every pixel label as a bitset over the C+1 classes (bit c set <=> the pixel is
of class c; several bits soft, no bit ignored) in the narrowest unsigned type (uint8 .. uint64)
and a tag bitset per image.  The box strategies still work in bitsets (:func:`bitset_dtype`);
``ShardReader.label``/``truth`` return bitsets up to 64 classes (both formats) and the
:class:`LabelMap` beyond; ``label_map``/``truth_map`` return a :class:`LabelMap` always.

Label shards (``labels-<split>-NNNNN.h5``: ids, kind, size, tags, encoded image, the
``label/<id>`` and ``truth/<id>`` maps, boxes) and UCM shards (``ucm-NNNNN.h5``: ids and
the ``ucm2/<id>`` maps): their attributes and datasets, with dtypes and shapes, are
declared once in :mod:`pipeline.core.schema` (``LABEL_SHARD``, ``UCM_SHARD``; ``python -m
pipeline.core.schema`` prints them).  The writers below create exactly those, in that
order, and ``mixseg verify`` checks them.

Checksums (format 2+, attr ``checksum="crc32"``) are ``zlib.crc32`` of the
decoded array's C-order little-endian bytes (:func:`map_crc32`; a format 3 label's also
covers its class sets, :func:`label_crc32`), so they do not depend on the compression;
``mixseg verify`` recomputes them all, and the readers check the one of every image and
map they hand out (a damaged shard raises
:class:`InputError` instead of training on it).  Format 1 shards (no checksums)
are still read.  The ``workers`` knob is not recorded in ``params``: it never
changes the output.

Image ids are UTF-8 everywhere: the ``ids`` dataset is a UTF-8 string dataset, map
names are UTF-8 links (ASCII ids are written exactly as before), and the readers
decode them with :func:`decode_ids`.

A stage's output folder holds ``manifest.json`` (:func:`write_manifest`, written by
:func:`pipeline.core.parallel.run_sharded` inside the temporary folder, so it appears
with the shards): every shard's file name, image count, size and CRC-32.  The readers
refuse a folder that does not match it (a shard missing, an unlisted one, another size
or image count); ``mixseg verify`` also checks the CRCs.  Folders without one (older
outputs) are read as before.

Maps are stored one chunk per map with deflate (gzip level 1) compression: a
500x375 box-label map is ~5 KB in format 3 (~10 KB as format 2's uint32 bitsets) and decodes in
well under a millisecond (``benchmarks/bench_encoding.py``).  Datasets are written
without timestamps, and deflate is deterministic, so the same inputs give
byte-identical shards.  (Format 1 used LZF, whose h5py encoder leaves its hash
table uninitialised: the same map could compress to different bytes in
different processes.)
"""

from __future__ import annotations

import fnmatch
import json
import os
import zlib
from pathlib import Path

import h5py
import numpy as np

from pipeline import __version__
from pipeline.core.errors import InputError
from pipeline.core.fileio import atomic_path, decode_image, read_json, write_json
from pipeline.core.schema import (BOX_DTYPE, CHECKSUM_DTYPE, LABEL_DTYPES, LABEL_SHARD, MANIFEST, MANIFEST_FILE,
                                  MANIFEST_NAME, MANIFEST_VERSION, MAX_CLASSES, UCM_SHARD, Shard)

FORMAT_VERSION = 3
READ_VERSIONS = (1, 2, 3)  # format 1: no checksums; formats 1-2: bitset maps (<= 64 classes)
KINDS = ("pixel", "box", "image")
KIND_CODE = {k: i for i, k in enumerate(KINDS)}
RUN_ONLY_PARAMS = ("workers",)  # knobs that never change the output: not recorded in the shards
_MAP_OPTS = dict(compression="gzip", compression_opts=1, track_times=False)  # deterministic, unlike LZF


# ----------------------------------------------------------------------------- bitsets

def bitset_dtype(num_classes: int) -> np.dtype:
    """Narrowest unsigned integer type with ``num_classes`` (C+1) bits (format 2 maps, the
    box strategies' working type): at most 64 classes."""
    for dt in (np.uint8, np.uint16, np.uint32, np.uint64):
        if num_classes <= np.dtype(dt).itemsize * 8:
            return np.dtype(dt)
    raise ValueError(f"at most 64 classes (background included) in a bitset, got {num_classes}")


def encode_class_map(class_map: np.ndarray, num_classes: int) -> np.ndarray:
    """(H, W) uint8 class indices (255 = void) -> (H, W) bitsets (void -> 0)."""
    dt = bitset_dtype(num_classes)
    cm = np.asarray(class_map)
    valid = cm < num_classes
    shift = np.where(valid, cm, 0).astype(dt)
    return np.where(valid, dt.type(1) << shift, dt.type(0)).astype(dt)


def encode_tags(class_indices, num_classes: int):
    """Iterable of class indices -> one bitset scalar."""
    dt = bitset_dtype(num_classes)
    v = 0
    for c in class_indices:
        v |= 1 << int(c)
    return dt.type(v)


def decode_bitsets(bitsets: np.ndarray, num_classes: int) -> np.ndarray:
    """(...) bitsets -> (..., C+1) bool, entry c True <=> bit c set."""
    b = np.asarray(bitsets).astype(np.uint64)
    return ((b[..., None] >> np.arange(num_classes, dtype=np.uint64)) & np.uint64(1)).astype(bool)


def bit_count(bitsets: np.ndarray) -> np.ndarray:
    """Number of set bits per element (|s_i| in the paper's Eq. 3), as uint8."""
    return np.bitwise_count(np.asarray(bitsets)).astype(np.uint8)


def bitsets_to_class_map(bitsets, void: int = 255) -> np.ndarray:
    """(H, W) bitsets -> (H, W) uint8 class map; no bit or several bits -> ``void``.
    A :class:`LabelMap` (what ``ShardReader.truth`` returns beyond 64 classes) gives
    :meth:`LabelMap.class_map`."""
    if isinstance(bitsets, LabelMap):
        return bitsets.class_map(void)
    b = np.asarray(bitsets).astype(np.uint64)
    single = (b != 0) & ((b & (b - np.uint64(1))) == 0)
    cls = np.zeros(b.shape, np.uint8)
    nz = np.where(single, b, np.uint64(1))
    cls[...] = np.log2(nz.astype(np.float64)).astype(np.uint8)
    return np.where(single, cls, np.uint8(void))


# ----------------------------------------------------------------------------- class-id maps (format 3)

def code_dtype(num_classes: int, num_sets: int = 0) -> np.dtype:
    """The type of a format 3 map with ``num_sets`` soft-pixel class sets: uint8 when its
    codes 0..C+S and the ignore value (the type's maximum) fit, else uint16."""
    for dt in LABEL_DTYPES:
        if num_classes + num_sets <= np.iinfo(dt).max:
            return np.dtype(dt)
    raise ValueError(f"{num_classes} classes and {num_sets} class sets do not fit a uint16 label map "
                     f"(at most {np.iinfo(np.uint16).max} codes)")


_POW2 = {}


def _single_class_lut(dt: np.dtype) -> np.ndarray:
    """For uint8/uint16 bitsets: value -> its bit's index (powers of two), 0 otherwise."""
    lut = _POW2.get(dt)
    if lut is None:
        lut = np.zeros(np.iinfo(dt).max + 1, np.int64)
        lut[1 << np.arange(dt.itemsize * 8)] = np.arange(dt.itemsize * 8)
        _POW2[dt] = lut
    return lut


class LabelMap:
    """A format 3 label: per pixel a code, plus the image's table of soft-pixel class sets.

    ``codes`` (H, W) uint8 or uint16: ``0..C`` one class (C+1 = ``num_classes``), the
    type's maximum (255 / 65535, :attr:`ignore`) no class (ignored, void), ``C+1+k``
    the class set ``k`` of the table: class ids ``sets[offsets[k]:offsets[k+1]]``
    (ascending, two or more).  Codes between ``C+1+S`` and the ignore value do not occur.
    """

    __slots__ = ("codes", "sets", "offsets", "num_classes")

    def __init__(self, codes, num_classes: int, sets=None, offsets=None):
        self.codes = np.asarray(codes)
        if self.codes.dtype not in LABEL_DTYPES:
            raise ValueError(f"label codes must be uint8 or uint16, got {self.codes.dtype}")
        self.num_classes = int(num_classes)
        self.sets = np.zeros(0, np.int64) if sets is None else np.asarray(sets, np.int64).reshape(-1)
        self.offsets = np.zeros(1, np.int64) if offsets is None else np.asarray(offsets, np.int64).reshape(-1)

    @classmethod
    def from_class_map(cls, class_map, num_classes: int) -> "LabelMap":
        """(H, W) class indices, values >= ``num_classes`` (e.g. 255) void -> a map without sets."""
        cm = np.asarray(class_map)
        dt = code_dtype(num_classes)
        codes = np.where(cm < num_classes, cm, np.iinfo(dt).max).astype(dt)
        return cls(codes, num_classes)

    @property
    def ignore(self) -> int:
        return int(np.iinfo(self.codes.dtype).max)

    @property
    def shape(self) -> tuple:
        return self.codes.shape

    @property
    def num_sets(self) -> int:
        return len(self.offsets) - 1

    def class_set(self, k: int) -> np.ndarray:
        """Class ids of set ``k`` (code ``C+1+k``)."""
        return self.sets[self.offsets[k]:self.offsets[k + 1]]

    def _lut(self, values_single, values_sets, value_ignore, dtype) -> np.ndarray:
        """A table over every code of the map's type: classes, sets, ignore (and unused codes)."""
        lut = np.full(self.ignore + 1, value_ignore, dtype)
        lut[:self.num_classes] = values_single
        if self.num_sets:
            lut[self.num_classes:self.num_classes + self.num_sets] = values_sets
        return lut

    def set_bitsets(self) -> np.ndarray:
        """(S,) uint64 bitsets of the sets (classes < 64 only)."""
        if not self.num_sets:
            return np.zeros(0, np.uint64)
        # every set has two or more distinct classes: the sum of their bits is their or
        return np.add.reduceat(np.uint64(1) << self.sets.astype(np.uint64), self.offsets[:-1])

    def to_bitsets(self, dtype=None) -> np.ndarray:
        """(H, W) bitsets (format 2's encoding), 0 = ignored: at most 64 classes."""
        dt = np.dtype(dtype) if dtype is not None else bitset_dtype(self.num_classes)
        lut = np.zeros(self.ignore + 1, dt)
        lut[:self.num_classes] = np.left_shift(np.ones(self.num_classes, dt), np.arange(self.num_classes, dtype=dt))
        if self.num_sets:
            lut[self.num_classes:self.num_classes + self.num_sets] = self.set_bitsets()
        return np.take(lut, self.codes)

    def counts(self) -> np.ndarray:
        """(H, W) uint16 |s_i|: 1 for one class, the set size for a soft pixel, 0 ignored."""
        return self._lut(1, np.diff(self.offsets), 0, np.uint16)[self.codes]

    def class_map(self, void: int = 255) -> np.ndarray:
        """(H, W) class ids; ignored and soft (several classes) pixels -> ``void``.  uint8
        when the classes and ``void`` fit, else uint16."""
        dt = np.uint8 if max(self.num_classes - 1, void) <= 255 else np.uint16
        return self._lut(np.arange(self.num_classes), void, void, dt)[self.codes]

    def pixel_classes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every (pixel, class) membership of the map: flat pixel index, class id and the
        weight 1/|s_i|, single-class pixels first (raster order), then the soft ones
        (raster order, classes ascending)."""
        flat = self.codes.reshape(-1)
        single = np.flatnonzero(flat < self.num_classes)
        soft = np.flatnonzero((flat >= self.num_classes) & (flat != self.ignore))
        k = flat[soft].astype(np.int64) - self.num_classes
        lens = np.diff(self.offsets)[k]
        pix = np.repeat(soft, lens)
        starts = np.repeat(self.offsets[k], lens)
        within = np.arange(len(pix)) - np.repeat(np.cumsum(lens) - lens, lens)
        cls = self.sets[starts + within]
        return (np.concatenate([single, pix]), np.concatenate([flat[single].astype(np.int64), cls]),
                np.concatenate([np.ones(len(single)), 1.0 / np.repeat(lens, lens)]))

    def one_hot(self) -> np.ndarray:
        """(H, W, C+1) bool, entry c True <=> class c in the pixel's set (small maps only)."""
        out = np.zeros((self.codes.size, self.num_classes), bool)
        pix, cls, _ = self.pixel_classes()
        out[pix, cls] = True
        return out.reshape(self.codes.shape + (self.num_classes,))

    def present(self) -> np.ndarray:
        """(C+1,) bool: the classes some pixel has (alone or in a set)."""
        out = np.zeros(self.num_classes, bool)
        u = np.unique(self.codes)
        out[u[u < self.num_classes].astype(np.int64)] = True
        ks = u[(u >= self.num_classes) & (u != self.ignore)].astype(np.int64) - self.num_classes
        for k in ks:
            out[self.class_set(k)] = True
        return out

    def problem(self) -> str | None:
        """What makes this map invalid (codes beyond the table, bad sets), or None."""
        if self.offsets[0] != 0 or np.any(np.diff(self.offsets) < 2) or self.offsets[-1] != len(self.sets):
            return "class set offsets inconsistent (every set must have two or more classes)"
        if len(self.sets) and (self.sets.min() < 0 or self.sets.max() >= self.num_classes):
            return f"a class set holds a class outside 0..{self.num_classes - 1}"
        for k in range(self.num_sets):
            if np.any(np.diff(self.class_set(k)) <= 0):
                return f"class set {k} is not ascending and unique"
        top = self.num_classes + self.num_sets
        if top > self.ignore:
            return f"{self.num_classes} classes and {self.num_sets} sets need more codes than {self.codes.dtype}"
        bad = int(np.count_nonzero((self.codes >= top) & (self.codes != self.ignore))) if self.codes.size else 0
        if bad:
            return f"{bad} pixels have a code at or above {top} (num_classes + sets) that is not the ignore value"
        return None

    def __eq__(self, other):
        if not isinstance(other, LabelMap):
            return NotImplemented
        return (self.num_classes == other.num_classes and self.codes.dtype == other.codes.dtype
                and np.array_equal(self.codes, other.codes) and np.array_equal(self.sets, other.sets)
                and np.array_equal(self.offsets, other.offsets))

    __hash__ = None

    def __repr__(self):
        return (f"LabelMap({self.codes.shape[0]}x{self.codes.shape[1]} {self.codes.dtype}, "
                f"{self.num_classes} classes, {self.num_sets} sets)")


def encode_bitsets(bitsets, num_classes: int, classes_of_bits=None) -> LabelMap:
    """(H, W) bitsets -> :class:`LabelMap`.  Bit ``k`` means class ``classes_of_bits[k]``
    (default: class ``k``), so a box strategy's bitsets over an image's own few classes
    map to the global ids.  No bit -> ignored; one bit -> that class; several -> a set,
    the sets numbered in ascending order of their bitset value (deterministic)."""
    b = np.asarray(bitsets)
    if b.dtype.kind != "u":
        raise ValueError(f"bitsets must be unsigned integers, got {b.dtype}")
    nbits = b.dtype.itemsize * 8
    if classes_of_bits is None:
        mapping = np.arange(nbits, dtype=np.int64)
        width = num_classes
    else:
        mapping = np.asarray(classes_of_bits, np.int64).reshape(-1)
        width = len(mapping)
        if width and (mapping.min() < 0 or mapping.max() >= num_classes):
            raise ValueError(f"classes_of_bits must be class ids in 0..{num_classes - 1}")
    if width < nbits and b.size and np.any(b >> b.dtype.type(width)):
        raise ValueError(f"bits set at or above num_classes ({width})" if classes_of_bits is None
                         else f"bitsets have a bit beyond the {width} classes given")
    if b.dtype.itemsize <= 2:
        bit = _single_class_lut(b.dtype)[b]
    else:
        bit = np.log2(np.where(b != 0, b, 1).astype(np.float64)).astype(np.int64)
    multi = (b & (b - b.dtype.type(1))) != 0
    uniq, inv = np.unique(b[multi], return_inverse=True) if multi.any() else (b[:0], None)
    dt = code_dtype(num_classes, len(uniq))
    ignore = np.iinfo(dt).max
    codes = (bit if classes_of_bits is None else mapping[np.minimum(bit, max(width - 1, 0))]).astype(dt)
    codes[b == 0] = ignore
    sets, offsets = np.zeros(0, np.int64), np.zeros(1, np.int64)
    if len(uniq):
        codes[multi] = (num_classes + inv).astype(dt)
        u = uniq.astype(np.uint64)
        member = ((u[:, None] >> np.arange(nbits, dtype=np.uint64)) & np.uint64(1)).astype(bool)
        rows, cols = np.nonzero(member)
        glob = mapping[cols]
        order = np.lexsort((glob, rows))   # by set, classes ascending
        sets = glob[order]
        offsets = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=len(uniq)))])
    return LabelMap(codes, num_classes, sets, offsets)


def label_crc32(lm: LabelMap) -> int:
    """CRC-32 of a format 3 label: its codes (:func:`map_crc32`), then its sets' sizes
    (``<i8``) and class ids (``<u2``)."""
    crc = map_crc32(lm.codes)
    if lm.num_sets:
        crc = zlib.crc32(np.diff(lm.offsets).astype("<i8").tobytes(), crc)
        crc = zlib.crc32(lm.sets.astype("<u2").tobytes(), crc)
    return crc & 0xFFFFFFFF


# ----------------------------------------------------------------------------- writing

def map_crc32(arr) -> int:
    """CRC-32 of an array's values (C order, little endian), independent of how it is stored."""
    a = np.asarray(arr)
    a = np.ascontiguousarray(a, a.dtype.newbyteorder("<") if a.dtype.byteorder not in ("|", "<") else a.dtype)
    return zlib.crc32(a.reshape(-1).view(np.uint8)) & 0xFFFFFFFF  # the bytes in place, no copy


def meta_crc32(image_id: str, kind: int, height: int, width: int, tags, boxes) -> int:
    """CRC-32 of one image's small fields: id, kind code, size, tags (format 3: the ascending
    class ids; formats 1-2: the tag bitset) and its boxes."""
    c = zlib.crc32(str(image_id).encode())
    c = zlib.crc32(np.array([kind, height, width], "<i8").tobytes(), c)
    c = zlib.crc32(np.array(tags, "<u8").tobytes(), c)
    c = zlib.crc32(np.ascontiguousarray(boxes, BOX_DTYPE).tobytes(), c)
    return c & 0xFFFFFFFF


def _common_attrs(fmt: str, params: dict | None) -> dict:
    recorded = {k: v for k, v in (params or {}).items() if k not in RUN_ONLY_PARAMS}
    return {"mixseg_format": fmt, "format_version": FORMAT_VERSION, "code_version": __version__, "checksum": "crc32",
            "params": json.dumps(recorded, sort_keys=True)}


def _write_shard(f, shard: Shard, attrs: dict, columns: dict, maps: list[dict], bitset=None) -> None:
    """Write ``shard``'s attributes and datasets in their declared order: ``attrs`` and
    ``columns`` by name, ``maps`` per image as {group: (id, (H, W) array)}.  Map groups
    declared next to each other are filled together, image by image."""
    for a in shard.attrs:
        f.attrs[a.name] = attrs[a.name]
    groups = {}
    for ds in shard.datasets:
        if ds.is_map:
            groups[ds.name] = f.create_group(ds.name)
            continue
        _fill_maps(groups, maps)
        groups = {}
        if ds.dtype == "str":
            f.create_dataset(ds.name, data=np.array(columns[ds.name], dtype=object), dtype=ds.np_dtype(),
                             track_times=False)
        elif ds.dtype == "vlen uint8":
            out = f.create_dataset(ds.name, (len(columns[ds.name]),), dtype=ds.np_dtype(), track_times=False)
            for k, b in enumerate(columns[ds.name]):
                out[k] = np.frombuffer(b, np.uint8)
        else:
            f.create_dataset(ds.name, data=np.asarray(columns[ds.name], ds.np_dtype(bitset)), track_times=False)
    _fill_maps(groups, maps)


def _fill_maps(groups: dict, maps: list[dict]) -> None:
    for per_image in maps:
        for name, g in groups.items():
            if name in per_image:
                image_id, m = per_image[name]
                # flushed now: the chunk's file space is allocated in writing order, not when the
                # dataset object happens to be freed (that order varied across processes under load,
                # giving shards of equal content but different bytes)
                g.create_dataset(image_id, data=m, chunks=m.shape, **_MAP_OPTS).flush()


def write_ucm_shard(path, ids, ucm2s, params: dict | None = None) -> None:
    """Write UCMs (each (2H+1, 2W+1) uint8) to one shard, atomically."""
    ds = UCM_SHARD.dataset("ucm2")
    maps = []
    for i, u in zip(ids, ucm2s):
        u = np.asarray(u)
        if u.dtype != ds.np_dtype():
            raise ValueError("ucm2 must be quantised to uint8 before storing")
        if not ds.shape_ok(u.shape):
            raise ValueError(f"ucm2 of {i} has shape {u.shape}, expected {ds.shape_text()}")
        maps.append({"ucm2": (i, u)})
    columns = {"ids": ids, "crc32": [map_crc32(m["ucm2"][1]) for m in maps]}
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w", track_order=False) as f:
            _write_shard(f, UCM_SHARD.of_version(FORMAT_VERSION), _common_attrs("ucm", params), columns, maps)


def as_label_map(m, num_classes: int, what: str) -> LabelMap:
    """A record's label or truth -- (H, W) bitsets of ``bitset_dtype(num_classes)`` (at most 64
    classes) or a :class:`LabelMap` -- as a checked :class:`LabelMap`; ValueError naming ``what``."""
    if isinstance(m, LabelMap):
        if m.num_classes != num_classes:
            raise ValueError(f"{what}: a LabelMap of {m.num_classes} classes, the shard has {num_classes}")
        reason = m.problem()
        if reason:
            raise ValueError(f"{what}: {reason}")
        return m
    m = np.asarray(m)
    if num_classes > 64 or m.dtype != bitset_dtype(num_classes):
        raise ValueError(f"{what}: dtype {m.dtype}, expected a LabelMap" +
                         ("" if num_classes > 64 else f" or {bitset_dtype(num_classes)} bitsets"))
    return encode_bitsets(m, num_classes)


def _write_label_shard_v2(path, records, classes, split, params, strategies, background) -> None:
    """Format 2 (bitset maps, one tag bitset per image; at most 64 classes): what mixseg wrote
    before format 3, kept for tests and the encoding benchmark."""
    num_classes = len(classes)
    dt = bitset_dtype(num_classes)
    shard = LABEL_SHARD.of_version(2)
    n = len(records)
    high = dt.type(((1 << (dt.itemsize * 8)) - 1) & ~((1 << num_classes) - 1))  # bits no class may use
    tags = np.array([encode_tags(r["tags"], num_classes) for r in records], dt)
    boxes, offsets, maps = [], [0], []
    sums = np.zeros(n, CHECKSUM_DTYPE)
    for k, r in enumerate(records):
        sums[k]["image"] = zlib.crc32(r["image_bytes"]) & 0xFFFFFFFF
        maps.append({})
        for ds in shard.maps:
            m = r.get(ds.name)
            if m is not None:
                m = m.to_bitsets(dt) if isinstance(m, LabelMap) else np.asarray(m)
                if not ds.shape_ok(m.shape, h=r["height"], w=r["width"]) or m.dtype != dt:
                    raise ValueError(f"{ds.name} of {r['id']}: shape {m.shape} dtype {m.dtype}, "
                                     f"expected {(r['height'], r['width'])} {dt}")
                if high and np.any(m & high):
                    raise ValueError(f"{ds.name} of {r['id']}: bits set at or above num_classes ({num_classes})")
                maps[k][ds.name] = (r["id"], m)
                sums[k][ds.name] = map_crc32(m)
        b = r.get("boxes")
        b = np.zeros(0, BOX_DTYPE) if b is None else np.asarray(b, BOX_DTYPE)
        boxes.append(b)
        offsets.append(offsets[-1] + len(b))
        sums[k]["meta"] = meta_crc32(r["id"], KIND_CODE[r["kind"]], r["height"], r["width"], tags[k], b)
    columns = {"ids": [r["id"] for r in records], "kind": [KIND_CODE[r["kind"]] for r in records],
               "height": [r["height"] for r in records], "width": [r["width"] for r in records], "tags": tags,
               "image": [r["image_bytes"] for r in records],
               "boxes": np.concatenate(boxes) if boxes else np.zeros(0, BOX_DTYPE), "box_offsets": offsets,
               "checksums": sums}
    attrs = {**_common_attrs("labels", params), "format_version": 2, "classes": json.dumps(list(classes)),
             "num_classes": num_classes, "bitset_dtype": dt.name, "split": split, "kinds": json.dumps(list(KINDS)),
             "strategies": json.dumps(list(strategies)), "background": int(bool(background))}
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            _write_shard(f, shard, attrs, columns, maps, dt)


def write_label_shard(path, records: list[dict], classes: list[str], split: str,
                      params: dict | None = None, strategies=("ucm", "raw_box"), background: bool = True,
                      version: int = FORMAT_VERSION) -> None:
    """Write one label shard (format 3) atomically.

    ``records`` (sorted by id) are dicts with ``id``, ``kind`` (pixel/box/image),
    ``height``, ``width``, ``tags`` (class indices), ``image_bytes`` (bytes),
    optional ``label`` and ``truth`` ((H, W) bitsets of ``bitset_dtype(len(classes))``, at
    most 64 classes, or :class:`LabelMap`; a truth has one class per pixel) and ``boxes``
    (array of BOX_DTYPE).  ``version=2`` writes the former bitset format (at most 64 classes;
    for tests and the encoding benchmark).
    """
    if version == 2:
        return _write_label_shard_v2(path, records, classes, split, params, strategies, background)
    if version != FORMAT_VERSION:
        raise ValueError(f"label shards are written in format 2 or {FORMAT_VERSION}, not {version}")
    num_classes = len(classes)
    if not 1 <= num_classes <= MAX_CLASSES:
        raise ValueError(f"{num_classes} classes: a label shard holds 1..{MAX_CLASSES}")
    shard = LABEL_SHARD.of_version(FORMAT_VERSION)
    n = len(records)
    tag_ids, tag_offsets = [], [0]
    boxes, offsets, maps = [], [0], []
    sets, set_offsets, set_first = [], [0], [0]
    sums = np.zeros(n, CHECKSUM_DTYPE)
    for k, r in enumerate(records):
        tags = np.unique(np.asarray(list(r["tags"]), np.int64))
        if len(tags) and (tags[0] < 0 or tags[-1] >= num_classes):
            raise ValueError(f"tags of {r['id']}: class index outside 0..{num_classes - 1}")
        tag_ids.append(tags)
        tag_offsets.append(tag_offsets[-1] + len(tags))
        sums[k]["image"] = zlib.crc32(r["image_bytes"]) & 0xFFFFFFFF
        maps.append({})
        for ds in shard.maps:
            m = r.get(ds.name)
            if m is None:
                continue
            lm = as_label_map(m, num_classes, f"{ds.name} of {r['id']}")
            if not ds.shape_ok(lm.shape, h=r["height"], w=r["width"]):
                raise ValueError(f"{ds.name} of {r['id']}: shape {lm.shape}, expected {(r['height'], r['width'])}")
            if ds.name == "truth" and lm.num_sets:
                raise ValueError(f"truth of {r['id']}: a true mask has one class per pixel, "
                                 f"{int((lm.counts() > 1).sum())} pixels have several")
            if ds.name == "label":
                sets.append(lm.sets)
                set_offsets.extend((set_offsets[-1] + lm.offsets[1:]).tolist())
                sums[k][ds.name] = label_crc32(lm)
            else:
                sums[k][ds.name] = map_crc32(lm.codes)
            maps[k][ds.name] = (r["id"], lm.codes)
        set_first.append(len(set_offsets) - 1)
        b = r.get("boxes")
        b = np.zeros(0, BOX_DTYPE) if b is None else np.asarray(b, BOX_DTYPE)
        boxes.append(b)
        offsets.append(offsets[-1] + len(b))
        sums[k]["meta"] = meta_crc32(r["id"], KIND_CODE[r["kind"]], r["height"], r["width"], tags, b)
    columns = {"ids": [r["id"] for r in records], "kind": [KIND_CODE[r["kind"]] for r in records],
               "height": [r["height"] for r in records], "width": [r["width"] for r in records],
               "tag_ids": np.concatenate(tag_ids) if tag_ids else np.zeros(0, np.int64), "tag_offsets": tag_offsets,
               "image": [r["image_bytes"] for r in records],
               "label_sets": np.concatenate(sets) if sets else np.zeros(0, np.int64),
               "label_set_offsets": set_offsets, "label_set_first": set_first,
               "boxes": np.concatenate(boxes) if boxes else np.zeros(0, BOX_DTYPE), "box_offsets": offsets,
               "checksums": sums}
    attrs = {**_common_attrs("labels", params), "classes": json.dumps(list(classes)), "num_classes": num_classes,
             "split": split, "kinds": json.dumps(list(KINDS)),
             "strategies": json.dumps(list(strategies)), "background": int(bool(background))}
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            _write_shard(f, shard, attrs, columns, maps)


# ----------------------------------------------------------------------------- folder manifest

def file_crc32(path) -> int:
    """CRC-32 of a file's bytes."""
    crc = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            crc = zlib.crc32(block, crc)
    return crc & 0xFFFFFFFF


def manifest_entry(path, images: int) -> dict:
    """A written shard's row of its folder's manifest: file name, image count, size in bytes, CRC-32."""
    path = Path(path)
    return {"name": path.name, "images": int(images), "bytes": path.stat().st_size,
            "crc32": f"{file_crc32(path):08x}"}


def write_manifest(folder, entries: list[dict], stage: str, skipped: int | None = None) -> None:
    """Write ``folder/manifest.json``: the stage that wrote the folder, its totals and every
    shard's :func:`manifest_entry` (sorted by name).  Deterministic: no time, host or worker count."""
    entries = sorted(entries, key=lambda e: e["name"])
    doc = {"manifest": MANIFEST_VERSION, "stage": stage, "shards": len(entries),
           "images": sum(e["images"] for e in entries)}
    if skipped is not None:
        doc["skipped"] = int(skipped)
    doc["files"] = entries
    write_json(Path(folder) / MANIFEST_NAME, doc)


def _fields_ok(obj, fields, optional=()) -> bool:
    """Does the JSON object ``obj`` hold every declared field (but ``optional`` ones) with its type?"""
    types = {"int": int, "str": str, "list": list}
    return isinstance(obj, dict) and all(
        (f.name in optional and f.name not in obj) or
        (isinstance(obj.get(f.name), types[f.type]) and not isinstance(obj[f.name], bool)
         and (f.type != "int" or obj[f.name] >= 0)) for f in fields)


def _manifest_error(doc) -> str | None:
    """What makes ``doc`` no manifest (see :data:`pipeline.core.schema.MANIFEST`), or None."""
    if not isinstance(doc, dict):
        return f"a JSON {type(doc).__name__}, expected an object"
    if doc.get("manifest") != MANIFEST_VERSION:
        return f"manifest version {doc.get('manifest')!r}, this mixseg reads {MANIFEST_VERSION}"
    if not _fields_ok(doc, MANIFEST, optional=("skipped",)):
        return "missing or mistyped keys"
    names = set()
    for e in doc["files"]:
        ok = _fields_ok(e, MANIFEST_FILE) and e["name"] and "/" not in e["name"] and len(e["crc32"]) == 8
        try:
            ok = ok and int(e["crc32"], 16) >= 0
        except ValueError:
            ok = False
        if not ok:
            return f"bad file entry {e!r}"
        if e["name"] in names:
            return f"{e['name']} listed twice"
        names.add(e["name"])
    return None


def read_manifest(folder) -> dict | None:
    """``folder``'s manifest; None when it has none (an output of an older mixseg).
    An unreadable or malformed one is an :class:`InputError`."""
    path = Path(folder) / MANIFEST_NAME
    if not path.exists() and not path.is_symlink():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(path, f"unreadable shard manifest ({e}): rerun the stage that wrote {folder}") from None
    reason = _manifest_error(doc)
    if reason is not None:
        raise InputError(path, f"not a mixseg shard manifest ({reason}): rerun the stage that wrote {folder}")
    return doc


def manifest_problems(folder, manifest: dict, pattern: str = "*.h5", counts: dict | None = None,
                      crc: bool = False) -> list[tuple[Path, str]]:
    """How ``folder`` differs from its ``manifest``, for the files matching ``pattern``: a listed
    shard missing or of another size, an unlisted ``*.h5`` present, with ``counts`` ({name: images
    read}) another image count, with ``crc`` another CRC-32 (reads every byte).  (file, reason) each."""
    folder = Path(folder)
    where, rerun = folder / MANIFEST_NAME, f"rerun the {manifest['stage']} stage"
    changed = f"the shard was changed after the {manifest['stage']} stage wrote it; {rerun}"
    listed = {e["name"]: e for e in manifest["files"] if fnmatch.fnmatchcase(e["name"], pattern)}
    present = {p.name for p in folder.glob(pattern) if p.suffix == ".h5" and not p.is_dir()}
    out = []
    for name, e in sorted(listed.items()):
        p = folder / name
        if name not in present:
            out.append((p, f"listed in {where} but missing: {rerun}"))
            continue
        size = p.stat().st_size
        if size != e["bytes"]:
            out.append((p, f"{size} bytes, {where} records {e['bytes']}: {changed}"))
            continue
        if counts is not None and name in counts and counts[name] != e["images"]:
            out.append((p, f"holds {counts[name]} images, {where} lists {e['images']}: {rerun}"))
        if crc:
            c = file_crc32(p)
            if c != int(e["crc32"], 16):
                out.append((p, f"file checksum mismatch (stored {e['crc32']}, computed {c:08x}) with {where}: "
                               f"{changed}"))
    for name in sorted(present - set(listed)):
        out.append((folder / name, f"not listed in {where} (a file from another run?): {rerun}"))
    return out


# ----------------------------------------------------------------------------- reading

def decode_ids(values) -> list[str]:
    """Stored image ids (h5py returns the UTF-8 bytes) as str."""
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def _open(path, fmt: str) -> h5py.File:
    try:
        f = h5py.File(path, "r")
    except FileNotFoundError:
        raise InputError(path, "shard not found") from None
    except OSError as e:
        raise InputError(path, f"corrupt or truncated shard ({e})") from None
    if f.attrs.get("mixseg_format") != fmt:
        f.close()
        raise InputError(path, f"not a mixseg {fmt} shard")
    version = f.attrs.get("format_version")
    if version is None or int(version) not in READ_VERSIONS:
        f.close()  # (read the attribute first: a closed file has no attrs)
        raise InputError(path, f"shard format version {version}, "
                               f"this mixseg reads {', '.join(map(str, READ_VERSIONS))}")
    return f


def _listed_shards(path, pattern: str) -> tuple[list[Path], dict | None]:
    """The shards a reader of ``path`` reads and the folder's manifest (None: a file, or an
    older folder without one).  A folder that does not match its manifest is refused."""
    path = Path(path)
    if not path.is_dir():
        if not path.exists():
            raise InputError(path, "shard not found")
        return [path], None
    manifest = read_manifest(path)
    if manifest is not None:
        problems = manifest_problems(path, manifest, pattern)
        if problems:
            raise InputError(*problems[0])
    paths = sorted(path.glob(pattern))
    if not paths:
        raise InputError(path, f"no shards matching {pattern}")
    return paths, manifest


def shard_paths(path, pattern: str) -> list[Path]:
    """A shard file, or the sorted shards matching ``pattern`` in a folder (checked against
    the folder's ``manifest.json`` when it has one: every listed shard there, no other one)."""
    return _listed_shards(path, pattern)[0]


_SUMS = {"labels": "checksums", "ucm": "crc32"}  # the recorded checksums of each shard format (format 2+)


class _ShardSet:
    """Lazily opened HDF5 files, reopened after a fork (h5py handles are per process)."""

    def __init__(self, paths, fmt, manifest: dict | None = None):
        self.paths = [Path(p) for p in paths]
        self.fmt = fmt
        self.manifest = manifest
        self._files = {}
        self._pid = os.getpid()
        self._cache = {}

    def file(self, k: int) -> h5py.File:
        if self._pid != os.getpid():
            self._files, self._cache, self._pid = {}, {}, os.getpid()
        f = self._files.get(k)
        if f is None:
            f = self._files[k] = _open(self.paths[k], self.fmt)
        return f

    def dataset(self, k: int, name: str):
        key = (k, name)
        ds = self._cache.get(key)
        if ds is None:
            try:
                ds = self._cache[key] = self.file(k)[name]
            except KeyError:
                raise InputError(self.paths[k], f"missing dataset {name}") from None
        return ds

    def sums(self, k: int):
        """Shard k's recorded checksums (format 2+), None for a format 1 shard."""
        f = self.file(k)
        key = (k, "#sums")
        if key not in self._cache:
            sums = None
            if int(f.attrs["format_version"]) >= 2:
                name = _SUMS[self.fmt]
                try:
                    sums = self.dataset(k, name)[:]
                except OSError as e:
                    raise InputError(self.paths[k], f"corrupt data in {name} ({e})") from None
            self._cache[key] = sums
        return self._cache[key]

    def check(self, k: int, row: int, field: str | None, what: str, computed: int) -> None:
        """Raise if ``computed`` is not the CRC-32 recorded for row ``row`` (``field`` of it)."""
        sums = self.sums(k)
        if sums is None:
            return
        stored = int(sums[row][field] if field else sums[row])
        if computed != stored:
            raise InputError(self.paths[k], f"{what}: checksum mismatch (stored {stored:08x}, computed "
                                            f"{computed:08x}): the shard is damaged; rerun the {self.fmt} stage")

    def read_map(self, k: int, name: str):
        """One (H, W) map, or None if absent.  The low-level open reads the single
        chunk straight into a fresh array and keeps no decoded chunk cached, so
        memory stays flat however many maps are read (and it is faster)."""
        f = self.file(k)
        try:
            ds = h5py.h5d.open(f.id, name.encode())
        except KeyError:
            return None
        out = np.empty(ds.shape, ds.dtype)
        try:
            ds.read(h5py.h5s.ALL, h5py.h5s.ALL, out)
        except OSError as e:  # a damaged chunk: name the file and the map (`mixseg verify` lists them all)
            raise InputError(self.paths[k], f"corrupt data in {name} ({e})") from None
        return out

    def close(self):
        for f in self._files.values():
            f.close()
        self._files, self._cache = {}, {}

    def __getstate__(self):  # picklable for DataLoader workers: reopen on the other side
        return {"paths": self.paths, "fmt": self.fmt, "manifest": self.manifest}

    def __setstate__(self, state):
        self.__init__(state["paths"], state["fmt"], state.get("manifest"))


def _read_ids(shards: _ShardSet) -> dict[str, tuple[int, int]]:
    where, counts = {}, {}
    for k, p in enumerate(shards.paths):
        try:
            ids = decode_ids(shards.file(k)["ids"][:])
        except KeyError:
            raise InputError(p, "missing dataset ids") from None
        counts[p.name] = len(ids)
        for row, i in enumerate(ids):
            if i in where:
                raise InputError(p, f"image id {i} also in {shards.paths[where[i][0]]}")
            where[i] = (k, row)
    if shards.manifest is not None:  # the files were checked when listed: only the counts are left
        listed = {e["name"]: e["images"] for e in shards.manifest["files"]}
        for p in shards.paths:
            if counts[p.name] != listed[p.name]:
                problems = manifest_problems(p.parent, shards.manifest, p.name, counts=counts)
                raise InputError(*problems[0])
    return where


class ShardReader:
    """Read label shards: a shard file or a folder of them (``split`` picks
    ``labels-<split>-*.h5``).  A folder with a ``manifest.json`` must match it.

    With ``checksums`` (the default) every image and map read is checked against the
    CRC-32 recorded at write time (format 2+): a damaged one raises :class:`InputError`
    naming the shard and the id (format 1 shards have none and are read unchecked).

    >>> r = ShardReader("data/labels", split="train")
    >>> r.ids[:2], r.kind(r.ids[0]), r.label(r.ids[0]).shape
    """

    def __init__(self, path, split: str | None = None, checksums: bool = True):
        pattern = f"labels-{split}-*.h5" if split else "labels-*.h5"
        paths, manifest = _listed_shards(path, pattern)
        self._shards = _ShardSet(paths, "labels", manifest)
        self.checksums = bool(checksums)
        f0 = self._shards.file(0)
        self.classes: list[str] = json.loads(f0.attrs["classes"])
        self.num_classes = int(f0.attrs["num_classes"])
        # the bitset type label() and truth() return (None beyond 64 classes: they return LabelMaps)
        self.bitset_dtype = bitset_dtype(self.num_classes) if self.num_classes <= 64 else None
        self.params = json.loads(f0.attrs["params"])
        # False: class 0 is a placeholder no pixel has (absent in shards written before it existed: True)
        self.background = bool(f0.attrs.get("background", 1))
        self._version = []
        for k in range(len(self._shards.paths)):
            f = self._shards.file(k)
            if k and json.loads(f.attrs["classes"]) != self.classes:
                raise InputError(self._shards.paths[k], "class list differs from the other shards")
            self._version.append(int(f.attrs["format_version"]))
        self.format_versions = sorted(set(self._version))
        self._where = _read_ids(self._shards)
        self.ids = sorted(self._where)
        self._kind = {}
        for k in range(len(self._shards.paths)):
            ids = decode_ids(self._shards.dataset(k, "ids")[:])
            kinds = self._shards.dataset(k, "kind")[:]
            for i, c in zip(ids, kinds):
                self._kind[i] = KINDS[c]

    def __len__(self):
        return len(self.ids)

    def _loc(self, image_id):
        try:
            return self._where[image_id]
        except KeyError:
            raise KeyError(f"image id {image_id!r} not in these shards") from None

    def kind(self, image_id) -> str:
        """'pixel', 'box' or 'image'."""
        self._loc(image_id)
        return self._kind[image_id]

    def ids_of_kind(self, kind: str) -> list[str]:
        return [i for i in self.ids if self._kind[i] == kind]

    def image_bytes(self, image_id) -> bytes:
        """The encoded image file (JPEG/PNG bytes), checked against its recorded CRC-32."""
        k, row = self._loc(image_id)
        try:
            data = self._shards.dataset(k, "image")[row].tobytes()
        except OSError as e:
            raise InputError(self._shards.paths[k], f"corrupt data in image of {image_id} ({e})") from None
        if self.checksums:
            self._shards.check(k, row, "image", f"image of {image_id}", zlib.crc32(data) & 0xFFFFFFFF)
        return data

    def image(self, image_id, data: bytes | None = None) -> np.ndarray:
        """(H, W, 3) uint8 RGB; ``data``: its :meth:`image_bytes`, when already read (e.g. to
        decode in another thread).  A file that does not decode is named ``shard:id``."""
        k, _ = self._loc(image_id)
        return decode_image(self.image_bytes(image_id) if data is None else data, f"{self._shards.paths[k]}:{image_id}")

    def _set_table(self, k: int):
        """Shard k's (label_sets, label_set_offsets, label_set_first), read once (format 3)."""
        key = (k, "#sets")
        t = self._shards._cache.get(key)
        if t is None:
            try:
                t = tuple(self._shards.dataset(k, n)[:].astype(np.int64)
                          for n in ("label_sets", "label_set_offsets", "label_set_first"))
            except OSError as e:
                raise InputError(self._shards.paths[k], f"corrupt data in the class set table ({e})") from None
            self._shards._cache[key] = t
        return t

    def _label_map(self, group: str, image_id) -> LabelMap | None:
        k, row = self._loc(image_id)
        m = self._shards.read_map(k, f"{group}/{image_id}")
        if m is None:
            return None
        where = f"{group}/{image_id}"
        if self._version[k] < 3:
            if self.checksums:
                self._shards.check(k, row, group, where, map_crc32(m))
            try:
                return encode_bitsets(m, self.num_classes)
            except ValueError as e:
                raise InputError(self._shards.paths[k], f"{where}: {e}") from None
        if m.dtype not in LABEL_DTYPES:
            raise InputError(self._shards.paths[k], f"{where}: dtype {m.dtype}, expected uint8 or uint16")
        lm = LabelMap(m, self.num_classes)
        if group == "label":
            sets, offsets, first = self._set_table(k)
            a, b = int(first[row]), int(first[row + 1])
            off = offsets[a:b + 1]
            lm = LabelMap(m, self.num_classes, sets[off[0]:off[-1]], off - off[0])
            if self.checksums:
                self._shards.check(k, row, group, where, label_crc32(lm))
        elif self.checksums:
            self._shards.check(k, row, group, where, map_crc32(m))
        return lm

    def _bitsets(self, group: str, image_id) -> np.ndarray | LabelMap | None:
        k, row = self._loc(image_id)
        if self._version[k] < 3:   # stored as bitsets: as they are
            m = self._shards.read_map(k, f"{group}/{image_id}")
            if m is not None and self.checksums:
                self._shards.check(k, row, group, f"{group}/{image_id}", map_crc32(m))
            return m
        lm = self._label_map(group, image_id)
        if lm is None or self.num_classes > 64:
            return lm
        return lm.to_bitsets(self.bitset_dtype)

    def label_map(self, image_id) -> LabelMap | None:
        """The training target as a :class:`LabelMap` (any class count, any format; None for
        the image-level kind)."""
        return self._label_map("label", image_id)

    def truth_map(self, image_id) -> LabelMap | None:
        """The true mask as a :class:`LabelMap` (None when the source has none)."""
        return self._label_map("truth", image_id)

    def class_map(self, image_id, void: int = 255) -> np.ndarray | None:
        """The true mask as (H, W) class ids, ``void`` where it has none (None without one)."""
        lm = self.truth_map(image_id)
        return None if lm is None else lm.class_map(void)

    def label(self, image_id) -> np.ndarray | LabelMap | None:
        """(H, W) bitsets of ``bitset_dtype``: the training target (None for image-level kind).
        Beyond 64 classes, where no bitset holds a pixel's classes, the :class:`LabelMap`
        (:meth:`label_map`)."""
        return self._bitsets("label", image_id)

    def truth(self, image_id) -> np.ndarray | LabelMap | None:
        """(H, W) bitsets of the true mask (None when the source has none); beyond 64 classes
        the :class:`LabelMap` (:meth:`truth_map`; ``bitsets_to_class_map`` takes both)."""
        return self._bitsets("truth", image_id)

    def tag_ids(self, image_id) -> np.ndarray:
        """(T,) int64 ascending: the classes present (image-level label)."""
        k, row = self._loc(image_id)
        if self._version[k] < 3:
            return np.flatnonzero(decode_bitsets(self._shards.dataset(k, "tags")[row], self.num_classes))
        off = self._shards.dataset(k, "tag_offsets")[row:row + 2]
        return self._shards.dataset(k, "tag_ids")[off[0]:off[1]].astype(np.int64)

    def tags(self, image_id) -> np.ndarray:
        """(C+1,) bool: classes present (image-level label)."""
        out = np.zeros(self.num_classes, bool)
        ids = self.tag_ids(image_id)
        out[ids[ids < self.num_classes]] = True
        return out

    def boxes(self, image_id) -> np.ndarray:
        """The image's boxes, a structured array of BOX_DTYPE."""
        k, row = self._loc(image_id)
        off = self._shards.dataset(k, "box_offsets")[row:row + 2]
        return self._shards.dataset(k, "boxes")[off[0]:off[1]]

    def close(self):
        self._shards.close()


class UcmReader:
    """Read UCM shards (a file or a folder of ``ucm-*.h5``): ``reader[id]`` -> (2H+1, 2W+1) uint8.

    ``skipped`` maps the ids the ucm stage skipped (``on_error: skip``, listed in
    the folder's ``skipped.json``) to the reason.  A folder with a ``manifest.json`` must
    match it; with ``checksums`` (the default) every UCM read is checked against its
    recorded CRC-32 (format 2+).
    """

    def __init__(self, path, checksums: bool = True):
        paths, manifest = _listed_shards(path, "ucm-*.h5")
        self._shards = _ShardSet(paths, "ucm", manifest)
        self.checksums = bool(checksums)
        self._where = _read_ids(self._shards)
        self.ids = sorted(self._where)
        listed = Path(path) / "skipped.json"
        self.skipped = {}
        if Path(path).is_dir() and listed.is_file():
            self.skipped = {str(s["id"]): f"{s['path']}: {s['reason']}" for s in read_json(listed)}

    def __contains__(self, image_id):
        return image_id in self._where

    def __getitem__(self, image_id) -> np.ndarray:
        k, row = self._where[image_id]
        u = self._shards.read_map(k, f"ucm2/{image_id}")
        if u is None:
            raise InputError(self._shards.paths[k], f"missing ucm2/{image_id}")
        if self.checksums:
            self._shards.check(k, row, None, f"ucm2/{image_id}", map_crc32(u))
        return u

    def close(self):
        self._shards.close()

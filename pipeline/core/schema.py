"""The label and UCM shard schema, declared once.

:mod:`pipeline.core.shards` writes what is declared here, in this order: the attributes,
then the datasets; a map group (one ``<group>/<id>`` map per image) is filled image by
image, together with the map groups declared next to it.  ``mixseg verify``
(:mod:`pipeline.core.verify`) checks every declared attribute's presence (and JSON type)
and every dataset's presence, dtype and shape against the same tables.
``python -m pipeline.core.schema`` prints them, and the ``manifest.json`` each stage writes
into its output folder with the shards (``MANIFEST``).

Shapes are written in ``N`` (images of the shard), ``M`` (boxes of the shard) and ``H``,
``W`` (an image's height and width in pixels); a shape in ``H`` is a map group.  Dtype
``bitset`` is the shard's bitset type (attribute ``bitset_dtype``: the narrowest unsigned
type with ``num_classes`` bits), ``str`` a variable-length UTF-8 string, ``vlen uint8`` a
variable-length byte array, ``label`` a class-id map (below); ``since`` is the first format
version with the item and ``until`` the last (None: still current).  Shapes ``K``, ``S+1`` and
``T`` are the lengths of the shard's flat class-set and tag tables.

Label encoding (format 3, ``LABEL_ENCODING``): every ``label/<id>`` and ``truth/<id>`` map is
(H, W) uint8, or uint16 when the codes below do not fit a uint8 (per map), with C+1 =
``num_classes``:

* ``0..C`` -- the pixel has that one class;
* the type's maximum, 255 (uint8) or 65535 (uint16) -- no class: ignored (VOC void, uncertain
  box regions);
* ``C+1+k`` -- a soft (multi-class) pixel with the image's class set ``k``: the set is row
  ``j = label_set_first[i] + k`` of the shard's set table, class ids
  ``label_sets[label_set_offsets[j]:label_set_offsets[j+1]]`` (two or more, ascending).
  True masks have no sets.

So a uint8 map of a dataset with 255 or fewer classes and no soft pixel is exactly a
VOC-style class map with 255 = void.  Tags are class-id lists: image i's are
``tag_ids[tag_offsets[i]:tag_offsets[i+1]]``.  Format 2 (still read) stored one bitset per
pixel (bit c set <=> class c, 0 = ignored) of type ``bitset_dtype`` and one tag bitset per
image, so at most 64 classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import h5py
import numpy as np

BOX_DTYPE = np.dtype([("x0", "<i4"), ("y0", "<i4"), ("x1", "<i4"), ("y1", "<i4"), ("cls", "<i2"),
                      ("strategy", "u1"), ("fallback", "u1"), ("threshold", "<f4"), ("box_area", "<i4"),
                      ("confident_area", "<i4"), ("uncertain_area", "<i4")])
CHECKSUM_DTYPE = np.dtype([("image", "<u4"), ("label", "<u4"), ("truth", "<u4"), ("meta", "<u4")])
_NAMED = {"BOX_DTYPE": BOX_DTYPE, "CHECKSUM_DTYPE": CHECKSUM_DTYPE, "str": h5py.string_dtype(),
          "vlen uint8": h5py.vlen_dtype(np.uint8)}
JSON_TYPES = {"JSON list": list, "JSON dict": dict}
LABEL_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16))   # the format 3 map types
MAX_CLASSES = 32767   # C + 1, background included: BOX_DTYPE.cls is int16; uint16 codes leave >= 32768 sets
LABEL_ENCODING = """format 3 label encoding (label/<id>, truth/<id>: (H, W) uint8, or uint16 when needed)
  0..C       the pixel's one class (C+1 = attrs/num_classes)
  max value  ignored / void: 255 in a uint8 map, 65535 in a uint16 map
  C+1+k      soft pixel, class set k of the image: row j = label_set_first[i] + k,
             classes label_sets[label_set_offsets[j]:label_set_offsets[j+1]]
  tags       image i: tag_ids[tag_offsets[i]:tag_offsets[i+1]]"""
_DIM_NAMES = {"H": "height", "W": "width"}


@dataclass(frozen=True)
class Attr:
    name: str
    type: str  # "str", "int" or one of JSON_TYPES (stored as a JSON string)
    meaning: str
    since: int = 1
    until: int | None = None

    def in_version(self, version: int) -> bool:
        return self.since <= version and (self.until is None or version <= self.until)


@dataclass(frozen=True)
class Dataset:
    name: str
    shape: tuple  # of "N", "N+1", "M", "H", "W", "2H+1", "2W+1"
    dtype: str  # a numpy dtype name, "bitset", "label", "str", "vlen uint8", "BOX_DTYPE" or "CHECKSUM_DTYPE"
    meaning: str
    since: int = 1
    until: int | None = None

    def in_version(self, version: int) -> bool:
        return self.since <= version and (self.until is None or version <= self.until)

    @property
    def is_map(self) -> bool:
        """A group of one map per image id (``<name>/<id>``), not one dataset."""
        return self.shape[0] in ("H", "2H+1")

    def np_dtype(self, bitset=None) -> np.dtype | None:
        """The numpy dtype (None for ``bitset`` while the bitset type is unknown)."""
        if self.dtype == "bitset":
            return None if bitset is None else np.dtype(bitset)
        if self.dtype == "label":
            return None
        return _NAMED[self.dtype] if self.dtype in _NAMED else np.dtype(self.dtype)

    def dtype_ok(self, dt, bitset=None) -> bool:
        if self.dtype == "str":
            return h5py.check_string_dtype(dt) is not None
        if self.dtype == "vlen uint8":
            return h5py.check_vlen_dtype(dt) == np.dtype(np.uint8)
        if self.dtype == "label":
            return dt in LABEL_DTYPES
        want = self.np_dtype(bitset)
        return want is None or dt == want

    def dtype_text(self, bitset=None) -> str:
        if self.dtype == "label":
            return "uint8 or uint16"
        want = self.np_dtype(bitset) if self.dtype == "bitset" else None
        return self.dtype if want is None else want.name

    def shape_ok(self, shape, n=None, h=None, w=None) -> bool:
        """Does ``shape`` follow the rule, as far as the sizes given (N = ``n``, H = ``h``, W = ``w``) tell?"""
        if len(shape) != len(self.shape):
            return False
        sizes = {"N": n, "N+1": None if n is None else n + 1, "H": h, "W": w,
                 "2H+1": None if h is None else 2 * h + 1, "2W+1": None if w is None else 2 * w + 1}
        for dim, v in zip(self.shape, shape):
            if sizes.get(dim) is not None and v != sizes[dim]:
                return False
            if dim.startswith("2") and (v < 3 or v % 2 == 0):
                return False
        return True

    def shape_text(self, n=None, h=None, w=None) -> str:
        """The expected shape for a message: numbers where the sizes are known."""
        if self.shape == ("H", "W") and h is not None and w is not None:
            return f"({', '.join(_DIM_NAMES[d] for d in self.shape)}) = {(h, w)}"
        if self.shape in (("N",), ("N+1",)) and n is not None:
            return str((n + (self.shape[0] == "N+1"),))
        return "(" + ", ".join(self.shape) + ("," if len(self.shape) == 1 else "") + ")"


@dataclass(frozen=True)
class Shard:
    format: str  # attrs["mixseg_format"]
    file_name: str
    attrs: tuple
    datasets: tuple

    def dataset(self, name: str, version: int | None = None) -> Dataset:
        return next(d for d in self.datasets if d.name == name and (version is None or d.in_version(version)))

    def of_version(self, version: int) -> "Shard":
        """The attributes and datasets of format ``version`` only."""
        return Shard(self.format, self.file_name, tuple(a for a in self.attrs if a.in_version(version)),
                     tuple(d for d in self.datasets if d.in_version(version)))

    @property
    def maps(self) -> tuple:
        return tuple(d for d in self.datasets if d.is_map)


_COMMON_ATTRS = (
    Attr("mixseg_format", "str", '"labels" or "ucm"'),
    Attr("format_version", "int", "this layout's version (pipeline.core.shards.FORMAT_VERSION)"),
    Attr("code_version", "str", "mixseg version that wrote the shard"),
    Attr("checksum", "str", '"crc32": how the checksums are computed', since=2),
    Attr("params", "JSON dict", "the stage's parameters (run-only knobs such as workers left out)"),
)

LABEL_SHARD = Shard("labels", "labels-<split>-NNNNN.h5", _COMMON_ATTRS + (
    Attr("classes", "JSON list", "class names, background first"),
    Attr("num_classes", "int", "C+1"),
    Attr("bitset_dtype", "str", "numpy name of the bitset type", until=2),
    Attr("split", "str", "train or val"),
    Attr("kinds", "JSON list", "names of the kind codes"),
    Attr("strategies", "JSON list", "names of the box strategy codes"),
    Attr("background", "int", "1: class 0 is a real background; 0: a placeholder no pixel has (every pixel has "
                              "a real class: box labels ignore what is not the object, metrics leave class 0 out)",
         since=3),
), (
    Dataset("ids", ("N",), "str", "image ids (UTF-8), sorted"),
    Dataset("kind", ("N",), "uint8", "0 pixel, 1 box, 2 image (attrs kinds)"),
    Dataset("height", ("N",), "int32", "image height in pixels"),
    Dataset("width", ("N",), "int32", "image width in pixels"),
    Dataset("tags", ("N",), "bitset", "classes present (image-level label)", until=2),
    Dataset("tag_ids", ("T",), "uint16", "classes present (image-level label) of all images, ascending per image",
            since=3),
    Dataset("tag_offsets", ("N+1",), "int64", "tags of image i: tag_ids[off[i]:off[i+1]]", since=3),
    Dataset("image", ("N",), "vlen uint8", "the encoded image file (JPEG/PNG bytes)"),
    Dataset("label", ("H", "W"), "bitset", "training target: pixel and box kinds only", until=2),
    Dataset("truth", ("H", "W"), "bitset", "true mask, when the source has one", until=2),
    Dataset("label", ("H", "W"), "label", "training target (pixel and box kinds only): class ids, max = ignored, "
                                          "C+1+k = the image's class set k", since=3),
    Dataset("truth", ("H", "W"), "label", "true mask, when the source has one: class ids, max = void", since=3),
    Dataset("label_sets", ("K",), "uint16", "class ids of every soft-pixel class set of the shard, set after set",
            since=3),
    Dataset("label_set_offsets", ("S+1",), "int64", "set j = label_sets[off[j]:off[j+1]]", since=3),
    Dataset("label_set_first", ("N+1",), "int64", "sets of image i: rows first[i]..first[i+1]-1 (code C+1+k of "
                                                  "its label = row first[i]+k)", since=3),
    Dataset("boxes", ("M",), "BOX_DTYPE", "every box of the shard"),
    Dataset("box_offsets", ("N+1",), "int64", "boxes of image i: boxes[off[i]:off[i+1]]"),
    Dataset("checksums", ("N",), "CHECKSUM_DTYPE", "CRC-32 per image of image, label, truth (0 when absent) and "
                                                   "meta (id, kind, size, tags, boxes)", since=2),
))

UCM_SHARD = Shard("ucm", "ucm-NNNNN.h5", _COMMON_ATTRS, (
    Dataset("ids", ("N",), "str", "image ids (UTF-8), sorted"),
    Dataset("ucm2", ("2H+1", "2W+1"), "uint8", "the UCM (value / 255 = boundary strength)"),
    Dataset("crc32", ("N",), "uint32", "CRC-32 of each ucm2 map", since=2),
))

SHARDS = {s.format: s for s in (LABEL_SHARD, UCM_SHARD)}


@dataclass(frozen=True)
class Field:
    """A key of ``manifest.json``: ``type`` is "int" (>= 0), "str" or "list"."""
    name: str
    type: str
    meaning: str


MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
MANIFEST = (
    Field("manifest", "int", f"this layout's version ({MANIFEST_VERSION})"),
    Field("stage", "str", "the stage that wrote the folder (ucm, labels)"),
    Field("shards", "int", "number of shard files"),
    Field("images", "int", "images in all of them"),
    Field("skipped", "int", "items the stage skipped, as in skipped.json (when the stage has on_error)"),
    Field("files", "list", "every shard of the folder, sorted by name:"),
)
MANIFEST_FILE = (
    Field("name", "str", "file name"),
    Field("images", "int", "images it holds"),
    Field("bytes", "int", "file size"),
    Field("crc32", "str", "CRC-32 of the file's bytes, 8 hex digits"),
)


def _versions(item) -> str:
    if item.until is not None:
        return f" (formats {item.since}-{item.until} only)" if item.since < item.until else \
            f" (format {item.since} only)"
    return f" (format {item.since}+)" if item.since > 1 else ""


def render(shard: Shard) -> str:
    """The shard's attributes and datasets as a plain-text table (items of older formats last)."""
    rows = [(f"attrs/{a.name}", a.type, a.meaning + _versions(a)) for a in shard.attrs if a.until is None]
    rows += [(f"{d.name}/<id>" if d.is_map else d.name, f"{d.shape_text()} {d.dtype}", d.meaning + _versions(d))
             for d in shard.datasets if d.until is None]
    rows += [(f"attrs/{a.name}", a.type, a.meaning + _versions(a)) for a in shard.attrs if a.until is not None]
    rows += [(f"{d.name}/<id>" if d.is_map else d.name, f"{d.shape_text()} {d.dtype}", d.meaning + _versions(d))
             for d in shard.datasets if d.until is not None]
    return _table(f"{shard.format} shard ({shard.file_name})", rows)


def _table(title: str, rows: list[tuple]) -> str:
    wa, wb = (max(len(r[k]) for r in rows) for k in (0, 1))
    return "\n".join([title] + [f"  {a:<{wa}}  {b:<{wb}}  {c}" for a, b, c in rows])


def render_manifest() -> str:
    """The manifest's keys as a plain-text table."""
    rows = [(f.name, f.type, f.meaning) for f in MANIFEST] + [(f"files[]/{f.name}", f.type, f.meaning)
                                                              for f in MANIFEST_FILE]
    return _table(f"stage output manifest ({MANIFEST_NAME}, written with the shards)", rows)


if __name__ == "__main__":
    print("\n\n".join([render(s) for s in SHARDS.values()] + [LABEL_ENCODING, render_manifest()]))

"""``mixseg verify``: integrity check of UCM and label shards.

Checks, for every shard file given (or every ``*.h5`` in a folder given):

* **schema** -- every attribute and dataset declared in :mod:`pipeline.core.schema`
  (for the shard's format version) is present, with its dtype and shape;
* **shapes** -- label and true masks are (height, width) of their image, UCMs are
  (2H+1, 2W+1), ``box_offsets`` is a consistent (N+1,) index into ``boxes``, ids
  are sorted and unique (also across the shards of a folder), every map belongs
  to a listed id and every listed id has the maps its kind needs;
* **class count** -- format 3: every map code is a class (0..C), the ignore value (the
  map type's maximum) or one of the image's class sets (label maps only; true masks have
  none), every class set and tag holds classes 0..C (sets: two or more, ascending), the
  set and tag tables' offsets are consistent; formats 1-2: no label, truth or tag bitset
  has a bit at or above ``num_classes`` and the bitset dtype is the one ``num_classes``
  calls for; box classes are in 1..C;
* **content** -- the CRC-32 checksums recorded at write time (format 2) match the
  stored image bytes, maps and per-image fields, and each stored image decodes to
  its recorded size.  Format 1 shards have no checksums: a note says so;
* **completeness** -- a folder's ``manifest.json`` (written by the stage with its
  shards) lists exactly the ``*.h5`` files there, each with its recorded size, CRC-32
  and image count, and the skip list holds as many items as it records.  A folder
  without one (an older output) gets a note: a deleted shard cannot be detected there.

Every problem is reported, one :class:`Problem` per line naming the file and the
item (``<file>: <item>: <reason>``), not just the first one.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from pipeline.core.errors import InputError
from pipeline.core.fileio import decode_image
from pipeline.core.schema import JSON_TYPES, MANIFEST_NAME, MAX_CLASSES, SHARDS, Dataset, Shard
from pipeline.core.shards import (KINDS, READ_VERSIONS, LabelMap, bitset_dtype, decode_ids, label_crc32,
                                  manifest_problems, map_crc32, meta_crc32, read_manifest)

FORMATS = ("labels", "ucm")
NO_STRATEGY = 255
_READ_ERRORS = (OSError, ValueError, KeyError, TypeError, RuntimeError)


@dataclass(frozen=True)
class Problem:
    path: str
    item: str  # "" for the file as a whole, else a dataset, attribute or image id
    reason: str

    def __str__(self):
        return f"{self.path}: {self.item}: {self.reason}" if self.item else f"{self.path}: {self.reason}"


@dataclass
class Report:
    problems: list[Problem] = field(default_factory=list)
    notes: list[Problem] = field(default_factory=list)
    shards: int = 0
    images: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def extend(self, other: "Report") -> None:
        self.problems += other.problems
        self.notes += other.notes
        self.shards += other.shards
        self.images += other.images


class _Checker:
    """Collects the problems of one file."""

    def __init__(self, path):
        self.path = str(path)
        self.report = Report()

    def bad(self, item, reason):
        self.report.problems.append(Problem(self.path, str(item), reason))

    def note(self, reason):
        self.report.notes.append(Problem(self.path, "", reason))

    def attr(self, f, name):
        if name not in f.attrs:
            self.bad(f"attrs/{name}", "missing attribute")
            return None
        v = f.attrs[name]
        return v.decode() if isinstance(v, bytes) else v

    def json_attr(self, f, name, kind=None):
        v = self.attr(f, name)
        if v is None:
            return None
        try:
            out = json.loads(v)
        except (TypeError, ValueError) as e:
            self.bad(f"attrs/{name}", f"not valid JSON ({e})")
            return None
        if kind is not None and not isinstance(out, kind):
            self.bad(f"attrs/{name}", f"expected a JSON {kind.__name__}, got {type(out).__name__}")
            return None
        return out

    def dataset(self, f, ds: Dataset, n=None, bitset=None, read=True):
        """A declared per-shard dataset, checked for presence, dtype and shape (``n`` images,
        ``bitset`` the bitset dtype, when known): its values, or with ``read=False`` the
        h5py dataset; None when unusable."""
        name = ds.name
        obj = f.get(name) if name in f else None
        if obj is None:
            self.bad(name, "missing dataset")
            return None
        if not self.is_dataset(obj, name) or not self.matches(name, obj, ds, bitset, n=n):
            return None
        return self.read(obj, name, "unreadable") if read else obj

    def is_dataset(self, obj, where) -> bool:
        if not isinstance(obj, h5py.Dataset):
            self.bad(where, "is a group, expected a dataset")
            return False
        return True

    def read(self, obj, where, reason):
        try:
            return obj[()]
        except _READ_ERRORS as e:
            self.bad(where, f"{reason} ({e})")
            return None

    def matches(self, where, arr, ds: Dataset, bitset=None, **sizes) -> bool:
        """Does ``arr`` (a dataset or a map) have the dtype and the shape ``ds`` declares? Each mismatch is reported."""
        ok = True
        if not ds.shape_ok(arr.shape, **sizes):
            self.bad(where, f"shape {arr.shape}, expected {ds.shape_text(**sizes)}")
            ok = False
        if not ds.dtype_ok(arr.dtype, bitset):
            self.bad(where, f"dtype {arr.dtype}, expected {ds.dtype_text(bitset)}")
            ok = False
        return ok

    def group(self, f, name):
        if name not in f:
            self.bad(name, "missing group")
            return None
        g = f[name]
        if not isinstance(g, h5py.Group):
            self.bad(name, "is a dataset, expected a group")
            return None
        return g

    def ids(self, f, shard: Shard):
        ids = self.dataset(f, shard.dataset("ids"))
        if ids is None:
            return None
        ids = decode_ids(ids)
        seen = set()
        for i in ids:
            if i in seen:
                self.bad(i, "duplicate id")
            seen.add(i)
        for a, b in zip(ids, ids[1:]):
            if b < a:
                self.bad("ids", f"not sorted ({a!r} before {b!r})")
                break
        return ids

    def read_map(self, g, image_id, where):
        try:
            obj = g[image_id]
        except _READ_ERRORS as e:
            self.bad(where, f"unreadable ({e})")
            return None
        return self.read(obj, where, "unreadable, corrupt data") if self.is_dataset(obj, where) else None

    def members(self, g, ids, where):
        for name in sorted(set(g) - set(ids)):
            self.bad(f"{where}/{name}", "not in ids")


def _high_bits(num_classes: int) -> np.uint64:
    return ~np.uint64((1 << num_classes) - 1) if num_classes < 64 else np.uint64(0)


def _bits_beyond(arr, num_classes) -> int:
    """How many entries of a bitset array have a bit >= num_classes."""
    if num_classes is None or arr is None or not np.asarray(arr).size:
        return 0
    high = _high_bits(num_classes)
    return int(np.count_nonzero(np.asarray(arr).astype(np.uint64) & high)) if high else 0


def _crc_note(c: _Checker, version: int) -> None:
    """Format 1 shards have no checksums (a format 2 shard without them is a missing-dataset problem)."""
    if version < 2:
        c.note(f"no checksums recorded (format {version} shard): content not verified")


def _attrs(c: _Checker, f, shard: Shard, version: int) -> dict:
    """Every attribute ``shard`` declares for this format version: present, the JSON ones
    valid and of their type.  Returns {name: value, None when unusable}."""
    return {a.name: c.json_attr(f, a.name, JSON_TYPES[a.type]) if a.type in JSON_TYPES else c.attr(f, a.name)
            for a in shard.attrs if a.in_version(version)}


def _datasets(c: _Checker, f, shard: Shard, version: int, n: int, bitset=None) -> dict:
    """Every dataset but the ids that ``shard`` declares for this format version, checked
    against the schema (``n`` images, ``bitset`` the bitset dtype when known).  Returns
    {name: values, map group, or None when unusable}; the image bytes: the h5py dataset,
    read image by image."""
    out = {ds.name: c.group(f, ds.name) if ds.is_map else c.dataset(f, ds, n, bitset, read=ds.dtype != "vlen uint8")
           for ds in shard.datasets if ds.name != "ids" and ds.in_version(version)}
    _crc_note(c, version)
    return out


def _label_attrs(c: _Checker, attrs: dict, version: int) -> tuple:
    """The label shard's class count, bitset dtype (formats 1-2) and kind list are consistent;
    returns (num_classes, bitset dtype), each None when unusable (the dtype always in format 3)."""
    classes, num_classes, dt = attrs["classes"], attrs["num_classes"], None
    top = 64 if version < 3 else MAX_CLASSES
    if num_classes is not None:
        num_classes = int(num_classes)
        if not 2 <= num_classes <= top:
            c.bad("attrs/num_classes", f"{num_classes} is outside 2..{top}")
            num_classes = None
        elif classes is not None and len(classes) != num_classes:
            c.bad("attrs/num_classes", f"{num_classes} but attrs/classes lists {len(classes)} names")
    if num_classes is not None and version < 3:
        dt = bitset_dtype(num_classes)
        stored = attrs["bitset_dtype"]
        if stored is not None and stored != dt.name:
            c.bad("attrs/bitset_dtype", f"{stored}, but {num_classes} classes need {dt.name}")
    split = attrs["split"]
    if split is not None and split not in ("train", "val"):
        c.bad("attrs/split", f"{split!r}, expected 'train' or 'val'")
    name = Path(c.path).name
    if split in ("train", "val") and name.startswith("labels-") and not name.startswith(f"labels-{split}-"):
        c.bad("attrs/split", f"{split!r} does not match the file name")
    if attrs["kinds"] is not None and attrs["kinds"] != list(KINDS):
        c.bad("attrs/kinds", f"{attrs['kinds']}, expected {list(KINDS)}")
    return num_classes, dt


def _offsets_ok(c: _Checker, name: str, offsets, total: int, what: str) -> bool:
    """``offsets`` rise from 0 to ``total`` (the length of ``what``); a problem otherwise."""
    if offsets is None:
        return False
    if offsets[0] != 0 or offsets[-1] != total or np.any(np.diff(offsets) < 0):
        c.bad(name, f"inconsistent: must rise from 0 to {total} (len({what})), got {offsets[0]}..{offsets[-1]}"
                    + (", decreasing" if np.any(np.diff(offsets) < 0) else ""))
        return False
    return True


def _class_tables(c: _Checker, values: dict, num_classes):
    """Format 3's tag and class-set tables: consistent offsets, classes in 0..C, sets of two
    or more ascending classes.  Returns (tag ids, tag offsets, sets, set offsets, first), None each
    when unusable."""
    tag_ids, tag_off = values["tag_ids"], values["tag_offsets"]
    sets, set_off, first = values["label_sets"], values["label_set_offsets"], values["label_set_first"]
    if tag_ids is None or not _offsets_ok(c, "tag_offsets", tag_off, len(tag_ids), "tag_ids"):
        tag_ids = tag_off = None
    if sets is None or not _offsets_ok(c, "label_set_offsets", set_off, len(sets), "label_sets"):
        sets = set_off = None
    if set_off is None or not _offsets_ok(c, "label_set_first", first, len(set_off) - 1, "label_set_offsets) - 1"):
        first = None
    if num_classes is not None:
        for name, arr in (("tag_ids", tag_ids), ("label_sets", sets)):
            if arr is not None and len(arr) and int(arr.max()) >= num_classes:
                c.bad(name, f"{int(np.count_nonzero(arr >= num_classes))} class ids at or above num_classes "
                            f"({num_classes})")
    if sets is not None:
        lens = np.diff(set_off)
        if np.any(lens < 2):
            c.bad("label_set_offsets", f"{int(np.count_nonzero(lens < 2))} class sets with fewer than two classes")
        step = np.diff(sets.astype(np.int64))
        inner = np.ones(len(step), bool)
        inner[(set_off[1:-1] - 1)[(set_off[1:-1] > 0) & (set_off[1:-1] <= len(step))]] = False  # set boundaries
        if np.any((step <= 0) & inner):
            c.bad("label_sets", "a class set is not ascending and unique")
    return tag_ids, tag_off, sets, set_off, first


def _check_codes(c: _Checker, where: str, m, num_classes: int, lm_sets: int | None) -> None:
    """A format 3 map's codes: classes, the ignore value, or (label maps) one of the image's
    ``lm_sets`` class sets (None: a true mask, which has none); problems reported."""
    ignore = np.iinfo(m.dtype).max
    top = num_classes + (lm_sets or 0)
    if top > ignore:
        c.bad(where, f"{num_classes} classes and {lm_sets} class sets do not fit a {m.dtype} map")
        return
    nb = int(np.count_nonzero((m >= top) & (m != ignore))) if m.size else 0
    if nb:
        c.bad(where, f"{nb} pixels have a code at or above {top} that is not the ignore value {ignore} "
                     + ("(a true mask has no class sets)" if lm_sets is None else f"({lm_sets} class sets)"))


def _verify_labels(c: _Checker, f, version: int, decode: bool) -> list[str] | None:
    shard = SHARDS["labels"].of_version(version)
    attrs = _attrs(c, f, shard, version)
    num_classes, dt = _label_attrs(c, attrs, version)
    ids = c.ids(f, shard)
    if ids is None:
        return None
    n = len(ids)
    values = _datasets(c, f, shard, version, n, dt)
    kind, height, width, tags, image_ds, boxes, offsets = (
        values.get(k) for k in ("kind", "height", "width", "tags", "image", "boxes", "box_offsets"))
    tag_ids = tag_off = sets = set_off = first = None
    if version >= 3:
        tag_ids, tag_off, sets, set_off, first = _class_tables(c, values, num_classes)
    sums = values.get("checksums")
    if offsets is not None and boxes is not None:
        if offsets[0] != 0 or offsets[-1] != len(boxes) or np.any(np.diff(offsets) < 0):
            c.bad("box_offsets", f"inconsistent: must rise from 0 to {len(boxes)} (len(boxes)), got "
                                 f"{offsets[0]}..{offsets[-1]}" + (", decreasing" if np.any(np.diff(offsets) < 0)
                                                                  else ""))
            offsets = None
    for ds in shard.maps:
        if values[ds.name] is not None:
            c.members(values[ds.name], ids, ds.name)

    strategies = attrs["strategies"]
    n_strat = len(strategies) if strategies is not None else None
    for k, i in enumerate(ids):
        kd = int(kind[k]) if kind is not None else None
        if kd is not None and kd >= len(KINDS):
            c.bad(i, f"kind code {kd}, expected 0..{len(KINDS) - 1}")
            kd = None
        h = int(height[k]) if height is not None else None
        w = int(width[k]) if width is not None else None
        if h is not None and w is not None and (h <= 0 or w <= 0):
            c.bad(i, f"size {w}x{h} is not positive")
            h = w = None
        if tags is not None and _bits_beyond(tags[k:k + 1], num_classes):
            c.bad(i, f"tags {int(tags[k]):#x} have a bit at or above num_classes ({num_classes})")
        my_tags = tags[k] if tags is not None else None
        if version >= 3:
            my_tags = None
            if tag_off is not None:
                my_tags = tag_ids[tag_off[k]:tag_off[k + 1]].astype(np.int64)
                if np.any(np.diff(my_tags) <= 0):
                    c.bad(i, "tags are not ascending and unique")
        my_sets = None
        if version >= 3 and first is not None:
            a, b = int(first[k]), int(first[k + 1])
            off = set_off[a:b + 1]
            my_sets = (sets[off[0]:off[-1]], off - off[0])
        # image bytes
        data = None
        if image_ds is not None:
            try:
                data = image_ds[k].tobytes()
            except _READ_ERRORS as e:
                c.bad(i, f"image bytes unreadable ({e})")
        if data is not None:
            if sums is not None and zlib.crc32(data) & 0xFFFFFFFF != int(sums[k]["image"]):
                c.bad(i, f"image checksum mismatch (stored {int(sums[k]['image']):08x}, "
                         f"computed {zlib.crc32(data) & 0xFFFFFFFF:08x})")
            elif decode:
                try:
                    im = decode_image(data, i)
                    if h is not None and im.shape[:2] != (h, w):
                        c.bad(i, f"image decodes to {im.shape[1]}x{im.shape[0]}, recorded {w}x{h}")
                except InputError as e:
                    c.bad(i, f"stored image {e.reason}")
        # maps
        for ds in shard.maps:
            g, gname = values[ds.name], ds.name
            if g is None:
                continue
            present = i in g
            where = f"{gname}/{i}"
            if gname == "label" and kd is not None:
                needs = KINDS[kd] in ("pixel", "box")
                if needs and not present:
                    c.bad(where, f"missing: a {KINDS[kd]}-kind image needs a label map")
                elif present and not needs:
                    c.bad(where, f"an {KINDS[kd]}-kind image must not have a label map")
            if not present:
                if sums is not None and int(sums[k][gname]) != 0:
                    c.bad(where, "missing, but a checksum was recorded for it")
                continue
            m = c.read_map(g, i, where)
            if m is None:
                continue
            c.matches(where, m, ds, dt, h=h, w=w)
            if version >= 3:
                if num_classes is None or m.dtype.kind != "u" or m.dtype.itemsize > 2:
                    continue
                if gname == "label" and my_sets is None:   # the set table is unusable (reported)
                    continue
                _check_codes(c, where, m, num_classes, len(my_sets[1]) - 1 if gname == "label" else None)
                if sums is not None:
                    crc = (label_crc32(LabelMap(m, num_classes, *my_sets)) if gname == "label" else map_crc32(m))
                    if crc != int(sums[k][gname]):
                        c.bad(where, f"checksum mismatch (stored {int(sums[k][gname]):08x}, computed {crc:08x})")
                continue
            if num_classes is not None and np.issubdtype(m.dtype, np.unsignedinteger):
                nb = _bits_beyond(m, num_classes)
                if nb:
                    c.bad(where, f"{nb} pixels have a bit at or above num_classes ({num_classes})")
                if gname == "truth":
                    b = m.astype(np.uint64)
                    soft = int(np.count_nonzero(b & (b - np.uint64(1))))
                    if soft:
                        c.bad(where, f"{soft} pixels of a true mask have several classes")
            if sums is not None and map_crc32(m) != int(sums[k][gname]):
                c.bad(where, f"checksum mismatch (stored {int(sums[k][gname]):08x}, computed {map_crc32(m):08x})")
        # boxes
        if offsets is not None and boxes is not None:
            b = boxes[offsets[k]:offsets[k + 1]]
            for j, r in enumerate(b):
                x0, y0, x1, y1, cls = (int(r[n_]) for n_ in ("x0", "y0", "x1", "y1", "cls"))
                tag = f"{i} box {j} {[x0, y0, x1, y1]}"
                if x1 <= x0 or y1 <= y0:
                    c.bad(tag, "zero-area or inverted box")
                elif h is not None and (x0 < 0 or y0 < 0 or x1 > w or y1 > h):
                    c.bad(tag, f"outside the {w}x{h} image")
                if num_classes is not None and not 1 <= cls < num_classes:
                    c.bad(tag, f"class index {cls}, expected 1..{num_classes - 1}")
                s = int(r["strategy"])
                if s != NO_STRATEGY and n_strat is not None and s >= n_strat:
                    c.bad(tag, f"strategy code {s}, attrs/strategies has {n_strat}")
                if int(r["box_area"]) != (x1 - x0) * (y1 - y0):
                    c.bad(tag, f"box_area {int(r['box_area'])} != {(x1 - x0) * (y1 - y0)}")
                if int(r["confident_area"]) + int(r["uncertain_area"]) > int(r["box_area"]):
                    c.bad(tag, "confident + uncertain area exceeds the box area")
            if sums is not None and kd is not None and h is not None and my_tags is not None:
                crc = meta_crc32(i, kd, h, w, my_tags, b)
                if crc != int(sums[k]["meta"]):
                    c.bad(i, f"checksum mismatch of id/kind/size/tags/boxes (stored {int(sums[k]['meta']):08x}, "
                             f"computed {crc:08x})")
    c.report.images += n
    return ids


def _verify_ucm(c: _Checker, f, version: int) -> list[str] | None:
    shard = SHARDS["ucm"]
    _attrs(c, f, shard, version)
    ids = c.ids(f, shard)
    if ids is None:
        return None
    n = len(ids)
    values = _datasets(c, f, shard, version, n)
    g, crcs = values["ucm2"], values.get("crc32")
    if g is None:
        return ids
    c.members(g, ids, "ucm2")
    for k, i in enumerate(ids):
        where = f"ucm2/{i}"
        if i not in g:
            c.bad(where, "missing UCM of a listed id")
            continue
        u = c.read_map(g, i, where)
        if u is None:
            continue
        c.matches(where, u, shard.dataset("ucm2"))
        if crcs is not None and map_crc32(u) != int(crcs[k]):
            c.bad(where, f"checksum mismatch (stored {int(crcs[k]):08x}, computed {map_crc32(u):08x})")
    c.report.images += n
    return ids


def verify_shard(path, decode_images: bool = True) -> tuple[Report, str | None, list[str] | None, list | None]:
    """Check one shard file.  Returns (report, format or None, ids or None when unreadable, classes or None)."""
    c = _Checker(path)
    try:
        f = h5py.File(path, "r")
    except FileNotFoundError:
        c.bad("", "shard not found")
        return c.report, None, None, None
    except OSError as e:
        c.bad("", f"corrupt or truncated shard ({e})")
        return c.report, None, None, None
    with f:
        c.report.shards = 1
        try:
            fmt = f.attrs.get("mixseg_format")
        except _READ_ERRORS as e:
            c.bad("attrs", f"unreadable ({e})")
            return c.report, None, None, None
        fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
        if fmt not in FORMATS:
            c.bad("attrs/mixseg_format", f"not a mixseg shard (mixseg_format={fmt!r})")
            return c.report, None, None, None
        version = f.attrs.get("format_version")
        try:
            version = int(version)
        except (TypeError, ValueError):
            c.bad("attrs/format_version", f"missing or not an integer ({version!r})")
            return c.report, fmt, None, None
        if version not in READ_VERSIONS:
            c.bad("attrs/format_version", f"{version}, this mixseg reads {', '.join(map(str, READ_VERSIONS))}")
            return c.report, fmt, None, None
        try:
            if fmt == "labels":
                ids = _verify_labels(c, f, version, decode_images)
                try:
                    classes = json.loads(f.attrs["classes"])
                except (KeyError, TypeError, ValueError):
                    classes = None
            else:
                ids = _verify_ucm(c, f, version)
                classes = None
        except _READ_ERRORS as e:  # corruption in HDF5 metadata met half way through
            c.bad("", f"corrupt shard, checking stopped ({type(e).__name__}: {e})")
            ids, classes = None, None
    return c.report, fmt, ids, classes


def _is_temp(name: str) -> bool:
    return name.startswith(".") and (".tmp-" in name or ".old-" in name)


def _verify_skipped(path: Path, report: Report) -> int | None:
    """Check a stage's skip list; returns how many items it lists (None when unusable)."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        report.problems.append(Problem(str(path), "", f"unreadable skip list ({e})"))
        return None
    if not isinstance(doc, list) or not all(isinstance(s, dict) and {"id", "path", "reason"} <= set(s)
                                            for s in doc):
        report.problems.append(Problem(str(path), "", "not a list of {id, path, reason} records"))
        return None
    return len(doc)


def _folder_manifest(folder: Path, has_shards: bool, report: Report) -> dict | None:
    """The folder's manifest (None: none, or unusable, which is a problem); a note when it has none."""
    try:
        manifest = read_manifest(folder)
    except InputError as e:
        report.problems.append(Problem(e.path, "", e.reason))
        return None
    if manifest is None and has_shards:
        report.notes.append(Problem(str(folder), "", f"no {MANIFEST_NAME} (an output of an older mixseg): a deleted "
                                                     "or added shard cannot be detected; rerun the stage to record "
                                                     "one"))
    return manifest


def _check_manifest(folder: Path, manifest: dict, counts: dict, skipped: int | None, report: Report) -> None:
    """Every listed shard present, of its size, CRC-32 and image count; no other ``*.h5``; the skip count."""
    for path, reason in manifest_problems(folder, manifest, "*.h5", counts, crc=True):
        report.problems.append(Problem(str(path), "", reason))
    where = folder / MANIFEST_NAME
    if "skipped" in manifest and skipped is not None and skipped != manifest["skipped"]:
        report.problems.append(Problem(str(folder / "skipped.json"), "", f"lists {skipped} items, {where} records "
                                                                         f"{manifest['skipped']}"))
    elif "skipped" in manifest and not (folder / "skipped.json").exists():
        report.problems.append(Problem(str(folder / "skipped.json"), "", f"missing ({where} records "
                                                                         f"{manifest['skipped']} skipped items)"))


def verify(paths, decode_images: bool = True) -> Report:
    """Check shard files and folders of shards; every problem is in ``report.problems``."""
    report = Report()
    files: list[Path] = []
    folders: list[tuple[Path, dict, int | None]] = []  # (folder, its manifest, items in its skip list)
    for p in map(Path, paths):
        if p.is_dir():
            entries = sorted(p.iterdir())
            skipped = None
            for e in entries:
                if _is_temp(e.name):
                    report.problems.append(Problem(str(e), "", "temporary file of an interrupted write inside "
                                                               "the output folder"))
                elif e.name == "skipped.json":
                    skipped = _verify_skipped(e, report)
            shards = [e for e in entries if e.suffix == ".h5" and e.is_file() and not _is_temp(e.name)]
            manifest = _folder_manifest(p, bool(shards), report)
            if manifest is not None:
                folders.append((p, manifest, skipped))
            elif not shards:
                report.problems.append(Problem(str(p), "", "no shards (*.h5) in this folder"))
            files += shards
        elif p.exists():
            files.append(p)
        else:
            report.problems.append(Problem(str(p), "", "not found"))
    owner: dict[tuple[str, str], Path] = {}
    classes_of: tuple[Path, list] | None = None
    counts: dict[Path, int] = {}  # images of each shard whose ids could be read
    for path in files:
        r, fmt, ids, classes = verify_shard(path, decode_images)
        report.extend(r)
        if ids is not None:
            counts[path] = len(ids)
        for i in dict.fromkeys(ids or ()):
            first = owner.setdefault((fmt, i), path)
            if first != path:
                report.problems.append(Problem(str(path), i, f"id also in {first}"))
        if classes is not None:
            if classes_of is None:
                classes_of = (path, classes)
            elif classes != classes_of[1]:
                report.problems.append(Problem(str(path), "attrs/classes", f"differ from {classes_of[0]}"))
    for folder, manifest, skipped in folders:
        _check_manifest(folder, manifest, {p.name: n for p, n in counts.items() if p.parent == folder}, skipped,
                        report)
    return report

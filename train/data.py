"""The shard-backed training set: variants, joint augmentation, subset batching.

Variants (the paper's Table 2 rows) pick images and the target each trains on:

=========  ==========================================================
``p``      the pixel subset, its pixel labels
``p+i``    + the image subset (image-level tags only)
``p+b``    + the box subset (its soft box labels)
``p+b+i``  all three subsets
``ub``     the images of ``p+b+i``, every one as a pixel image with its
           TRUE mask -- the upper bound with the same images
=========  ==========================================================

A sample is a dict: ``image`` float32 (3, H, W) normalised with the ImageNet
``MEAN``/``STD``, ``bits`` a :class:`train.losses.ClassSetTarget` -- ``labels`` int64 (H, W)
(class id, -1 = ignored -- every pixel of the image kind --, ``-2 - j`` = the soft pixel's
class set j of the sample's ``sets``/``offsets`` table), any class count --, ``kind`` int64
(0 pixel, 1 box, 2 image), ``tags`` float32 (C+1,), ``index`` int.  :func:`collate` stacks
the labels and joins the samples' set tables into the batch's.

Augmentation (``augment=True``) is one geometric map applied to image and label
together: a random scale (image bilinear, label nearest -- the stored codes are never
interpolated, so a soft label stays a set of classes and never a blend), a random
crop to ``crop`` padded where the scaled image is smaller (image 0 = the mean
after normalisation, label ignored), and a horizontal flip.  Its random numbers
come from ``(seed, epoch, index)`` alone, so a sample does not depend on the
worker that made it or on what was drawn before: resuming at an epoch gives the
same samples.  The batch samplers hand the epoch to the workers with every index
(``(epoch, index)`` pairs), so persistent workers follow ``set_epoch`` too, and
``set_epoch(epoch, start=k)`` starts the epoch at its batch k: a run resumed mid-epoch
loads only the batches it uses.

``SubsetBatchSampler`` makes every batch from one subset (the paper: "each
mini-batch from one subset") and spreads each subset's batches evenly over the
epoch; ``MixedBatchSampler`` is ordinary shuffled batching over all items.  Both
give DDP rank ``r`` of ``w`` every ``w``-th batch of the same epoch order, the
order cut to a multiple of ``w`` so that every rank runs the same number of steps.
"""

from __future__ import annotations

import os

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from pipeline.core.config import VARIANTS, TrainConfig
from pipeline.core.shards import KIND_CODE, LabelMap, ShardReader, code_dtype, shard_paths

from .losses import ClassSetTarget

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
_VARIANT_KINDS = {"p": ("pixel",), "p+i": ("pixel", "image"), "p+b": ("pixel", "box"),
                  "p+b+i": ("pixel", "box", "image"), "ub": ("pixel", "box", "image")}
_MEAN = np.array(MEAN, np.float32) * 255
_INV_STD = 1 / (np.array(STD, np.float32) * 255)


def _normalized(image: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """(H, W, 3) uint8 -> (3, H, W) float32 normalised, ``(x - MEAN * 255) / (STD * 255)``
    channel by channel (written into ``out`` when given; one pass per channel, no float
    copy of the whole (H, W, 3) photo)."""
    if out is None:
        out = np.empty((3,) + image.shape[:2], np.float32)
    for c in range(3):
        o = out[c]
        o[...] = image[:, :, c]
        o -= _MEAN[c]
        o *= _INV_STD[c]
    return out


def normalize(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, H, W) float32 normalised with ImageNet MEAN/STD."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
    return torch.from_numpy(_normalized(image))


# ----------------------------------------------------------------------------- variants

def variant_items(reader: ShardReader, variant: str) -> list[tuple[str, int]]:
    """``(id, kind code)`` of the images ``variant`` trains on, in id order.

    Kind codes: 0 pixel, 1 box, 2 image; ``ub`` gives every image kind 0 (trained on
    ``reader.truth``).  A variant that needs an empty subset, or ``ub`` on images
    without a true mask, is a ValueError.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}: expected one of {', '.join(VARIANTS)}")
    kinds = _VARIANT_KINDS[variant]
    by_kind = {k: reader.ids_of_kind(k) for k in kinds}
    if variant == "ub":  # the upper bound uses whatever subsets the split made (e.g. no box subset, Table 4)
        by_kind = {k: ids for k, ids in by_kind.items() if ids} or by_kind
    for k, ids in by_kind.items():
        if not ids:
            raise ValueError(f"variant {variant!r} needs {k}-level images, but the shards have none "
                             f"(subset sizes: " + ", ".join(f"{kk} {len(reader.ids_of_kind(kk))}"
                                                             for kk in ("pixel", "box", "image")) + ")")
    wanted = {i for ids in by_kind.values() for i in ids}
    ids = [i for i in reader.ids if i in wanted]
    if variant == "ub":
        missing = [i for i in ids if reader.truth_map(i) is None]
        if missing:
            raise ValueError(f"variant 'ub' trains on true masks, but {len(missing)} of {len(ids)} images "
                             f"have none (e.g. {', '.join(missing[:3])})")
        return [(i, 0) for i in ids]
    return [(i, KIND_CODE[reader.kind(i)]) for i in ids]


# ----------------------------------------------------------------------------- augmentation

def _axis(n: int, scaled: int, crop: int | None, rng) -> tuple:
    """Along one axis of length ``n`` scaled to ``scaled`` and cropped/padded to ``crop``:
    the first scaled pixel kept and how many (``start``, ``span``), the nearest source index
    of each kept pixel, the output length and where the kept pixels land in it."""
    out = scaled if crop is None else crop
    if scaled >= out:
        start, dest = int(rng.integers(0, scaled - out + 1)), 0
        span = out
    else:
        start, dest = 0, int(rng.integers(0, out - scaled + 1))
        span = scaled
    q = np.arange(start, start + span, dtype=np.float64) + 0.5
    nearest = np.minimum(np.floor(q * (n / scaled)).astype(np.int64), n - 1)  # the source pixel holding q's centre
    return (start, span), nearest, out, dest


def augment_pair(image: np.ndarray, bits: np.ndarray, rng, crop=None, scale=TrainConfig.scale,
                 flip=TrainConfig.flip, fill=0):
    """Jointly scale, crop/pad and flip an (H, W, 3) uint8 photo and its (H, W) label
    (class-id codes or bitsets); the photo comes out normalised.

    Returns ``(image, label)``: (3, h, w) float32 normalised with MEAN/STD and (h, w) of the
    label's dtype.  Image bilinear -- torch's ``align_corners=False`` sampling, source
    ``(q + 0.5) * n / scaled - 0.5`` clamped to the photo, computed by OpenCV on uint8 for
    the kept window only (coordinates to 1/32 px, values rounded to integers) -- label
    nearest (the source pixel holding the output pixel's centre; codes are never blended).
    Padding is 0 in the image (the mean) and ``fill`` (the label's ignore value) in the
    label.  Always draws the same random numbers in the same order (scale, crop y, crop x,
    flip), so a sample depends on ``rng``'s seed alone.
    """
    h, w = bits.shape
    s = float(rng.uniform(scale[0], scale[1])) if scale is not None else 1.0
    sh, sw = max(1, round(h * s)), max(1, round(w * s))
    (y_start, y_span), ny, oh, dy = _axis(h, sh, None if crop is None else crop[0], rng)
    (x_start, x_span), nx, ow, dx = _axis(w, sw, None if crop is None else crop[1], rng)
    do_flip = bool(rng.random() < 0.5) and flip
    ry, rx = h / sh, w / sw
    m = np.array([[rx, 0.0, (x_start + 0.5) * rx - 0.5], [0.0, ry, (y_start + 0.5) * ry - 0.5]])
    window = cv2.warpAffine(np.ascontiguousarray(image), m, (x_span, y_span),
                            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
    lab = np.take(np.take(bits, ny, axis=0), nx, axis=1)
    if do_flip:
        window, lab, dx = window[:, ::-1], lab[:, ::-1], ow - dx - x_span
    if (oh, ow) == (y_span, x_span):
        return _normalized(window), np.ascontiguousarray(lab)
    img = np.zeros((3, oh, ow), np.float32)
    _normalized(window, img[:, dy:dy + y_span, dx:dx + x_span])
    canvas = np.full((oh, ow), fill, bits.dtype)
    canvas[dy:dy + y_span, dx:dx + x_span] = lab
    return img, canvas


_LUTS = {}


def label_target(lm: LabelMap, codes: np.ndarray | None = None) -> ClassSetTarget:
    """A :class:`LabelMap` (or its ``codes`` after augmentation) as one sample's
    :class:`ClassSetTarget`: class ids, -1 ignored, ``-2 - k`` its set k."""
    codes = lm.codes if codes is None else codes
    key = (lm.num_classes, lm.num_sets, codes.dtype.str)
    lut = _LUTS.get(key)
    if lut is None:
        lut = np.full(np.iinfo(codes.dtype).max + 1, -1, np.int64)
        lut[:lm.num_classes] = np.arange(lm.num_classes)
        lut[lm.num_classes:lm.num_classes + lm.num_sets] = -2 - np.arange(lm.num_sets)
        if len(_LUTS) > 64:
            _LUTS.clear()
        _LUTS[key] = lut
    return ClassSetTarget(torch.from_numpy(np.take(lut, codes)), torch.from_numpy(lm.sets.astype(np.int64)),
                          torch.from_numpy(lm.offsets.astype(np.int64)))


# ----------------------------------------------------------------------------- dataset

class ShardDataset(Dataset):
    """The training items of one variant, read from ``labels-<split>-*.h5`` in ``shard_dir``.

    ``ds[i]`` uses the epoch of the last ``set_epoch``; ``ds[(epoch, i)]`` names it (the
    batch samplers pass that form, so worker processes need no epoch of their own).
    ``augment=False`` gives the full image as stored (crop, scale and flip unused).
    ``paths`` are the shard files it reads (what a checkpoint's label digest covers).
    """

    def __init__(self, shard_dir, split: str = "train", variant: str = "p+b+i", crop=None,
                 scale=TrainConfig.scale, flip: bool = TrainConfig.flip, augment: bool = True, seed: int = 0,
                 cache_mb: int = TrainConfig.cache_mb):
        self.shard_dir, self.split, self.variant = shard_dir, split, variant
        if cache_mb < 0:
            raise ValueError(f"cache_mb must be >= 0, got {cache_mb}")
        self.cache_mb = cache_mb
        self._photos, self._photo_bytes = {}, 0
        if crop is not None:
            crop = (int(crop[0]), int(crop[1]))
            if min(crop) < 1:
                raise ValueError(f"crop must be two positive sizes, got {crop}")
        if scale is not None:
            scale = (float(scale[0]), float(scale[1]))
            if not 0 < scale[0] <= scale[1]:
                raise ValueError(f"scale must be (low, high) with 0 < low <= high, got {scale}")
        self.crop, self.scale, self.flip, self.augment = crop, scale, bool(flip), bool(augment)
        if int(seed) < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.seed = int(seed)
        self.epoch = 0
        self._reader, self._pid = None, None
        reader = self.reader
        self.paths = shard_paths(shard_dir, f"labels-{split}-*.h5")   # the files it reads
        self.items = variant_items(reader, variant)
        self.ids = [i for i, _ in self.items]
        self.kinds = [k for _, k in self.items]
        self.classes = list(reader.classes)
        self.num_classes = int(reader.num_classes)
        self.background = reader.background   # False: class 0 a placeholder no pixel has
        self._linked = []   # batch samplers that follow set_epoch (make_loader links them)

    @property
    def reader(self) -> ShardReader:
        """This process's reader, opened on first use (again in each worker process)."""
        if self._reader is None or self._pid != os.getpid():
            self._reader, self._pid = ShardReader(self.shard_dir, split=self.split), os.getpid()
        return self._reader

    def __getstate__(self):
        state = dict(self.__dict__)
        state.update(_reader=None, _pid=None, _linked=[], _photos={}, _photo_bytes=0)
        return state

    def photo(self, image_id) -> np.ndarray:
        """The decoded (H, W, 3) uint8 photo (read-only), kept while the decoded photos fit
        in ``cache_mb`` MiB: decoding a PNG costs several times what the rest of a sample
        does, and every epoch reads every photo again.  The first read checks the stored
        CRC-32; photos beyond the budget are decoded each time.  The kept photos survive a
        fork (DataLoader workers on Linux share them, see :meth:`preload`), not a pickle."""
        image = self._photos.get(image_id)
        if image is None:
            image = self.reader.image(image_id)
            self._keep(image_id, image)
        return image

    def _keep(self, image_id, image: np.ndarray) -> bool:
        """Keep ``image`` (made read-only) if it fits in ``cache_mb``; whether it was kept."""
        if self._photo_bytes + image.nbytes > self.cache_mb * 2 ** 20:
            return False
        image.flags.writeable = False
        self._photos[image_id] = image
        self._photo_bytes += image.nbytes
        return True

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        for s in self._linked:
            s.set_epoch(epoch)

    def __len__(self):
        return len(self.items)

    def subset_sizes(self) -> dict[str, int]:
        return {k: self.kinds.count(c) for k, c in KIND_CODE.items()}

    def preload(self, threads: int = 2) -> int:
        """Decode the variant's photos into the cache, in id order, until ``cache_mb`` is
        full; returns how many are kept.  Call it before the DataLoader starts its workers:
        forked workers then share these pages instead of each decoding and keeping its own
        copy (a spawned worker starts empty and fills its own).  ``threads`` decode at once
        (the decoder releases the GIL)."""
        from concurrent.futures import ThreadPoolExecutor

        todo = [i for i in dict.fromkeys(self.ids) if i not in self._photos]
        r = self.reader
        with ThreadPoolExecutor(max(1, int(threads))) as pool:
            for a in range(0, len(todo), 64):
                chunk = todo[a:a + 64]
                data = [r.image_bytes(i) for i in chunk]   # HDF5 reads (and CRC checks) in this thread
                for image_id, image in zip(chunk, pool.map(r.image, chunk, data)):
                    if not self._keep(image_id, image):
                        return len(self._photos)
        return len(self._photos)

    def raw(self, index: int):
        """(image uint8 (H, W, 3), label :class:`LabelMap` (all ignored for the image kind),
        kind, tags bool)."""
        image_id, kind = self.items[index]
        r = self.reader
        image = self.photo(image_id)
        if self.variant == "ub":
            label = r.truth_map(image_id)
        elif kind == 2:
            dt = code_dtype(r.num_classes)
            label = LabelMap(np.full(image.shape[:2], np.iinfo(dt).max, dt), r.num_classes)
        else:
            label = r.label_map(image_id)
        if label is None:
            raise ValueError(f"{image_id}: no {'truth' if self.variant == 'ub' else 'label'} in the shards")
        if label.shape != image.shape[:2]:
            raise ValueError(f"{image_id}: label {label.shape} and image {image.shape[:2]} differ in size")
        return image, label, kind, r.tags(image_id)

    def __getitem__(self, key):
        if isinstance(key, tuple):
            epoch, index = int(key[0]), int(key[1])
        else:
            epoch, index = self.epoch, int(key)
        if not 0 <= index < len(self.items):
            raise IndexError(f"index {index} out of range for {len(self.items)} items")
        image, label, kind, tags = self.raw(index)
        codes = label.codes
        if self.augment:
            rng = np.random.default_rng([self.seed, epoch, index])
            image, codes = augment_pair(image, codes, rng, crop=self.crop, scale=self.scale, flip=self.flip,
                                        fill=label.ignore)
        else:
            image = _normalized(image)
        return {"image": torch.from_numpy(image),
                "bits": label_target(label, codes),
                "kind": torch.tensor(kind, dtype=torch.int64),
                "tags": torch.from_numpy(tags.astype(np.float32)),
                "index": index}

    def close(self) -> None:
        if self._reader is not None and self._pid == os.getpid():
            self._reader.close()
        self._reader = None


# ----------------------------------------------------------------------------- sampling

class SubsetBatchSampler(Sampler):
    """Batches of item indices, every batch from one kind (subset).

    Each kind's items are shuffled (``shuffle``) and cut into batches (the last one
    short unless ``drop_last``); the kinds' batches are then merged so each kind is
    spread evenly over the epoch (batch j of a kind with n batches sits at (j + u) / n,
    u = 1/2, or uniform random when shuffling), i.e. interleaved in proportion to the
    subsets' sizes.  The order depends on ``(seed, epoch)`` only, the same on every
    rank; rank r of world_size w takes batches r, r + w, ... of it cut to a multiple of
    w, so the ranks get disjoint shares of equal length.  ``set_epoch(epoch, start=k)``
    skips the first k batches of this rank's share without making them (resuming
    mid-epoch); ``len`` counts the batches an iteration yields.  ``with_epoch`` yields
    ``(epoch, index)`` pairs for :class:`ShardDataset` instead of plain indices.
    """

    def __init__(self, kinds, batch_size: int, shuffle: bool = True, seed: int = 0, drop_last: bool = False,
                 rank: int = 0, world_size: int = 1, with_epoch: bool = False):
        self.kinds = np.asarray(kinds, np.int64)
        if self.kinds.ndim != 1 or len(self.kinds) == 0:
            raise ValueError("no items to sample")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} not in a world of {world_size}")
        self.batch_size, self.shuffle, self.seed, self.drop_last = int(batch_size), bool(shuffle), int(seed), \
            bool(drop_last)
        self.rank, self.world_size, self.with_epoch = int(rank), int(world_size), bool(with_epoch)
        self.epoch, self.start = 0, 0
        self._groups = [np.flatnonzero(self.kinds == k) for k in np.unique(self.kinds)]
        per = [len(g) // self.batch_size if self.drop_last else -(-len(g) // self.batch_size)
               for g in self._groups]
        self._per_group = per
        total = sum(per)
        if total < self.world_size:
            raise ValueError(f"{total} batches of {self.batch_size} cannot be shared by {self.world_size} ranks")
        self._total = total - total % self.world_size

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Iterate epoch ``epoch``'s batches from this rank's batch ``start`` on (0 = all)."""
        per_rank = self._total // self.world_size
        if not 0 <= start <= per_rank:
            raise ValueError(f"start must be in 0..{per_rank} (batches of this rank), got {start}")
        self.epoch, self.start = int(epoch), int(start)

    def __len__(self):
        return self._total // self.world_size - self.start

    def epoch_batches(self) -> list[list[int]]:
        """All batches of this epoch in order, before sharing among ranks."""
        rng = np.random.default_rng([self.seed, self.epoch])
        batches, keys, order = [], [], []
        for g, (idx, nb) in enumerate(zip(self._groups, self._per_group)):
            idx = rng.permutation(idx) if self.shuffle else idx
            u = rng.random(nb) if self.shuffle else np.full(nb, 0.5)
            for j in range(nb):
                batches.append(idx[j * self.batch_size:(j + 1) * self.batch_size].tolist())
                keys.append((j + u[j]) / nb)
                order.append(g)
        pos = np.lexsort((np.array(order), np.array(keys)))
        return [batches[p] for p in pos]

    def __iter__(self):
        batches = self.epoch_batches()[:self._total]
        for b in batches[self.rank::self.world_size][self.start:]:
            yield [(self.epoch, i) for i in b] if self.with_epoch else b


class MixedBatchSampler(SubsetBatchSampler):
    """Ordinary shuffled batching over all items, kinds mixed (same options as
    :class:`SubsetBatchSampler`; ``n`` is the number of items)."""

    def __init__(self, n: int, batch_size: int, **kwargs):
        super().__init__(np.zeros(int(n), np.int64), batch_size, **kwargs)


class PixelShareBatchSampler(SubsetBatchSampler):
    """Shuffled batches that each hold a fixed share of pixel-level items.

    Every batch has ``k = round(share * batch_size)`` (at least 1, at most ``batch_size - 1``)
    pixel items (kind 0) and ``batch_size - k`` of the others.  An epoch is one shuffled pass
    over the other items (the last batch short unless ``drop_last``); its pixel items come
    from shuffled passes over the pixel items, as many as the epoch needs, so a pixel image
    recurs when there are fewer of them than the epoch's pixel slots.  With no pixel item or
    no other item (``p``, ``ub``) it is :class:`MixedBatchSampler`.  The order depends on
    ``(seed, epoch)`` only; ranks, ``set_epoch(epoch, start)``, ``with_epoch`` and ``len``
    as in :class:`SubsetBatchSampler`.

    Why: in ordinary mixed batches of ``p+b+i`` at 1:5:10 a pixel image is 1/16 of the
    samples, so the few exact labels are diluted by the many weak ones (README, Results on
    real photos).
    """

    def __init__(self, kinds, batch_size: int, share: float, **kwargs):
        kinds = np.asarray(kinds, np.int64)
        super().__init__(np.zeros(len(kinds), np.int64), batch_size, **kwargs)
        if not 0 <= share < 1:
            raise ValueError(f"share must be in [0, 1), got {share}")
        self._pixel, self._other = np.flatnonzero(kinds == 0), np.flatnonzero(kinds != 0)
        self.k = 0
        if share > 0 and len(self._pixel) and len(self._other) and self.batch_size > 1:
            self.k = min(self.batch_size - 1, max(1, round(share * self.batch_size)))
            per = self.batch_size - self.k
            total = len(self._other) // per if self.drop_last else -(-len(self._other) // per)
            if total < self.world_size:
                raise ValueError(f"{total} batches of {self.batch_size} cannot be shared by {self.world_size} ranks")
            self._total = total - total % self.world_size

    def epoch_batches(self) -> list[list[int]]:
        if self.k == 0:
            return super().epoch_batches()
        rng = np.random.default_rng([self.seed, self.epoch])
        per, n = self.batch_size - self.k, len(self._pixel)
        other = rng.permutation(self._other) if self.shuffle else self._other
        n_batches = len(other) // per if self.drop_last else -(-len(other) // per)
        passes = -(-(n_batches * self.k) // n)
        pixel = np.concatenate([rng.permutation(self._pixel) if self.shuffle else self._pixel for _ in range(passes)])
        return [pixel[j * self.k:(j + 1) * self.k].tolist() + other[j * per:(j + 1) * per].tolist()
                for j in range(n_batches)]


def collate_targets(targets: list) -> ClassSetTarget:
    """Stack per-sample :class:`ClassSetTarget` into the batch's: labels padded bottom/right
    with -1 (ignored), the set tables joined (each sample's set codes shifted past the sets of
    the samples before it)."""
    h = max(t.labels.shape[0] for t in targets)
    w = max(t.labels.shape[1] for t in targets)
    labels = torch.full((len(targets), h, w), -1, dtype=torch.int64)
    sets, offsets, base = [], [torch.zeros(1, dtype=torch.int64)], 0
    for k, t in enumerate(targets):
        lab = t.labels
        n_sets = len(t.offsets) - 1
        if n_sets and base:
            lab = torch.where(lab <= -2, lab - base, lab)
        labels[k, :lab.shape[0], :lab.shape[1]] = lab
        if n_sets:
            sets.append(t.sets)
            offsets.append(t.offsets[1:] + offsets[-1][-1])
            base += n_sets
    return ClassSetTarget(labels, torch.cat(sets) if sets else torch.zeros(0, dtype=torch.int64), torch.cat(offsets))


def collate(batch: list[dict]) -> dict:
    """Stack samples; samples of different sizes are padded bottom/right to the largest
    (image 0 = the mean, label ignored); ``bits`` becomes the batch's :class:`ClassSetTarget`
    (:func:`collate_targets`)."""
    h = max(b["bits"].shape[0] for b in batch)
    w = max(b["bits"].shape[1] for b in batch)
    n = len(batch)
    image = torch.zeros((n, batch[0]["image"].shape[0], h, w), dtype=batch[0]["image"].dtype)
    for k, b in enumerate(batch):
        bh, bw = b["bits"].shape
        image[k, :, :bh, :bw] = b["image"]
    bits = collate_targets([b["bits"] for b in batch])
    return {"image": image, "bits": bits,
            "kind": torch.stack([torch.as_tensor(b["kind"], dtype=torch.int64) for b in batch]),
            "tags": torch.stack([b["tags"] for b in batch]),
            "index": torch.tensor([int(b["index"]) for b in batch], dtype=torch.int64)}


def make_loader(dataset: ShardDataset, batch_size: int, sampling: str = TrainConfig.sampling, seed: int = 0,
                num_workers: int = 0, rank: int = 0, world_size: int = 1, shuffle: bool = True,
                drop_last: bool = False, pixel_share: float = TrainConfig.pixel_share) -> DataLoader:
    """A DataLoader over ``dataset`` with subset (one kind per batch) or mixed batches; mixed
    batches with ``pixel_share`` > 0 hold that share of pixel-level items
    (:class:`PixelShareBatchSampler`).

    ``loader.batch_sampler.set_epoch(e)`` or ``dataset.set_epoch(e)`` (linked) picks the
    epoch's shuffle and augmentation (``loader.batch_sampler.set_epoch(e, start=k)``
    from the epoch's batch k on); workers are persistent and get the epoch with each
    index.  Memory is pinned only when CUDA is available.
    """
    kwargs = dict(shuffle=shuffle, seed=seed, drop_last=drop_last, rank=rank, world_size=world_size,
                  with_epoch=True)
    if pixel_share and sampling != "mixed":
        raise ValueError(f"pixel_share needs mixed batches, not sampling {sampling!r}")
    if sampling == "subset":
        sampler = SubsetBatchSampler(dataset.kinds, batch_size, **kwargs)
    elif pixel_share:
        sampler = PixelShareBatchSampler(dataset.kinds, batch_size, pixel_share, **kwargs)
    elif sampling == "mixed":
        sampler = MixedBatchSampler(len(dataset), batch_size, **kwargs)
    else:
        raise ValueError(f"sampling must be 'subset' or 'mixed', not {sampling!r}")
    sampler.set_epoch(dataset.epoch)
    if hasattr(dataset, "_linked"):
        dataset._linked.append(sampler)
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=num_workers,
                      persistent_workers=num_workers > 0, pin_memory=torch.cuda.is_available())

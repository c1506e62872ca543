"""The training data: variants, joint augmentation, subset batching, loaders."""

import io
import pickle

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from pipeline.core.shards import ShardReader, bitset_dtype, write_label_shard  # noqa: E402
from train.data import (MEAN, STD, VARIANTS, MixedBatchSampler, PixelShareBatchSampler, ShardDataset,  # noqa: E402
                        SubsetBatchSampler,
                        collate, make_loader, normalize, variant_items)
from train.losses import ClassSetTarget, target_bits  # noqa: E402

H, W = 16, 20            # image size of the coordinate shard (not square: catches transposes)
NC = W + H + 1           # one class per column, one per row, + background -> uint64 bitsets


def _png(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _coord_image():
    """R = 12 x, G = 15 y: bilinear interpolation keeps it linear, so the pixel tells its source."""
    y, x = np.mgrid[:H, :W]
    return np.stack([12 * x, 15 * y, np.full_like(x, 77)], -1).astype(np.uint8)


def _coord_bits():
    """bit 1 + x | bit 1 + W + y: every pixel's label names its own column and row (a soft label)."""
    y, x = np.mgrid[:H, :W]
    return ((np.uint64(1) << (1 + x).astype(np.uint64)) | (np.uint64(1) << (1 + W + y).astype(np.uint64)))


def _coord_truth():
    """bit 1 + x: a true mask has one class per pixel, its column's."""
    y, x = np.mgrid[:H, :W]
    return np.uint64(1) << (1 + x).astype(np.uint64)


def _bits(t) -> np.ndarray:
    """A sample's or batch's ClassSetTarget as int64 bitsets (0 = ignored)."""
    return target_bits(t).numpy()


def _eq(a, b) -> bool:
    if isinstance(a, ClassSetTarget):
        return all(torch.equal(x, y) for x, y in zip(a, b))
    return torch.equal(a, b)


def _clone(v):
    return ClassSetTarget(*(t.clone() for t in v)) if isinstance(v, ClassSetTarget) else v.clone()


def _write(folder, kinds, split="train", truth=True, shard_size=4):
    """One record per entry of ``kinds`` (pixel/box/image), ids r00, r01, ...; each image and
    label encodes coordinates (a soft label: column and row class); the truth is the column class."""
    dt = bitset_dtype(NC)
    classes = ["background"] + [f"c{i}" for i in range(NC - 1)]
    image = _png(_coord_image())
    label = _coord_bits().astype(dt)
    records = []
    for n, kind in enumerate(kinds):
        records.append({"id": f"r{n:02d}", "kind": kind, "height": H, "width": W, "tags": [0, 1 + n % (NC - 1)],
                        "image_bytes": image, "label": None if kind == "image" else label,
                        "truth": _coord_truth().astype(dt) if truth else None})
    for s in range(0, len(records), shard_size):
        write_label_shard(folder / f"labels-{split}-{s // shard_size:05d}.h5", records[s:s + shard_size],
                          classes, split)
    return folder


KINDS = ["pixel"] * 3 + ["box"] * 5 + ["image"] * 7


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("labels"), [KINDS[(7 * n) % len(KINDS)] for n in range(len(KINDS))])


def _kind_of(folder):
    r = ShardReader(folder, "train")
    return {i: r.kind(i) for i in r.ids}


def _unnormalize(image):
    """(3, H, W) normalised -> (H, W, 3) float in 0..255."""
    return (image.numpy().transpose(1, 2, 0) * np.array(STD) + np.array(MEAN)) * 255


def _bit_index(v, lo, n):
    """The single bit set in v within bits lo..lo+n-1, as 0..n-1 (asserting exactly one)."""
    v = v.astype(np.uint64)
    field = (v >> np.uint64(lo)) & np.uint64((1 << n) - 1)
    assert np.all(field != 0) and np.all((field & (field - np.uint64(1))) == 0)
    return np.log2(field.astype(np.float64)).round().astype(int)


# ----------------------------------------------------------------------------- variants

def test_variant_membership_and_kinds(shards):
    kind = _kind_of(shards)
    r = ShardReader(shards, "train")
    code = {"pixel": 0, "box": 1, "image": 2}
    want = {"p": {"pixel"}, "p+i": {"pixel", "image"}, "p+b": {"pixel", "box"},
            "p+b+i": {"pixel", "box", "image"}}
    for v, kinds in want.items():
        items = variant_items(r, v)
        assert [i for i, _ in items] == sorted(i for i, k in kind.items() if k in kinds), v
        assert all(k == code[kind[i]] for i, k in items), v
    ub = variant_items(r, "ub")
    assert [i for i, _ in ub] == sorted(kind) and {k for _, k in ub} == {0}
    assert [len(variant_items(r, v)) for v in VARIANTS] == [3, 10, 8, 15, 15]


def test_variant_errors(tmp_path):
    (tmp_path / "a").mkdir()
    r = ShardReader(_write(tmp_path / "a", ["pixel", "box"]), "train")
    assert len(variant_items(r, "p+b")) == 2
    for v in ("p+i", "p+b+i"):
        with pytest.raises(ValueError, match="image-level"):
            variant_items(r, v)
    with pytest.raises(ValueError, match="unknown variant"):
        variant_items(r, "b")
    (tmp_path / "b").mkdir()
    r = ShardReader(_write(tmp_path / "b", ["pixel", "box", "image"], truth=False), "train")
    assert len(variant_items(r, "p+b+i")) == 3
    with pytest.raises(ValueError, match="true mask"):
        variant_items(r, "ub")
    with pytest.raises(ValueError, match="true mask"):
        ShardDataset(tmp_path / "b", variant="ub")


def test_samples_without_augmentation(shards):
    kind = _kind_of(shards)
    ds = ShardDataset(shards, variant="p+b+i", augment=False)
    assert ds.num_classes == NC and ds.classes[0] == "background" and len(ds) == len(KINDS)
    label = _coord_bits().astype(np.int64)
    seen = set()
    for i in range(len(ds)):
        s = ds[i]
        assert s["image"].dtype == torch.float32 and s["image"].shape == (3, H, W)
        np.testing.assert_allclose(s["image"].numpy(), normalize(_coord_image()).numpy())
        np.testing.assert_allclose(_unnormalize(s["image"]), _coord_image(), atol=1e-3)
        assert s["bits"].labels.dtype == torch.int64 and s["kind"].dtype == torch.int64 and s["kind"].shape == ()
        k = int(s["kind"])
        seen.add(k)
        assert k == {"pixel": 0, "box": 1, "image": 2}[kind[ds.ids[i]]] and s["index"] == i
        np.testing.assert_array_equal(_bits(s["bits"]), 0 if k == 2 else label)
        assert s["tags"].dtype == torch.float32 and s["tags"].shape == (NC,)
        n = int(ds.ids[i][1:])
        assert s["tags"].nonzero().flatten().tolist() == [0, 1 + n % (NC - 1)]
    assert seen == {0, 1, 2}


def test_ub_trains_on_the_truth(shards):
    ds = ShardDataset(shards, variant="ub", augment=False)
    truth = _coord_truth().astype(np.int64)
    assert len(ds) == len(KINDS)
    for i in range(len(ds)):
        s = ds[i]
        assert int(s["kind"]) == 0
        np.testing.assert_array_equal(_bits(s["bits"]), truth)


# ----------------------------------------------------------------------------- augmentation

@pytest.mark.parametrize("crop,scale", [((12, 14), (0.5, 2.0)), ((24, 30), (0.6, 1.6)), (None, (0.5, 2.0)),
                                        ((16, 20), (1.0, 1.0))])
def test_augmentation_keeps_image_and_bits_aligned(shards, crop, scale):
    """Every labelled output pixel's image value (the source coordinate, bilinear) and its
    bits (the source pixel, nearest) name the same place within half a pixel."""
    ds = ShardDataset(shards, variant="p+b", crop=crop, scale=scale, seed=3)
    flipped = unflipped = 0
    sizes = set()
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            s = ds[i]
            img, bits = _unnormalize(s["image"]), _bits(s["bits"])
            if crop is not None:
                assert bits.shape == crop and s["image"].shape == (3, *crop)
            sizes.add(bits.shape)
            valid = bits != 0
            assert valid.sum() > 0
            x = _bit_index(bits[valid], 1, W)
            y = _bit_index(bits[valid], 1 + W, H)
            sx, sy = img[..., 0][valid] / 12, img[..., 1][valid] / 15
            # half a pixel, plus the photo's uint8 rounding (0.5 / 12 and 0.5 / 15 of a pixel)
            # and OpenCV's 1/32-pixel sampling grid (1/64 at most)
            assert np.abs(x - sx).max() <= 0.5 + 0.5 / 12 + 1 / 64 + 1e-3
            assert np.abs(y - sy).max() <= 0.5 + 0.5 / 15 + 1 / 64 + 1e-3
            # the padding is empty in both
            assert np.all(s["image"].numpy()[:, ~valid] == 0)
            cols = np.where(valid.any(0))[0]
            if len(cols) > 1:
                left = _bit_index(bits[valid.any(1)][0][cols[[0, -1]]], 1, W)
                flipped += left[0] > left[1]
                unflipped += left[0] < left[1]
    assert flipped > 3 and unflipped > 3       # both happened, and were told apart
    if crop is None:
        assert len(sizes) > 3                  # scales vary the size when nothing crops


def test_bits_are_never_interpolated_and_padding_is_ignored(shards):
    ds = ShardDataset(shards, variant="p+b", crop=(40, 44), scale=(0.3, 1.9), seed=1)
    orig = set(np.unique(_coord_bits().astype(np.int64)).tolist())
    padded = 0
    for i in range(len(ds)):
        bits = _bits(ds[i]["bits"])
        assert set(np.unique(bits).tolist()) <= orig | {0}
        padded += int((bits == 0).sum())
    assert padded > 0   # the crop is larger than every scaled image: there was padding


def test_padding_area_is_exact(shards):
    ds = ShardDataset(shards, variant="p", crop=(20, 30), scale=(0.5, 0.5), flip=False)
    for i in range(len(ds)):
        s = ds[i]
        valid = _bits(s["bits"]) != 0
        assert valid.sum() == (H // 2) * (W // 2)
        ys, xs = np.where(valid)
        assert ys.max() - ys.min() + 1 == H // 2 and xs.max() - xs.min() + 1 == W // 2
        assert np.all(s["image"].numpy()[:, ~valid] == 0)
        assert np.all(s["image"].numpy()[2, valid] != 0)   # blue is 77, never the mean


def test_augmentation_is_deterministic_per_seed_epoch_index(shards):
    a = ShardDataset(shards, variant="p+b+i", crop=(12, 14), seed=5)
    b = ShardDataset(shards, variant="p+b+i", crop=(12, 14), seed=5)
    other = ShardDataset(shards, variant="p+b+i", crop=(12, 14), seed=6)
    a.set_epoch(2)
    b.set_epoch(2)
    other.set_epoch(2)
    diff_epoch = diff_seed = 0
    for i in range(len(a)):
        sa = a[i]
        for key in (i, (2, i)):
            sb = b[key]
            assert torch.equal(sa["image"], sb["image"]) and _eq(sa["bits"], sb["bits"])
        s1 = a[(3, i)]
        diff_epoch += not torch.equal(sa["image"], s1["image"])
        diff_seed += not torch.equal(sa["image"], other[i]["image"])
    assert diff_epoch >= len(a) - 1 and diff_seed >= len(a) - 1
    # a pickled copy (a spawned worker) opens its own reader and gives the same samples
    c = pickle.loads(pickle.dumps(a))
    assert c._reader is None
    assert torch.equal(c[4]["image"], a[4]["image"]) and _eq(c[4]["bits"], a[4]["bits"])


@pytest.mark.parametrize("shape,crop,scale", [((37, 53), (24, 30), (0.6, 1.7)), ((41, 29), (50, 60), (0.5, 1.0)),
                                              ((30, 40), None, (0.8, 1.3))])
def test_augmented_photo_is_torch_bilinear_of_the_kept_window(shape, crop, scale):
    """The photo of a sample is F.interpolate(bilinear, align_corners=False) of the whole
    photo at the drawn size, cropped (or padded with 0) where the label says, flipped with it:
    equal within one uint8 level on a smooth photo (rounding + OpenCV's 1/32 px grid)."""
    import torch.nn.functional as F
    from train.data import augment_pair
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    photo = np.stack([127 + 100 * np.sin(xx / 7.0 + yy / 11.0), 3.0 * xx + 2.0 * yy,
                      127 + 90 * np.cos(yy / 5.0)], -1).round().clip(0, 255).astype(np.uint8)
    codes = (yy * w + xx).astype(np.uint16)         # every source pixel its own code
    for seed in range(12):
        img, lab = augment_pair(photo, codes, np.random.default_rng(seed), crop=crop, scale=scale, flip=True,
                                fill=65535)
        r = np.random.default_rng(seed)            # replay the draws: scale, then the crop/pad offsets
        s = float(r.uniform(*scale))
        sh, sw = max(1, round(h * s)), max(1, round(w * s))
        ref = F.interpolate(torch.from_numpy(photo).permute(2, 0, 1)[None].double(), size=(sh, sw), mode="bilinear",
                            align_corners=False)[0].numpy()
        ref = (ref - np.array(MEAN)[:, None, None] * 255) / (np.array(STD)[:, None, None] * 255)
        valid = lab != 65535
        assert img.dtype == np.float32 and img.shape == (3,) + lab.shape
        assert np.all(img[:, ~valid] == 0)
        ys, xs = np.nonzero(valid)
        src_x = lab[valid] % w                       # the label names each kept pixel's source column
        rows, cols = np.unique(ys), np.unique(xs)
        win = img[:, rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        flipped = cols.size > 1 and src_x[(ys == rows[0]) & (xs == cols[0])][0] > src_x[(ys == rows[0]) & (xs == cols[-1])][0]
        if flipped:
            win = win[:, :, ::-1]
        # the window's place in the scaled photo: the best match (a half-pixel shift costs > 1 level here)
        best = min(((np.abs(ref[:, a:a + win.shape[1], b:b + win.shape[2]] - win).max(), a, b)
                    for a in range(sh - win.shape[1] + 1) for b in range(sw - win.shape[2] + 1)))
        assert best[0] * 255 * max(STD) <= 1.0, (seed, best)


def test_photo_cache_keeps_decoded_photos_within_its_budget(shards):
    ds = ShardDataset(shards, variant="p+b+i", crop=(12, 14), seed=2)
    cold = ShardDataset(shards, variant="p+b+i", crop=(12, 14), seed=2, cache_mb=0)
    first = [ds[i] for i in range(len(ds))]
    assert len(ds._photos) == len(ds) and ds._photo_bytes == len(ds) * H * W * 3
    photo = ds.photo(ds.ids[0])
    assert not photo.flags.writeable and np.array_equal(photo, _coord_image())
    for i in range(len(ds)):   # cached, uncached and a second pass give the same samples
        a, b, c = first[i], cold[i], ds[i]
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["image"], c["image"])
        assert _eq(a["bits"], b["bits"])
    assert cold._photos == {} and cold._photo_bytes == 0
    small = ShardDataset(shards, variant="p+b+i", cache_mb=2.5 * H * W * 3 / 2 ** 20)
    for i in range(len(small)):
        small[i]
    assert len(small._photos) == 2   # the budget holds two photos; the rest are decoded each time
    c = pickle.loads(pickle.dumps(ds))   # a worker process starts with an empty cache
    assert c._photos == {} and c._photo_bytes == 0
    with pytest.raises(ValueError, match="cache_mb"):
        ShardDataset(shards, cache_mb=-1)


def test_preload_names_the_shard_file_of_a_photo_that_does_not_decode(tmp_path):
    from pipeline.core.errors import InputError
    folder = _write(tmp_path, ["pixel", "box"], shard_size=1)
    records = [{"id": "r00", "kind": "pixel", "height": H, "width": W, "tags": [0, 1],
                "image_bytes": b"not a png", "label": _coord_bits().astype(bitset_dtype(NC)),
                "truth": _coord_truth().astype(bitset_dtype(NC))}]
    write_label_shard(folder / "labels-train-00000.h5", records, ["background"] + [f"c{i}" for i in range(NC - 1)],
                      "train")
    ds = ShardDataset(folder, variant="p+b")
    with pytest.raises(InputError) as e:
        ds.preload()
    assert str(e.value).startswith(f"{folder / 'labels-train-00000.h5'}:r00: not an image file")
    assert ds._photos == {}


def test_preload_decodes_once_within_the_budget(shards, monkeypatch):
    ds = ShardDataset(shards, variant="p+b+i", crop=(12, 14), seed=2)
    want = [ds[i] for i in range(len(ds))]
    pre = ShardDataset(shards, variant="p+b+i", crop=(12, 14), seed=2)
    assert pre.preload(threads=3) == len(pre) and pre._photo_bytes == len(pre) * H * W * 3

    def no_decode(image_id):
        raise AssertionError(f"decoded {image_id} again")
    monkeypatch.setattr(pre.reader, "image", no_decode)
    for i in range(len(pre)):   # every sample from the kept photos, as without them
        assert torch.equal(pre[i]["image"], want[i]["image"]) and _eq(pre[i]["bits"], want[i]["bits"])
    assert pre.preload() == len(pre)   # nothing left to do
    part = ShardDataset(shards, variant="p+b+i", cache_mb=3.5 * H * W * 3 / 2 ** 20)
    assert part.preload() == 3 and list(part._photos) == part.ids[:3]


# ----------------------------------------------------------------------------- sampling

SIZES = {0: 5, 1: 11, 2: 23}
SAMPLE_KINDS = [k for k, n in SIZES.items() for _ in range(n)]


def _shuffled_kinds():
    return np.random.default_rng(0).permutation(SAMPLE_KINDS).tolist()


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("shuffle", [False, True])
def test_subset_batches_are_single_kind_and_cover_every_item(drop_last, shuffle):
    kinds = _shuffled_kinds()
    s = SubsetBatchSampler(kinds, 4, shuffle=shuffle, seed=0, drop_last=drop_last)
    want_len = sum(n // 4 if drop_last else -(-n // 4) for n in SIZES.values())
    assert len(s) == want_len
    for epoch in range(2):
        s.set_epoch(epoch)
        batches = list(s)
        assert len(batches) == want_len
        items = [i for b in batches for i in b]
        assert len(items) == len(set(items))
        if drop_last:
            assert all(len(b) == 4 for b in batches)
            assert len(items) == sum(n // 4 * 4 for n in SIZES.values())
        else:
            assert sorted(items) == list(range(len(kinds)))
        for b in batches:
            assert len({kinds[i] for i in b}) == 1


def test_subset_batches_interleave_proportionally():
    kinds = _shuffled_kinds()
    for shuffle in (False, True):
        s = SubsetBatchSampler(kinds, 2, shuffle=shuffle, seed=0)
        order = [kinds[b[0]] for b in s]
        n = {k: -(-v // 2) for k, v in SIZES.items()}   # 3, 6, 12 batches
        total = sum(n.values())
        for t in range(1, total + 1):
            for k in n:
                seen = sum(o == k for o in order[:t])
                assert abs(seen - t * n[k] / total) <= (1.5 if not shuffle else 2.5), (shuffle, t, k, order)
    assert order != sorted(order)


def test_shuffles_are_reproducible_per_epoch():
    kinds = _shuffled_kinds()
    a, b = SubsetBatchSampler(kinds, 3, seed=1), SubsetBatchSampler(kinds, 3, seed=1)
    a.set_epoch(4)
    b.set_epoch(4)
    assert list(a) == list(b)
    b.set_epoch(5)
    assert list(a) != list(b)
    assert list(SubsetBatchSampler(kinds, 3, seed=2)) != list(SubsetBatchSampler(kinds, 3, seed=1))
    unshuffled = SubsetBatchSampler(kinds, 3, shuffle=False)
    first = list(unshuffled)
    unshuffled.set_epoch(1)
    assert list(unshuffled) == first


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("mixed", [False, True])
def test_ddp_ranks_get_disjoint_equal_shares(world, mixed):
    kinds = _shuffled_kinds()

    def sampler(rank):
        kw = dict(shuffle=True, seed=7, rank=rank, world_size=world)
        s = MixedBatchSampler(len(kinds), 3, **kw) if mixed else SubsetBatchSampler(kinds, 3, **kw)
        s.set_epoch(1)
        return s

    single = sampler(0)
    full = single.epoch_batches()
    shares = [list(sampler(r)) for r in range(world)]
    assert len({len(sh) for sh in shares}) == 1 and len(shares[0]) == len(sampler(0)) == len(full) // world
    items = [i for sh in shares for b in sh for i in b]
    assert len(items) == len(set(items))                       # disjoint
    assert sorted(tuple(b) for sh in shares for b in sh) == sorted(tuple(b) for b in full[:len(shares[0]) * world])
    if not mixed:
        assert all(len({kinds[i] for i in b}) == 1 for sh in shares for b in sh)
    with pytest.raises(ValueError):
        SubsetBatchSampler([0, 0], 1, rank=0, world_size=3)


@pytest.mark.parametrize("world", [1, 2])
@pytest.mark.parametrize("mixed", [False, True])
def test_set_epoch_start_yields_the_tail_of_the_epoch(world, mixed):
    kinds = _shuffled_kinds()
    for rank in range(world):
        kw = dict(shuffle=True, seed=7, rank=rank, world_size=world)
        s = MixedBatchSampler(len(kinds), 3, **kw) if mixed else SubsetBatchSampler(kinds, 3, **kw)
        s.set_epoch(2)
        full, n = list(s), len(s)
        for k in (0, 1, n // 2, n - 1, n):
            s.set_epoch(2, start=k)
            assert list(s) == full[k:] and len(s) == n - k
            assert list(s) == full[k:]                      # the start holds until the next set_epoch
        s.set_epoch(3)
        assert len(s) == n and list(s)[:2] != full[:2]      # a new epoch: its own order, from its first batch
        with pytest.raises(ValueError, match="start"):
            s.set_epoch(2, start=n + 1)


def test_mixed_batches_mix_kinds_and_cover_every_item():
    kinds = _shuffled_kinds()
    s = MixedBatchSampler(len(kinds), 4, seed=0)
    batches = list(s)
    assert len(s) == len(batches) == -(-len(kinds) // 4)
    assert sorted(i for b in batches for i in b) == list(range(len(kinds)))
    assert any(len({kinds[i] for i in b}) > 1 for b in batches)


def test_collate_pads_to_the_largest():
    def item(h, w, k, v):
        target = ClassSetTarget(torch.full((h, w), 5, dtype=torch.int64), torch.zeros(0, dtype=torch.int64),
                                torch.zeros(1, dtype=torch.int64))
        return {"image": torch.full((3, h, w), v), "bits": target, "kind": torch.tensor(k), "tags": torch.ones(4),
                "index": k}

    b = collate([item(3, 5, 0, 1.0), item(4, 2, 1, 2.0)])
    labels = b["bits"].labels
    assert b["image"].shape == (2, 3, 4, 5) and labels.shape == (2, 4, 5)
    assert b["kind"].tolist() == [0, 1] and b["index"].tolist() == [0, 1] and b["tags"].shape == (2, 4)
    assert torch.all(b["image"][0, :, :3] == 1) and torch.all(b["image"][0, :, 3] == 0)
    assert torch.all(b["image"][1, :, :, :2] == 2) and torch.all(b["image"][1, :, :, 2:] == 0)
    assert torch.all(labels[0, 3] == -1) and torch.all(labels[1, :, 2:] == -1)   # padding is ignored
    assert int((labels == 5).sum()) == 3 * 5 + 4 * 2


def test_collate_joins_the_class_set_tables():
    """Sample 0 has sets {3, 70} and {1, 2, 90}; sample 1 has {5, 80}: in the batch sample 1's
    set 0 becomes set 2, its pixels -2 - 2 = -4; padding is -1."""
    t0 = ClassSetTarget(torch.tensor([[7, -2], [-3, -1]]), torch.tensor([3, 70, 1, 2, 90]), torch.tensor([0, 2, 5]))
    t1 = ClassSetTarget(torch.tensor([[-2, 0, 4]]), torch.tensor([5, 80]), torch.tensor([0, 2]))
    item = [{"image": torch.zeros(3, *t.labels.shape), "bits": t, "kind": torch.tensor(1), "tags": torch.ones(4),
             "index": k} for k, t in enumerate((t0, t1))]
    b = collate(item)["bits"]
    assert b.labels.tolist() == [[[7, -2, -1], [-3, -1, -1]], [[-4, 0, 4], [-1, -1, -1]]]
    assert b.sets.tolist() == [3, 70, 1, 2, 90, 5, 80] and b.offsets.tolist() == [0, 2, 5, 7]


# ----------------------------------------------------------------------------- loaders

def _epochs(loader, dataset, epochs, via):
    out = []
    for e in epochs:
        (dataset if via == "dataset" else loader.batch_sampler).set_epoch(e)
        out.append([{k: _clone(v) for k, v in b.items()} for b in loader])
    return out


def test_loader_with_workers_matches_in_process(shards):
    ds = ShardDataset(shards, variant="p+b+i", crop=(12, 14), seed=0)
    ref = _epochs(make_loader(ds, 3, sampling="subset", seed=0, num_workers=0), ds, [0, 1], "sampler")
    workers = make_loader(ds, 3, sampling="subset", seed=0, num_workers=2)
    assert workers.persistent_workers and workers.pin_memory == torch.cuda.is_available()
    got = _epochs(workers, ds, [0, 1], "dataset")   # set_epoch on the dataset alone reaches the workers
    for e in range(2):
        assert len(got[e]) == len(ref[e]) == 6      # pixel 3 -> 1, box 5 -> 2, image 7 -> 3 batches
        for a, b in zip(ref[e], got[e]):
            assert set(a) == set(b) == {"image", "bits", "kind", "tags", "index"}
            for k in a:
                assert _eq(a[k], b[k]), (e, k)
            assert len(set(b["kind"].tolist())) == 1
        assert sorted(i for b in got[e] for i in b["index"].tolist()) == list(range(len(ds)))
    # a new epoch reshuffles and re-augments: the workers did not keep epoch 0
    assert [b["index"].tolist() for b in got[0]] != [b["index"].tolist() for b in got[1]]
    by_index = [{i: b["image"][n] for b in got[e] for n, i in enumerate(b["index"].tolist())} for e in range(2)]
    assert sum(not torch.equal(by_index[0][i], by_index[1][i]) for i in range(len(ds))) >= len(ds) - 1


@pytest.mark.parametrize("drop_last", [False, True])
def test_pixel_share_batches_hold_their_share_and_cover_the_others(drop_last):
    kinds = _shuffled_kinds()                      # 5 pixel, 11 box, 23 image items
    pixel = {i for i, k in enumerate(kinds) if k == 0}
    s = PixelShareBatchSampler(kinds, 8, 0.25, seed=3, drop_last=drop_last)
    assert s.k == 2                                # 0.25 * 8 pixel items + 6 others per batch
    want = 34 // 6 if drop_last else -(-34 // 6)   # one pass over the 34 others: 5 or 6 batches
    assert len(s) == want
    seen_orders = set()
    for epoch in range(3):
        s.set_epoch(epoch)
        batches = list(s)
        assert len(batches) == want
        assert all(sum(i in pixel for i in b) == 2 for b in batches)
        others = [i for b in batches for i in b if i not in pixel]
        assert len(others) == len(set(others)) == (30 if drop_last else 34)
        pix = [i for b in batches for i in b if i in pixel]
        # pixel items come in whole shuffled passes: each of the 5 appears 2 or 3 times in 10-12 slots
        assert set(pix) == pixel and max(pix.count(i) for i in pixel) - min(pix.count(i) for i in pixel) <= 1
        seen_orders.add(tuple(map(tuple, batches)))
        assert list(s) == batches                  # the order is a function of (seed, epoch)
    assert len(seen_orders) == 3
    s.set_epoch(1, start=2)                        # resuming mid-epoch: the same batches from batch 2
    again = PixelShareBatchSampler(kinds, 8, 0.25, seed=3, drop_last=drop_last)
    again.set_epoch(1)
    assert list(s) == list(again)[2:]


def test_pixel_share_rounds_and_falls_back_to_mixed():
    kinds = _shuffled_kinds()
    assert PixelShareBatchSampler(kinds, 8, 0.01).k == 1          # at least one pixel item
    assert PixelShareBatchSampler(kinds, 8, 0.99).k == 7          # at least one other item
    for only in ([0] * 9, [2] * 9):                               # p or ub; image-only: ordinary batches
        s = PixelShareBatchSampler(only, 4, 0.5, seed=1)
        m = MixedBatchSampler(len(only), 4, seed=1)
        assert s.k == 0 and list(s) == list(m)
    world = [PixelShareBatchSampler(kinds, 8, 0.5, seed=0, rank=r, world_size=2) for r in range(2)]
    shares = [list(w) for w in world]
    assert len(shares[0]) == len(shares[1]) == 4   # 34 others / 4 a batch = 9 batches, cut to 8 for 2 ranks
    assert not set(map(tuple, shares[0])) & set(map(tuple, shares[1]))
    with pytest.raises(ValueError, match="share"):
        PixelShareBatchSampler(kinds, 8, 1.0)


def test_make_loader_with_a_pixel_share(shards):
    ds = ShardDataset(shards, variant="p+b+i", crop=(12, 14), seed=0)   # 3 pixel, 5 box, 7 image
    loader = make_loader(ds, 4, seed=0, pixel_share=0.5)
    batches = list(loader)
    assert len(batches) == len(loader) == -(-12 // 2)
    assert all(int((b["kind"] == 0).sum()) == 2 for b in batches)
    with pytest.raises(ValueError, match="mixed"):
        make_loader(ds, 4, sampling="subset", pixel_share=0.5)


def test_make_loader_mixed_ddp_and_variable_sizes(shards):
    ds = ShardDataset(shards, variant="p+b+i", crop=None, scale=(0.5, 2.0), seed=0)
    shares = [make_loader(ds, 2, sampling="mixed", rank=r, world_size=2) for r in range(2)]
    assert len(shares[0]) == len(shares[1]) == 4           # 8 batches of 2 over 15 items, 4 each
    seen = [i for ld in shares for b in ld for i in b["index"].tolist()]
    assert len(seen) == len(set(seen)) == 15
    for b in shares[0]:
        valid = torch.from_numpy(_bits(b["bits"])) != 0
        for n in range(len(b["index"])):   # padded parts of the smaller image are 0 in both
            if int(b["kind"][n]) != 2:
                assert torch.all(b["image"][n][:, ~valid[n]] == 0)
    with pytest.raises(ValueError, match="sampling"):
        make_loader(ds, 2, sampling="random")


@pytest.mark.parametrize("workers", [0, 2])
def test_a_loader_started_mid_epoch_loads_only_the_batches_it_yields(shards, workers):
    loaded = []   # (epoch, index) of every sample made in this process

    class Counting(ShardDataset):
        def __getitem__(self, key):
            loaded.append(key)
            return super().__getitem__(key)

    ds = Counting(shards, variant="p+b+i", crop=(12, 14), seed=0)
    full = _epochs(make_loader(ds, 3, sampling="subset", seed=0), ds, [1], "sampler")[0]
    assert len(full) == 6
    loaded.clear()
    loader = make_loader(ds, 3, sampling="subset", seed=0, num_workers=workers)
    loader.batch_sampler.set_epoch(1, start=4)
    tail = [{k: _clone(v) for k, v in b.items()} for b in loader]
    assert len(tail) == len(full) - 4
    for a, b in zip(full[4:], tail):
        assert all(_eq(a[k], b[k]) for k in a)
    if workers == 0:   # the first four batches were never made
        assert loaded == [(1, i) for b in full[4:] for i in b["index"].tolist()]
    ds.set_epoch(1)    # the dataset's set_epoch starts the linked sampler's epoch from its first batch
    assert len(loader) == 6 and [b["index"].tolist() for b in loader] == [b["index"].tolist() for b in full]


def test_a_151_class_shard_gives_class_set_targets_for_the_loss(tmp_path):
    """A pixel and a box image of 151 classes with soft pixels {70, 140} and {3, 90, 150}: the batch joins
    their set tables (image 1's set 0 becomes set 1) and the loss takes it as it is."""
    from pipeline.core.shards import LabelMap
    from train.losses import mixseg_loss
    classes = ["background"] + [f"c{k}" for k in range(1, 151)]
    codes0 = np.array([[0, 70, 151], [140, 255, 151]], np.uint8)
    codes1 = np.array([[151, 90, 0], [0, 0, 150]], np.uint8)
    image = _png(np.zeros((2, 3, 3), np.uint8))
    recs = [{"id": "a", "kind": "pixel", "height": 2, "width": 3, "tags": [70, 140], "image_bytes": image,
             "label": LabelMap(codes0, 151, [70, 140], [0, 2])},
            {"id": "b", "kind": "box", "height": 2, "width": 3, "tags": [3, 90, 150], "image_bytes": image,
             "label": LabelMap(codes1, 151, [3, 90, 150], [0, 3])}]
    write_label_shard(tmp_path / "labels-train-00000.h5", recs, classes, "train")
    ds = ShardDataset(tmp_path, variant="p+b", augment=False)
    batch = collate([ds[0], ds[1]])
    t = batch["bits"]
    assert t.labels.tolist() == [[[0, 70, -2], [140, -1, -2]], [[-3, 90, 0], [0, 0, 150]]]
    assert t.sets.tolist() == [70, 140, 3, 90, 150] and t.offsets.tolist() == [0, 2, 5]
    assert batch["tags"].shape == (2, 151) and batch["tags"][1, [3, 90, 150]].tolist() == [1, 1, 1]
    logits = torch.zeros(2, 151, 2, 3, requires_grad=True)
    total, parts = mixseg_loss(logits, t, batch["kind"], batch["tags"])
    total.backward()
    assert float(total.detach()) == pytest.approx(np.log(151)) and set(parts) == {"pixel", "box"}   # uniform: ln(C+1)
    assert torch.all(logits.grad[0, :, 1, 1] == 0)   # the ignored pixel

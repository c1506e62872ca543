"""The seeded, stable p:b:i split."""

import pytest

from pipeline.core.errors import InputError
from pipeline.split import counts_from_ratio, split_ids

IDS = [f"{i:06d}" for i in range(10582)]


@pytest.mark.parametrize("counts", [
    {"pixel": 3527, "box": 3527, "image": 3528},
    {"pixel": 1763, "box": 3526, "image": 5293},
    {"pixel": 662, "box": 3310, "image": 6610},
])
def test_paper_table1_counts_reproduce_exactly(counts):
    a = split_ids(IDS, set(IDS), counts=counts, seed=0)
    got = {k: sum(v == k for v in a.values()) for k in counts}
    assert got == counts
    assert len(a) == sum(counts.values()) == 10582


def test_ratio_uses_largest_remainder():
    # 3527.33 each: the one left over goes to the first of the tied remainders
    assert counts_from_ratio(10582, (1, 1, 1)) == {"pixel": 3528, "box": 3527, "image": 3527}
    assert counts_from_ratio(16, (1, 5, 10)) == {"pixel": 1, "box": 5, "image": 10}
    assert counts_from_ratio(17, (1, 5, 10)) == {"pixel": 1, "box": 5, "image": 11}
    assert sum(counts_from_ratio(601, (1, 2, 3)).values()) == 601


def test_split_is_seeded_and_stable_under_added_images():
    ids = IDS[:500]
    a = split_ids(ids, set(ids), ratio=(1, 1, 1), seed=3)
    assert a == split_ids(list(reversed(ids)), set(ids), ratio=(1, 1, 1), seed=3)
    assert a != split_ids(ids, set(ids), ratio=(1, 1, 1), seed=4)
    more = split_ids(IDS[:520], set(IDS[:520]), counts={"pixel": 150, "box": 150, "image": 150}, seed=3)
    small = split_ids(ids, set(ids), counts={"pixel": 150, "box": 150, "image": 150}, seed=3)
    kept = sum(more.get(i) == k for i, k in small.items())
    assert kept > 0.9 * len(small)  # adding 20 images moves few of the others


def test_pixel_subset_only_takes_images_with_masks():
    ids = IDS[:100]
    masked = set(ids[:20])
    a = split_ids(ids, masked, counts={"pixel": 20, "box": 30, "image": 50}, seed=0)
    assert {i for i, k in a.items() if k == "pixel"} == masked
    with pytest.raises(InputError, match="only 20 training images have a true mask"):
        split_ids(ids, masked, counts={"pixel": 21, "box": 0, "image": 0})


def test_counts_larger_than_the_data_are_refused():
    with pytest.raises(InputError, match="params.yaml: split counts .* add up to 11 but there are only 10"):
        split_ids(IDS[:10], set(IDS[:10]), counts={"pixel": 5, "box": 5, "image": 1})
    with pytest.raises(InputError, match="no training images"):
        split_ids([], set())
    with pytest.raises(InputError, match="ratio"):
        split_ids(IDS[:10], set(), ratio=(1, 2))

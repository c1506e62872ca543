"""The annotation-specific loss (paper Eq. 1-5), checked against values worked out by hand.

The hand-worked example: one 2x2 image, 3 classes (background + C = 2), logits per pixel

    p00 = [0, 0, 0]           softmax = [1/3, 1/3, 1/3]        -log p_c = log 3 = 1.0986123 (each c)
    p01 = [1, 2, 3]           S = e + e^2 + e^3 = 30.1928749  -log p_2 = log S - 3 = 0.4076060
                                                                -log p_1 = log S - 2 = 1.4076060
    p10 = [0, log 2, log 5]   softmax = [1/8, 2/8, 5/8]        -log p = [2.0794415, 1.3862944, 0.4700036]
    p11 = [2, 0, 0]           S = e^2 + 2                       -log p_0 = log S - 2 = 0.2395448

Label bitsets (bit c <=> class c), given to the loss as ClassSetTargets (``bits_to_target``):

    ONE_HOT = [[2, 4], [1, 0]]  classes 1, 2, 0 and one ignored pixel
              losses 1.0986123 + 0.4076060 + 2.0794415 + 0 = 3.5856598 over 3 labelled pixels
    SOFT    = [[2, 4], [6, 0]]  p10 has bits {1, 2}: (1.3862944 + 0.4700036) / 2 = 0.9281490
              losses 1.0986123 + 0.4076060 + 0.9281490 + 0 = 2.4343672 over 3 labelled pixels
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core.shards import decode_bitsets
from train.losses import ClassSetTarget, bits_to_target, class_set_loss, decode_bits, image_loss, mixseg_loss

LN2, LN3, LN5 = math.log(2), math.log(3), math.log(5)

# (C+1, H, W) = (3, 2, 2); channel c holds [[p00_c, p01_c], [p10_c, p11_c]]
LOGITS = [[[0.0, 1.0], [0.0, 2.0]],
          [[0.0, 2.0], [LN2, 0.0]],
          [[0.0, 3.0], [LN5, 0.0]]]
ONE_HOT = [[2, 4], [1, 0]]
SOFT = [[2, 4], [6, 0]]

CE_P00 = 1.0986122887   # log 3
CE_P01 = 0.4076059644   # log(e + e^2 + e^3) - 3
CE_P10_BG = 2.0794415417  # -log(1/8)
TWO_BIT_P10 = 0.9281489952  # (-log(2/8) - log(5/8)) / 2
ONE_HOT_SUM = 3.5856597948  # CE_P00 + CE_P01 + CE_P10_BG
SOFT_SUM = 2.4343672483     # CE_P00 + CE_P01 + TWO_BIT_P10

# image branch: constant map v = [5, 0, log 3], tags l = [1, 1, 0]
#   class 1: -log sigmoid(0) = log 2 = 0.6931472;  class 2: -log(1 - sigmoid(log 3)) = -log(1/4) = 1.3862944
#   Eq. 2 = (0.6931472 + 1.3862944) / C=2 = 1.0397208 (the background's v_0 = 5, l_0 = 1 is ignored)
IMG_V = [5.0, 0.0, LN3]
IMG_TAGS = [1.0, 1.0, 0.0]
IMG_LOSS = 1.0397207708


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: torch's intra-op thread pool costs ~8 ms per log_softmax call on some
    small-CPU machines, which would make the gradchecks slow.  Restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def logits(*maps, dtype=torch.float32, grad=False):
    t = torch.tensor([LOGITS if m is None else m for m in maps] if maps else [LOGITS], dtype=dtype)
    return t.requires_grad_(grad)


def bits(*maps):
    return torch.tensor(maps, dtype=torch.int64)


def target(*maps, num_classes=3):
    """The class-set target of hand-written bitset maps."""
    return bits_to_target(bits(*maps), num_classes)


def constant_map(v, h=2, w=2):
    return [[[x] * w for _ in range(h)] for x in v]


# ----------------------------------------------------------------------------- decode_bits

def test_decode_bits_reads_each_bit_into_its_channel():
    d = decode_bits(bits([[2, 4], [6, 0]]), 3)
    assert d.dtype == torch.bool and d.shape == (1, 3, 2, 2)
    expected = [[[False, False], [False, False]],  # class 0: nowhere
                [[True, False], [True, False]],    # class 1: p00 and p10
                [[False, True], [True, False]]]    # class 2: p01 and p10
    assert d[0].tolist() == expected


def test_decode_bits_handles_class_63_the_int64_sign_bit():
    b = bits([[-2 ** 63, -2 ** 63 | 1], [-1, 0]])  # bit 63 only; bits 0 and 63; all 64 bits; none
    d = decode_bits(b, 64)
    assert d.shape == (1, 64, 2, 2)
    assert d[0, :, 0, 0].nonzero().flatten().tolist() == [63]
    assert d[0, :, 0, 1].nonzero().flatten().tolist() == [0, 63]
    assert d[0, :, 1, 0].all() and not d[0, :, 1, 1].any()


def test_decode_bits_agrees_with_the_numpy_decoder_of_the_shards():
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 2 ** 64, size=(2, 3, 4), dtype=np.uint64)
    d = decode_bits(torch.from_numpy(raw.view(np.int64)), 64)
    np.testing.assert_array_equal(d.permute(0, 2, 3, 1).numpy(), decode_bitsets(raw, 64))


def test_decode_bits_rejects_bits_beyond_the_classes():
    with pytest.raises(ValueError, match="bit 3"):
        decode_bits(bits([[8]]), 3)
    with pytest.raises(ValueError):
        decode_bits(bits([[-2 ** 63]]), 63)  # bit 63 with only 63 classes


# ----------------------------------------------------------------------------- class_set_loss

def test_one_hot_pixels_give_the_cross_entropy():
    f = logits()
    assert class_set_loss(f, target(ONE_HOT), "mean").item() == pytest.approx(ONE_HOT_SUM / 3, abs=1e-6)
    per = class_set_loss(f, target(ONE_HOT), "none")[0]
    assert per.flatten().tolist() == pytest.approx([CE_P00, CE_P01, CE_P10_BG, 0.0], abs=1e-6)
    # and torch's own cross-entropy (class maps with ignore_index) on random data
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 6, 7, generator=g)
    cls = torch.randint(0, 6, (2, 6, 7), generator=g)  # 5 = ignored
    b = torch.where(cls < 5, torch.ones_like(cls) << cls.clamp(max=4), 0)
    ref = F.cross_entropy(x, cls, ignore_index=5)
    assert class_set_loss(x, bits_to_target(b, 5), "mean").item() == pytest.approx(ref.item(), rel=1e-6)


def test_one_hot_gradient_is_softmax_minus_one_hot():
    f = logits(grad=True)
    class_set_loss(f, target([[0, 4], [0, 0]]), "mean").backward()  # only p01, class 2
    # softmax([1, 2, 3]) = [e, e^2, e^3] / 30.1928749 = [0.0900306, 0.2447285, 0.6652410]
    assert f.grad[0, :, 0, 1].tolist() == pytest.approx([0.0900306, 0.2447285, 0.6652410 - 1.0], abs=1e-6)
    assert f.grad[0, :, 0, 0].abs().sum() == 0 and f.grad[0, :, 1, :].abs().sum() == 0


def test_a_two_bit_pixel_gives_the_half_weighted_sum():
    f = logits()
    assert class_set_loss(f, target([[0, 0], [6, 0]]), "mean").item() == pytest.approx(TWO_BIT_P10, abs=1e-6)
    assert class_set_loss(f, target(SOFT), "none")[0, 1, 0].item() == pytest.approx(0.9281490, abs=1e-6)
    # three bits at p00 (uniform softmax): (3 * log 3) / 3 = log 3
    assert class_set_loss(f, target([[7, 0], [0, 0]]), "mean").item() == pytest.approx(CE_P00, abs=1e-6)


def test_an_empty_bitset_pixel_contributes_nothing_and_gets_zero_gradient():
    f = logits(grad=True)
    loss = class_set_loss(f, target(SOFT), "mean")
    loss.backward()
    assert loss.item() == pytest.approx(SOFT_SUM / 3, abs=1e-6)  # mean over 3 pixels, not 4
    assert f.grad[0, :, 1, 1].tolist() == [0.0, 0.0, 0.0]
    assert f.grad[0, :, :1].abs().sum() > 0
    # whatever the ignored pixel's logits are, the loss is the same
    other = [[[c[0][0], c[0][1]], [c[1][0], v]] for c, v in zip(LOGITS, [50.0, -7.0, 3.0])]
    assert class_set_loss(logits(other), target(SOFT), "mean").item() == pytest.approx(loss.item(), abs=1e-6)


@pytest.mark.parametrize("reduction", ["mean", "paper", "sum"])
def test_no_labelled_pixel_gives_zero_loss_and_zero_gradient(reduction):
    f = logits(None, None, grad=True)
    loss = class_set_loss(f, bits_to_target(torch.zeros(2, 2, 2, dtype=torch.int64), 3), reduction)
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(loss)
    assert f.grad is not None and f.grad.abs().sum() == 0


def test_paper_reduction_is_the_pixel_sum_over_c_summed_over_the_batch():
    f = logits()
    # C = 2 foreground classes: 2.4343672 / 2 = 1.2171836
    assert class_set_loss(f, target(SOFT), "paper").item() == pytest.approx(1.2171836241, abs=1e-6)
    assert class_set_loss(f, target(SOFT), "sum").item() == pytest.approx(SOFT_SUM, abs=1e-6)
    # batch of two: (2.4343672 + 3.5856598) / 2 = 3.0100135; the mean is over the 6 labelled pixels = 1.0033378
    f2, t2 = logits(None, None), target(SOFT, ONE_HOT)
    assert class_set_loss(f2, t2, "paper").item() == pytest.approx(3.0100135216, abs=1e-6)
    assert class_set_loss(f2, t2, "mean").item() == pytest.approx(1.0033378405, abs=1e-6)


def test_class_63_pixels_are_scored_on_channel_63():
    f = torch.zeros(1, 64, 1, 1)
    t = target([[-2 ** 63]], num_classes=64)
    assert t.labels.tolist() == [[[63]]]
    assert class_set_loss(f, t, "mean").item() == pytest.approx(math.log(64), abs=1e-5)  # 4.1588831
    f[0, 63] = math.log(63)  # softmax_63 = 63 / (63 + 63) = 1/2
    assert class_set_loss(f, t, "mean").item() == pytest.approx(LN2, abs=1e-5)
    # paper: ln 2 / C with C = 63
    assert class_set_loss(f, t, "paper").item() == pytest.approx(LN2 / 63, abs=1e-7)


def test_class_set_loss_is_stable_at_huge_logits():
    # p00 = [1e4, -1e4, 0] of class 1: -log softmax = 1e4 - (-1e4) + log(1 + e^-2e4 + e^-1e4) = 2e4
    # p01 = same logits, class 0: 0;  p10 = [-1e4, 1e4, -1e4] of classes {0, 2}: (2e4 + 2e4) / 2 = 2e4
    m = [[[1e4, 1e4], [-1e4, 0.0]], [[-1e4, -1e4], [1e4, 0.0]], [[0.0, 0.0], [-1e4, 0.0]]]
    f = logits(m, grad=True)
    loss = class_set_loss(f, target([[2, 1], [5, 0]]), "mean")
    loss.backward()
    assert loss.item() == pytest.approx(4e4 / 3, rel=1e-6)
    assert torch.isfinite(f.grad).all()
    # p00: (softmax - onehot) / 3 = ([1, 0, 0] - [0, 1, 0]) / 3
    assert f.grad[0, :, 0, 0].tolist() == pytest.approx([1 / 3, -1 / 3, 0.0], abs=1e-6)
    assert f.grad[0, :, 0, 1].abs().max().item() < 1e-6


def test_half_precision_logits_are_computed_in_float32():
    f = logits(dtype=torch.bfloat16, grad=True)  # 0, 1, 2, 3, log 2, log 5 are close enough in bf16
    loss = class_set_loss(f, target(ONE_HOT), "mean")
    loss.backward()
    assert loss.dtype == torch.float32 and f.grad.dtype == torch.bfloat16
    assert loss.item() == pytest.approx(ONE_HOT_SUM / 3, abs=2e-2)


def test_class_set_loss_rejects_bad_input():
    with pytest.raises(ValueError, match="reduction"):
        class_set_loss(logits(), target(SOFT), "average")
    with pytest.raises(ValueError, match="labels must be"):
        class_set_loss(logits(), target([[1, 1, 1]]), "mean")
    with pytest.raises(ValueError, match="class 3, at or above the 3 logit channels"):
        class_set_loss(logits(), ClassSetTarget(torch.tensor([[[3, 0], [0, 0]]]), torch.zeros(0, dtype=torch.int64),
                                                torch.zeros(1, dtype=torch.int64)), "mean")
    with pytest.raises(ValueError, match="bit 3"):   # a bitset with more classes than the logits
        target([[8, 1], [1, 1]])
    with pytest.raises(TypeError):
        bits_to_target(bits(SOFT).float(), 3)


@pytest.mark.parametrize("reduction", ["mean", "paper", "none"])
def test_class_set_loss_gradcheck(reduction):
    g = torch.Generator().manual_seed(1)
    f = torch.randn(2, 4, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randint(0, 16, (2, 3, 3), generator=g)  # empty, one-hot and 2- to 4-bit pixels
    b[0, 0, 0], b[1, 2, 2], b[1, 0, 0] = 0, 15, 6
    t = bits_to_target(b, 4)
    assert torch.autograd.gradcheck(lambda x: class_set_loss(x, t, reduction), (f,))


# ----------------------------------------------------------------------------- image_loss

def test_image_loss_of_a_constant_map_is_the_hand_bce():
    f = logits(constant_map(IMG_V))
    t = torch.tensor([IMG_TAGS])
    assert image_loss(f, t, "mean").item() == pytest.approx(IMG_LOSS, abs=1e-6)
    # not constant, same means (Eq. 1 is an average pool): the same loss
    m = [[[9.0, 1.0], [5.0, 5.0]], [[-1.0, 1.0], [3.0, -3.0]], [[LN3 + 0.5, LN3 - 0.5], [LN3, LN3]]]
    assert image_loss(logits(m), t, "mean").item() == pytest.approx(IMG_LOSS, abs=1e-6)
    # bool tags; reductions over a batch of two identical samples
    f2 = logits(constant_map(IMG_V), constant_map(IMG_V))
    t2 = torch.tensor([[True, True, False]] * 2)
    assert image_loss(f2, t2, "paper").item() == pytest.approx(2 * IMG_LOSS, abs=1e-6)
    assert image_loss(f2, t2, "sum").item() == pytest.approx(2 * IMG_LOSS, abs=1e-6)
    assert image_loss(f2, t2, "none").tolist() == pytest.approx([IMG_LOSS, IMG_LOSS], abs=1e-6)


def test_image_loss_ignores_the_background_tag_and_channel():
    f = logits(constant_map(IMG_V), grad=True)
    a = image_loss(f, torch.tensor([[1.0, 1.0, 0.0]]), "mean")
    b = image_loss(f, torch.tensor([[0.0, 1.0, 0.0]]), "mean")
    assert a.item() == pytest.approx(b.item(), abs=0) and a.item() == pytest.approx(IMG_LOSS, abs=1e-6)
    a.backward()
    assert f.grad[0, 0].abs().sum() == 0
    # d/dv_1 = (sigmoid(0) - 1) / C = -1/4, spread over the 4 pixels: -1/16 each
    assert f.grad[0, 1].flatten().tolist() == pytest.approx([-1 / 16] * 4, abs=1e-7)


def test_image_loss_is_stable_at_huge_logits():
    # v = [0, 1e4, -1e4], tags [0, 0, 1]: softplus(1e4) = 1e4 for both classes, mean 1e4
    f = logits(constant_map([0.0, 1e4, -1e4]), grad=True)
    loss = image_loss(f, torch.tensor([[0.0, 0.0, 1.0]]), "mean")
    loss.backward()
    assert loss.item() == pytest.approx(1e4, rel=1e-6)
    assert torch.isfinite(f.grad).all()
    # right answers at huge logits cost nothing
    assert image_loss(f, torch.tensor([[0.0, 1.0, 0.0]]), "mean").item() == pytest.approx(0.0, abs=1e-6)


def test_image_loss_gradcheck():
    g = torch.Generator().manual_seed(2)
    f = torch.randn(3, 4, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.rand(3, 4, generator=g, dtype=torch.float64)  # soft tags too
    assert torch.autograd.gradcheck(lambda x: image_loss(x, t, "mean"), (f,))
    assert torch.autograd.gradcheck(lambda x: image_loss(x, t, "none"), (f,))


# ----------------------------------------------------------------------------- mixseg_loss

PIXEL_MEAN = ONE_HOT_SUM / 3  # 1.1952199
BOX_MEAN = SOFT_SUM / 3       # 0.8114557


def mixed_batch(order=(0, 1, 2)):
    maps = {0: LOGITS, 1: LOGITS, 2: constant_map(IMG_V)}
    labels = {0: ONE_HOT, 1: SOFT, 2: [[0, 0], [0, 0]]}
    tags = {0: [1.0, 0.0, 0.0], 1: [0.0, 0.0, 0.0], 2: IMG_TAGS}  # only the image row is used
    t = target(*[labels[k] for k in order])
    # image rows hold garbage (an unknown class set, classes beyond the channels): ignored
    t.labels[order.index(2)] = torch.tensor([[-1, 12345], [99, -40]])
    return (logits(*[maps[k] for k in order], grad=True), t,
            torch.tensor(order), torch.tensor([tags[k] for k in order]))


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 0, 1)])
def test_mixed_batch_mean_is_the_average_of_the_per_sample_losses(order):
    f, b, k, t = mixed_batch(order)
    total, parts = mixseg_loss(f, b, k, t, "mean")
    # (1.1952199 + 0.8114557 + 1.0397208) / 3 = 1.0154655
    assert total.item() == pytest.approx(1.0154654839, abs=1e-6)
    assert set(parts) == {"pixel", "box", "image"}
    assert parts["pixel"].item() == pytest.approx(PIXEL_MEAN, abs=1e-6)
    assert parts["box"].item() == pytest.approx(BOX_MEAN, abs=1e-6)
    assert parts["image"].item() == pytest.approx(IMG_LOSS, abs=1e-6)
    assert not any(v.requires_grad for v in parts.values())
    total.backward()
    assert torch.isfinite(f.grad).all()


def test_mixed_batch_paper_is_the_sum_of_the_per_sample_paper_losses():
    f, b, k, t = mixed_batch()
    total, parts = mixseg_loss(f, b, k, t, "paper")
    # Eq. 5: 3.5856598 / 2 + 2.4343672 / 2 + 1.0397208 = 4.0497343
    assert total.item() == pytest.approx(4.0497343424, abs=1e-6)
    assert parts["pixel"].item() == pytest.approx(1.7928298974, abs=1e-6)
    assert parts["box"].item() == pytest.approx(1.2171836241, abs=1e-6)
    assert parts["image"].item() == pytest.approx(IMG_LOSS, abs=1e-6)


def test_mean_pools_pixels_within_a_branch_and_weights_branches_by_their_samples():
    # two pixel samples: ONE_HOT (3 labelled, sum 3.5856598) and only p00 of class 1 (1 labelled, 1.0986123),
    # one image sample.  pixel branch = 4.6842721 / 4 = 1.1710680;  total = 2/3 * 1.1710680 + 1/3 * 1.0397208
    f = logits(None, None, constant_map(IMG_V), grad=True)
    b = target(ONE_HOT, [[2, 0], [0, 0]], [[0, 0], [0, 0]])
    total, parts = mixseg_loss(f, b, torch.tensor([0, 0, 2]), torch.tensor([IMG_TAGS] * 3))
    assert parts["pixel"].item() == pytest.approx(1.1710680209, abs=1e-6)
    assert set(parts) == {"pixel", "image"}
    assert total.item() == pytest.approx(1.1272856042, abs=1e-6)


def test_a_single_kind_batch_gives_that_branch_alone():
    f = logits(None, None)
    b = target(SOFT, ONE_HOT)
    total, parts = mixseg_loss(f, b, torch.tensor([1, 1]), None, "mean")
    assert total.item() == pytest.approx(1.0033378405, abs=1e-6) and set(parts) == {"box"}
    total, _ = mixseg_loss(f, b, torch.tensor([1, 1]), None, "paper")
    assert total.item() == pytest.approx(3.0100135216, abs=1e-6)
    f = logits(constant_map(IMG_V), grad=True)
    total, parts = mixseg_loss(f, None, torch.tensor([2]), torch.tensor([IMG_TAGS]))
    assert total.item() == pytest.approx(IMG_LOSS, abs=1e-6) and set(parts) == {"image"}
    total.backward()
    assert f.grad[0, 0].abs().sum() == 0


def test_image_samples_get_no_gradient_from_their_bits():
    f, b, k, t = mixed_batch()
    total, _ = mixseg_loss(f, b, k, t, "mean")
    total.backward()
    # image sample: only the pooled BCE, the same gradient at every pixel of a channel, none on background
    g = f.grad[2]
    assert g[0].abs().sum() == 0
    assert torch.allclose(g, g[:, :1, :1].expand_as(g))
    # d total / d v_1 = 1/3 (batch weight) * (sigmoid(0) - 1) / 2 = -1/12, over 4 pixels: -1/48
    assert g[1, 0, 0].item() == pytest.approx(-1 / 48, abs=1e-7)


def test_mixseg_loss_rejects_bad_input():
    f, b, k, t = mixed_batch()
    with pytest.raises(ValueError, match="reduction"):
        mixseg_loss(f, b, k, t, "none")
    with pytest.raises(ValueError, match="kind"):
        mixseg_loss(f, b, torch.tensor([0, 1, 3]), t)
    with pytest.raises(ValueError, match="tags"):
        mixseg_loss(f, b, k, None)
    with pytest.raises(ValueError, match="bits"):
        mixseg_loss(f, None, k, t)


@pytest.mark.parametrize("reduction", ["mean", "paper"])
def test_mixseg_loss_gradcheck(reduction):
    g = torch.Generator().manual_seed(3)
    f = torch.randn(4, 3, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = bits_to_target(torch.randint(0, 8, (4, 2, 3), generator=g), 3)
    k = torch.tensor([0, 2, 1, 2])
    t = torch.rand(4, 3, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: mixseg_loss(x, b, k, t, reduction)[0], (f,))


# ----------------------------------------------------------------------------- property

@st.composite
def batches(draw):
    c1 = draw(st.sampled_from([2, 3, 5, 64]))
    n, h, w = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    scale = draw(st.sampled_from([1.0, 30.0, 1e4]))
    vals = draw(st.lists(st.floats(-1.0, 1.0), min_size=n * c1 * h * w, max_size=n * c1 * h * w))
    f = (torch.tensor(vals, dtype=torch.float32) * scale).reshape(n, c1, h, w)
    lo, hi = (-2 ** 63, 2 ** 63 - 1) if c1 == 64 else (0, 2 ** c1 - 1)
    empty = draw(st.booleans())
    px = draw(st.lists(st.integers(lo, hi), min_size=n * h * w, max_size=n * h * w))
    b = torch.zeros(n, h, w, dtype=torch.int64) if empty else torch.tensor(px, dtype=torch.int64).reshape(n, h, w)
    kind = torch.tensor(draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)))
    tags = torch.tensor(draw(st.lists(st.booleans(), min_size=n * c1, max_size=n * c1))).reshape(n, c1)
    return f, bits_to_target(b, c1), kind, tags


@settings(max_examples=60, deadline=None)
@given(batches())
def test_random_logits_and_targets_never_give_nan_and_are_non_negative(batch):
    f, b, kind, tags = batch
    for red in ("mean", "paper"):
        x = f.clone().requires_grad_(True)
        losses = [class_set_loss(x, b, red), image_loss(x, tags, red), mixseg_loss(x, b, kind, tags, red)[0]]
        for loss in losses:
            assert torch.isfinite(loss) and loss.item() >= 0
        sum(losses).backward()
        assert torch.isfinite(x.grad).all()

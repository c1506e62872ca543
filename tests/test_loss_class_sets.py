"""The loss from class-id targets (issue #13): any class count, no one-hot target, the values and
gradients of the definition (Eq. 3-4), exact zero gradient on ignored pixels; bitsets only through
``bits_to_target``."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from train.losses import (ClassSetTarget, bits_to_target, class_set_loss, decode_bits, image_loss,  # noqa: E402
                          mixseg_loss, target_bits)


def _random_bits(rng, shape, num_classes):
    """Bitsets of every kind: ignored, one class, soft (random sets, bit 63 included at 64 classes)."""
    single = np.uint64(1) << rng.integers(0, num_classes, shape).astype(np.uint64)
    soft = rng.integers(0, 2**63, shape, dtype=np.uint64)
    soft |= rng.integers(0, 2, shape, dtype=np.uint64) << np.uint64(63)
    if num_classes < 64:
        soft &= np.uint64((1 << num_classes) - 1)
    r = rng.random(shape)
    bits = np.where(r < 0.5, single, np.where(r < 0.85, soft, np.uint64(0)))
    return torch.from_numpy(bits.view(np.int64))


def _dense_reference(x, bits, num_classes):
    """The definition written out densely: per pixel -(1/|s_i|) sum_c s_ic log softmax(f_i)_c, 0 where
    |s_i| = 0, with s from the per-class boolean mask of the bitsets."""
    s = decode_bits(bits, num_classes).to(x.dtype)
    count = s.sum(1)
    per = -(s * torch.log_softmax(x, 1)).sum(1) / count.clamp_min(1)
    return per, count


@pytest.mark.parametrize("num_classes", [2, 5, 21, 33, 64])
@pytest.mark.parametrize("reduction", ["mean", "paper", "sum", "none"])
def test_random_bitsets_as_targets_give_the_dense_definition(num_classes, reduction):
    """Random bitsets of every kind (bit 63 included at 64 classes): ``bits_to_target`` and
    ``target_bits`` are inverse, and the class-set loss and its gradient are those of the dense
    formula for every reduction."""
    rng = np.random.default_rng(num_classes)
    bits = _random_bits(rng, (3, 6, 7), num_classes)
    target = bits_to_target(bits, num_classes)
    assert torch.equal(target_bits(target), bits)
    x = torch.randn(3, num_classes, 6, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(1),
                    requires_grad=True)
    per, count = _dense_reference(x, bits, num_classes)
    want = {"none": per, "sum": per.sum(), "paper": per.sum() / (num_classes - 1),
            "mean": per.sum() / (count > 0).sum().clamp_min(1)}[reduction]
    got = class_set_loss(x, target, reduction)
    torch.testing.assert_close(got, want)
    g_got, = torch.autograd.grad(got.sum(), x)
    g_want, = torch.autograd.grad(want.sum(), x)
    torch.testing.assert_close(g_got, g_want)
    assert bool((g_got.permute(0, 2, 3, 1)[count == 0] == 0).all())   # ignored pixels: exactly zero


def test_a_raw_bitset_tensor_is_refused():
    """Only ClassSetTargets are taken: int64 bitsets must go through bits_to_target first."""
    x = torch.zeros(1, 3, 2, 2)
    raw = torch.tensor([[[2, 4], [6, 0]]], dtype=torch.int64)
    with pytest.raises(TypeError, match="must be a ClassSetTarget .* got Tensor .*bits_to_target"):
        mixseg_loss(x, raw, torch.tensor([1]), None)
    with pytest.raises(TypeError, match="must be a ClassSetTarget"):
        mixseg_loss(x, raw, torch.tensor([0]), None)   # a pixel sample
    with pytest.raises(TypeError, match="must be a ClassSetTarget"):
        class_set_loss(x, raw)
    # converted, the same pixels are fine
    total, _ = mixseg_loss(x, bits_to_target(raw, 3), torch.tensor([1]), None)
    assert total.item() == pytest.approx(math.log(3))


def _soft_case():
    """81 channels, one row of 4 pixels: f_65 = ln 1 = 0, f_70 = ln 2, f_80 = ln 3, all others 0,
    so Z = 78 + 1 + 2 + 3 = 84.  Pixel 0: {70, 80}; pixel 1: {65, 70, 80}; pixel 2 ignored
    (with huge logits); pixel 3: class 80 alone."""
    x = torch.zeros(1, 81, 1, 4, dtype=torch.float64)
    x[0, 70] = math.log(2)
    x[0, 80] = math.log(3)
    x[0, :, 0, 2] = torch.linspace(-1e4, 1e4, 81, dtype=torch.float64)
    target = ClassSetTarget(torch.tensor([[[-2, -3, -1, 80]]]), torch.tensor([70, 80, 65, 70, 80]),
                            torch.tensor([0, 2, 5]))
    return x.requires_grad_(), target


def test_soft_pixels_with_two_and_three_classes_above_64_hand_computed():
    x, target = _soft_case()
    loss = class_set_loss(x, target, "none")
    l0 = math.log(84) - math.log(6) / 2                  # -(1/2)(ln 2/84 + ln 3/84)
    l1 = math.log(84) - math.log(6) / 3                  # -(1/3)(ln 1/84 + ln 2/84 + ln 3/84)
    l3 = math.log(84) - math.log(3)
    torch.testing.assert_close(loss, torch.tensor([[[l0, l1, 0.0, l3]]], dtype=torch.float64))
    torch.testing.assert_close(class_set_loss(x, target, "mean"), torch.tensor((l0 + l1 + l3) / 3,
                                                                                 dtype=torch.float64))
    torch.testing.assert_close(class_set_loss(x, target, "paper"), torch.tensor((l0 + l1 + l3) / 80,
                                                                                  dtype=torch.float64))
    g, = torch.autograd.grad(class_set_loss(x, target, "sum"), x)
    soft = torch.full((81,), 1 / 84, dtype=torch.float64)
    soft[70], soft[80] = 2 / 84, 3 / 84
    want0, want1, want3 = soft.clone(), soft.clone(), soft.clone()
    want0[70] -= 1 / 2
    want0[80] -= 1 / 2
    want1[[65, 70, 80]] -= 1 / 3
    want3[80] -= 1
    torch.testing.assert_close(g[0, :, 0, 0], want0)
    torch.testing.assert_close(g[0, :, 0, 1], want1)
    torch.testing.assert_close(g[0, :, 0, 3], want3)
    assert torch.equal(g[0, :, 0, 2], torch.zeros(81, dtype=torch.float64))   # ignored: exactly zero


def test_ignored_pixels_get_exactly_zero_gradient_in_float32_and_mixseg_loss():
    x, target = _soft_case()
    x = x.detach().float().requires_grad_()
    total, parts = mixseg_loss(x, target, torch.tensor([1]), None)
    total.backward()
    assert torch.all(x.grad[0, :, 0, 2] == 0) and set(parts) == {"box"}
    assert torch.all(torch.isfinite(x.grad))


def test_mixseg_loss_takes_targets_and_clears_image_rows():
    """Two samples: a box one with a soft pixel above 64 and an image one whose labels (garbage)
    are ignored; the box branch equals class_set_loss on the first sample alone."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 151, 3, 3, generator=gen, dtype=torch.float64)
    labels = torch.tensor([[[0, 150, -2], [5, -1, 99], [-2, 0, 0]], [[7, 7, -2], [7, 7, 7], [7, 7, 7]]])
    target = ClassSetTarget(labels, torch.tensor([64, 149]), torch.tensor([0, 2]))
    tags = torch.zeros(2, 151, dtype=torch.float64)
    tags[1, [3, 140]] = 1
    total, parts = mixseg_loss(x, target, torch.tensor([1, 2]), tags)
    box = class_set_loss(x[:1], ClassSetTarget(labels[:1], target.sets, target.offsets))
    img = image_loss(x[1:], tags[1:])
    torch.testing.assert_close(parts["box"], box)
    torch.testing.assert_close(parts["image"], img)
    torch.testing.assert_close(total, (box + img) / 2)


def test_image_branch_over_151_classes_hand_computed():
    """All logits 0: v_c = 0, sigmoid 1/2, so every one of the 150 foreground BCE terms is ln 2."""
    x = torch.zeros(1, 151, 2, 2)
    tags = torch.zeros(1, 151)
    tags[0, [1, 75, 150]] = 1
    torch.testing.assert_close(image_loss(x, tags), torch.tensor(math.log(2)))


def test_bad_targets_are_refused():
    x = torch.zeros(1, 81, 1, 2)
    with pytest.raises(ValueError, match="class 81, at or above the 81 logit channels"):
        class_set_loss(x, ClassSetTarget(torch.tensor([[[81, 0]]]), torch.zeros(0, dtype=torch.long),
                                         torch.zeros(1, dtype=torch.long)))
    with pytest.raises(ValueError, match="class set 1, the target has 1"):
        class_set_loss(x, ClassSetTarget(torch.tensor([[[-3, 0]]]), torch.tensor([1, 2]), torch.tensor([0, 2])))
    with pytest.raises(ValueError, match="outside 0..80"):
        class_set_loss(x, ClassSetTarget(torch.tensor([[[-2, 0]]]), torch.tensor([1, 81]), torch.tensor([0, 2])))
    with pytest.raises(ValueError, match=r"labels must be \(N, H, W\)"):
        class_set_loss(x, ClassSetTarget(torch.tensor([[0, 0]]), torch.zeros(0, dtype=torch.long),
                                         torch.zeros(1, dtype=torch.long)))


def test_no_one_hot_target_is_made():
    """The forward keeps one (N, C+1, H, W) tensor (the log-softmax); a one-hot float target would be a
    second one of the same size."""
    from torch.autograd.graph import saved_tensors_hooks
    x = torch.randn(2, 151, 16, 16, requires_grad=True)
    labels = torch.randint(0, 151, (2, 16, 16))
    labels[0, 0, :4] = -2
    big = []

    def pack(t):
        if t.numel() >= x.numel():
            big.append(tuple(t.shape))
        return t

    with saved_tensors_hooks(pack, lambda t: t):
        class_set_loss(x, ClassSetTarget(labels, torch.tensor([3, 140]), torch.tensor([0, 2]))).backward()
    assert big == [tuple(x.shape)]

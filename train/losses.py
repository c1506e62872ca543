"""The annotation-specific loss module (paper section 3, Eq. 1-5; SPEC section 6).

Notation: logits ``f`` are (N, C+1, H, W) with channel 0 the background, so there
are ``C = num_classes - 1`` foreground classes.  Pixel targets come as a
:class:`ClassSetTarget` (the loader's ``bits``, from the shards' format 3 class-id maps,
any class count): per pixel ``labels`` (N, H, W) int64 holds the class id ``c >= 0``, ``-1``
for an ignored pixel, or ``-2 - j`` for a soft pixel whose class set is row ``j`` of the
batch's set table (``sets[offsets[j]:offsets[j+1]]``).  Soft pixels are rare, so the loss
gathers one log-probability per ordinary pixel and indexes the few (pixel, class) pairs of
the soft ones: no (N, C+1, H, W) target is ever made.

Only :class:`ClassSetTarget` targets are accepted.  Int64 label bitsets (format 2's encoding, at
most 64 classes: bit c set <=> s_ic = 1, no bit = ignored; with 64 classes bit 63 is the int64 sign
bit) convert with :func:`bits_to_target` (and back with :func:`target_bits`); :func:`decode_bits`
expands them into a per-class boolean mask.

Branches
--------
* image (Eq. 1-2), :func:`image_loss`: v_c = mean_i f_ic, then binary
  cross-entropy of sigmoid(v_c) against the tag l_c averaged over the C
  foreground classes (the background channel and its tag are ignored).
* box (Eq. 3) and pixel (Eq. 4), :func:`class_set_loss`: for each pixel with
  |s_i| > 0, ``-(1/|s_i|) sum_c s_ic log softmax(f_i)_c``.  A single class
  makes it the ordinary cross-entropy (Eq. 4), so one function serves both.

Reductions
----------
``"paper"``
    Exactly the paper: per image Eq. 3/4 is the *sum* over pixels times 1/C,
    Eq. 2 is already a per-image value, and Eq. 5 sums the per-image losses
    over the batch (the paper trains with batch 1).  The scale grows with the
    image size, which is what the paper's lr 1e-4 was tuned for.
``"mean"`` (the default)
    Practical: the pixel-wise losses are averaged over the labelled pixels, so
    the loss scale does not depend on crop size, batch size or how much of a
    box image is uncertain; learning rates transfer between settings.  It is
    the default because the practical training mode (crops, batches > 1,
    mixed-kind batches) is the default of the trainer.

Memory: :func:`class_set_loss` is a custom autograd function.  It keeps one extra
(N, C+1, H, W) float tensor (the log-softmax, computed once, float32 for half
inputs) and the (N, H, W) labels; its backward allocates only the gradient itself
(softmax times the upstream gradient, minus it at each pixel's classes: one scatter for
the ordinary pixels, one indexed add for the soft ones).
"""

from __future__ import annotations

import sys
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

__all__ = ["ClassSetTarget", "bits_to_target", "target_bits", "class_set_loss", "decode_bits", "image_loss",
           "mixseg_loss", "KIND_PIXEL", "KIND_BOX", "KIND_IMAGE", "REDUCTIONS"]

KIND_PIXEL, KIND_BOX, KIND_IMAGE = 0, 1, 2  # as pipeline.core.shards.KINDS
BRANCHES = ("pixel", "box", "image")
REDUCTIONS = ("mean", "paper")


# ----------------------------------------------------------------------------- bitsets

def _as_bits(bits: torch.Tensor) -> torch.Tensor:
    if bits.dtype.is_floating_point or bits.dtype.is_complex or bits.dtype == torch.bool:
        raise TypeError(f"bitsets must be an integer tensor, got {bits.dtype}")
    return bits if bits.dtype == torch.int64 else bits.to(torch.int64)


def _bit_planes(bits: torch.Tensor, num_classes: int = 64) -> torch.Tensor:
    """(ceil(num_classes / 8), *bits.shape) uint8: plane k holds bits 8k..8k+7 of
    the int64 bitsets.

    Reading the int64 as its eight bytes makes bit 63 (the sign bit) an ordinary
    bit, and extracting a class from a contiguous uint8 plane is ~8x less memory
    traffic than shifting int64 (the per-class work of the loss)."""
    b = bits.contiguous().view(torch.uint8).view(tuple(bits.shape) + (8,))
    if sys.byteorder == "big":
        b = b.flip(-1)
    return b[..., :(num_classes + 7) // 8].movedim(-1, 0).contiguous()


def _bit(planes: torch.Tensor, c: int) -> torch.Tensor:
    """Bit ``c`` (0..63) from :func:`_bit_planes` as bool."""
    return (planes[c >> 3] & (1 << (c & 7))) != 0


def _check_bits(bits: torch.Tensor, num_classes: int) -> None:
    if not 1 <= num_classes <= 64:
        raise ValueError(f"num_classes must be in 1..64 (background included), got {num_classes}")
    if num_classes < 64 and bits.numel():
        lo, hi = torch.aminmax(bits)  # one pass; a negative int64 has bit 63 set
        if bool(lo < 0) or bool(hi >= (1 << num_classes)):
            raise ValueError(f"bitsets have bits set at or above bit {num_classes} "
                             f"(more classes than the {num_classes} logit channels)")


def decode_bits(bits: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Decode label bitsets into a per-class boolean mask.

    Parameters
    ----------
    bits : torch.Tensor
        (N, H, W) integer bitsets (int64; other integer types are converted).  With
        64 classes, bit 63 is the int64 sign bit: negative values are valid bitsets.
    num_classes : int
        C+1, the number of classes including the background, 1..64.

    Returns
    -------
    torch.Tensor
        (N, C+1, H, W) bool, channel c True <=> bit c set.  An all-False pixel
        is an ignored pixel.

    Raises
    ------
    ValueError
        If a bit at or above ``num_classes`` is set.
    """
    bits = _as_bits(bits)
    _check_bits(bits, num_classes)
    out = torch.empty((bits.shape[0], num_classes) + tuple(bits.shape[1:]), dtype=torch.bool, device=bits.device)
    planes = _bit_planes(bits, num_classes)
    for c in range(num_classes):  # per class: no (N, C+1, H, W) int64 temporary
        out[:, c] = _bit(planes, c)
    return out


# ----------------------------------------------------------------------------- image branch

def _pool(logits: torch.Tensor) -> torch.Tensor:
    """Eq. 1: (N, C+1, H, W) -> (N, C+1) mean over the pixels (float32 or wider)."""
    dtype = torch.promote_types(logits.dtype, torch.float32)
    return logits.mean(dim=tuple(range(2, logits.dim())), dtype=dtype)


def _image_terms(v: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
    """Eq. 2 per sample: v (N, C+1) pooled logits, tags (N, C+1) -> (N,)."""
    t = tags.to(v.dtype)
    return F.binary_cross_entropy_with_logits(v[:, 1:], t[:, 1:], reduction="none").mean(1)


def image_loss(logits: torch.Tensor, tags: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Image-level branch, Eq. 1-2: global average pooling, sigmoid, binary
    cross-entropy averaged over the C foreground classes.

    Computed with ``binary_cross_entropy_with_logits`` (log-sigmoid form), so it
    is finite for any finite logits.  The background channel and the background
    tag (column 0) are ignored: channel 0 gets zero gradient.

    Parameters
    ----------
    logits : torch.Tensor
        (N, C+1, H, W) floating logits (half inputs are pooled in float32).
    tags : torch.Tensor
        (N, C+1) bool or float in [0, 1]: l_c, class c present in the image.
    reduction : {"mean", "paper", "sum", "none"}
        Over the batch: "mean" averages the per-sample losses, "paper" (= "sum",
        Eq. 5) sums them, "none" returns them.

    Returns
    -------
    torch.Tensor
        0-dim float tensor, or (N,) for "none".
    """
    if logits.dim() < 3 or logits.shape[1] < 2:
        raise ValueError(f"logits must be (N, C+1, H, W) with C >= 1, got {tuple(logits.shape)}")
    if tuple(tags.shape) != tuple(logits.shape[:2]):
        raise ValueError(f"tags must be (N, C+1) = {tuple(logits.shape[:2])}, got {tuple(tags.shape)}")
    per = _image_terms(_pool(logits), tags)
    if reduction == "none":
        return per
    if reduction in ("paper", "sum"):
        return per.sum()
    if reduction == "mean":
        return per.mean() if per.numel() else per.sum()
    raise ValueError(f"unknown reduction {reduction!r}: 'mean', 'paper', 'sum' or 'none'")


# ----------------------------------------------------------------------------- class-set targets

class ClassSetTarget(NamedTuple):
    """A batch's pixel targets for any class count (the loader's ``bits``).

    ``labels`` (N, H, W) int64: class id ``c >= 0``; ``-1`` ignored; ``-2 - j`` a soft pixel
    whose classes are ``sets[offsets[j]:offsets[j+1]]`` (two or more, ascending).
    ``sets`` (K,) and ``offsets`` (S+1,) int64: the batch's class-set table."""
    labels: torch.Tensor
    sets: torch.Tensor
    offsets: torch.Tensor

    def to(self, device, non_blocking: bool = False) -> "ClassSetTarget":
        return ClassSetTarget(*(t.to(device, non_blocking=non_blocking) for t in self))

    @property
    def shape(self):
        return self.labels.shape

    def masked_ignore(self, rows: torch.Tensor) -> "ClassSetTarget":
        """The same with every pixel of the samples ``rows`` (an (N,) bool) ignored."""
        return ClassSetTarget(self.labels.masked_fill(rows.view((-1,) + (1,) * (self.labels.dim() - 1)), -1),
                              self.sets, self.offsets)


def bits_to_target(bits: torch.Tensor, num_classes: int) -> ClassSetTarget:
    """Int64 label bitsets (N, H, W) (<= 64 classes, bit 63 the sign bit) -> :class:`ClassSetTarget`:
    one bit -> that class, no bit -> -1, several -> a class set (numbered by bitset value)."""
    bits = _as_bits(bits)
    _check_bits(bits, num_classes)
    labels = torch.full(bits.shape, -1, dtype=torch.int64, device=bits.device)
    nz = bits != 0
    multi = nz & ((bits & (bits - 1)) != 0)
    single = nz & ~multi
    if bool(single.any()):
        # a power of two (bit 63: -2**63) is exact in float64, and so is its log2
        labels[single] = bits[single].double().abs().log2().round().long()
    sets = torch.zeros(0, dtype=torch.int64, device=bits.device)
    offsets = torch.zeros(1, dtype=torch.int64, device=bits.device)
    if bool(multi.any()):
        uniq, inv = torch.unique(bits[multi], return_inverse=True)
        planes = _bit_planes(uniq, num_classes)
        member = torch.stack([_bit(planes, c) for c in range(num_classes)], dim=1)  # (U, C+1)
        rows, cols = member.nonzero(as_tuple=True)   # row-major: classes ascending within a set
        sets = cols
        offsets = torch.cat([offsets, torch.cumsum(member.sum(1), 0)])
        labels[multi] = -2 - inv
    return ClassSetTarget(labels, sets, offsets)


def target_bits(target: ClassSetTarget) -> torch.Tensor:
    """The inverse of :func:`bits_to_target`: int64 bitsets (0 = ignored) of a target whose
    classes are all below 64 (for tests and format 2 comparisons)."""
    labels, sets, offsets = target
    if len(sets) and int(sets.max()) >= 64 or labels.numel() and int(labels.max()) >= 64:
        raise ValueError("a bitset holds classes 0..63 only")
    one = torch.ones((), dtype=torch.int64, device=labels.device)
    set_bits = torch.zeros(len(offsets) - 1, dtype=torch.int64, device=labels.device)
    if len(sets):
        owner = torch.repeat_interleave(torch.arange(len(offsets) - 1, device=labels.device), offsets.diff())
        set_bits.index_add_(0, owner, one << sets)   # distinct bits: adding is or-ing
    out = torch.where(labels >= 0, one << labels.clamp_min(0), torch.zeros_like(labels))
    soft = labels <= -2
    out[soft] = set_bits[-2 - labels[soft]]
    return out


def _soft_pairs(target: ClassSetTarget):
    """The soft pixels' (pixel, class) pairs: flat pixel index into (N, H, W), class id, the pair's
    soft pixel (index into the soft pixels), each soft pixel's flat index and set size."""
    labels = target.labels
    soft_pix = (labels.reshape(-1) <= -2).nonzero(as_tuple=True)[0]
    j = -2 - labels.reshape(-1)[soft_pix]
    starts, lens = target.offsets[j], target.offsets[j + 1] - target.offsets[j]
    owner = torch.repeat_interleave(torch.arange(len(soft_pix), device=labels.device), lens)
    within = torch.arange(len(owner), device=labels.device) - torch.repeat_interleave(torch.cumsum(lens, 0) - lens,
                                                                                      lens)
    cls = target.sets[starts[owner] + within]
    return soft_pix[owner], cls, owner, soft_pix, lens


class _ClassSetNLL(torch.autograd.Function):
    """Per-pixel ``-(1/|s_i|) sum_{c in s_i} log softmax(f_i)_c`` (0 where ignored) and |s_i|.
    Gradient: ``softmax(f_i)_c - [c in s_i]/|s_i|`` on labelled pixels, exactly 0 on ignored ones."""

    @staticmethod
    def forward(ctx, logits, labels, sets, offsets):
        dtype = torch.promote_types(logits.dtype, torch.float32)
        logp = torch.log_softmax(logits, dim=1, dtype=dtype)  # the one extra (N, C+1, H, W) tensor
        n, c1 = logits.shape[:2]
        single = labels >= 0
        idx = labels.clamp_min(0).unsqueeze(1)
        loss = torch.where(single, -logp.gather(1, idx).squeeze(1), 0.0)
        count = single.to(torch.int16)
        pairs = None
        if bool((labels <= -2).any()):
            pix, cls, owner, soft_pix, lens = _soft_pairs(ClassSetTarget(labels, sets, offsets))
            hw = labels[0].numel()
            lp = logp.view(n, c1, hw)
            vals = lp[pix // hw, cls, pix % hw]
            acc = torch.zeros(len(soft_pix), dtype=dtype, device=logits.device).index_add_(0, owner, vals)
            inv = 1.0 / lens.to(dtype)
            loss.view(-1)[soft_pix] = -acc * inv
            count.view(-1)[soft_pix] = lens.to(torch.int16)
            pairs = (pix, cls, inv[owner])
        ctx.pairs = pairs
        ctx.save_for_backward(logp, labels)
        ctx.in_dtype = logits.dtype
        ctx.mark_non_differentiable(count)
        return loss, count

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss, grad_count):
        logp, labels = ctx.saved_tensors
        g = grad_loss.to(logp.dtype)
        grad = logp.exp()
        grad.mul_(torch.where(labels != -1, g, 0.0).unsqueeze(1))
        single = labels >= 0
        grad.scatter_add_(1, labels.clamp_min(0).unsqueeze(1), torch.where(single, -g, 0.0).unsqueeze(1))
        if ctx.pairs is not None:
            pix, cls, w = ctx.pairs
            n, c1 = grad.shape[:2]
            hw = labels[0].numel()
            grad.view(n, c1, hw).index_put_((pix // hw, cls, pix % hw), -g.reshape(-1)[pix] * w, accumulate=True)
        return grad.to(ctx.in_dtype), None, None, None


def _as_target(target) -> ClassSetTarget:
    if isinstance(target, tuple) and len(target) == 3:   # a ClassSetTarget, or its three tensors
        return ClassSetTarget(*(t if t.dtype == torch.int64 else t.to(torch.int64) for t in target))
    raise TypeError(f"the target must be a ClassSetTarget (labels, sets, offsets), got {type(target).__name__} "
                    "(int64 bitsets: convert them with bits_to_target(bits, num_classes))")


def _target_terms(logits: torch.Tensor, target):
    """Validated per-pixel losses (N, H, W) and set sizes |s_i| (N, H, W) int16."""
    if not logits.dtype.is_floating_point:
        raise TypeError(f"logits must be floating point, got {logits.dtype}")
    if logits.dim() < 3 or logits.shape[1] < 2:
        raise ValueError(f"logits must be (N, C+1, H, W) with C >= 1, got {tuple(logits.shape)}")
    c1 = logits.shape[1]
    expected = (logits.shape[0],) + tuple(logits.shape[2:])
    target = _as_target(target).to(logits.device)
    labels = target.labels
    if tuple(labels.shape) != expected:
        raise ValueError(f"labels must be (N, H, W) = {expected}, got {tuple(labels.shape)}")
    if labels.numel():
        lo, hi = (int(v) for v in torch.aminmax(labels))
        if hi >= c1:
            raise ValueError(f"labels have class {hi}, at or above the {c1} logit channels")
        if lo < -1 - (len(target.offsets) - 1):
            raise ValueError(f"labels name class set {-2 - lo}, the target has {len(target.offsets) - 1}")
    if len(target.sets) and (int(target.sets.max()) >= c1 or int(target.sets.min()) < 0):
        raise ValueError(f"a class set has a class outside 0..{c1 - 1} (the logit channels)")
    return _ClassSetNLL.apply(logits, labels.contiguous(), target.sets, target.offsets)


def _reduce(loss, count, num_classes: int, reduction: str):
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "paper":
        return loss.sum() / (num_classes - 1)
    if reduction == "mean":
        return loss.sum() / (count > 0).sum().clamp_min(1)
    raise ValueError(f"unknown reduction {reduction!r}: 'mean', 'paper', 'sum' or 'none'")


def class_set_loss(logits: torch.Tensor, target, reduction: str = "mean") -> torch.Tensor:
    """Box branch (Eq. 3) and pixel branch (Eq. 4) from class-id targets, any class count.

    Per pixel with a class set s_i the loss is ``-(1/|s_i|) sum_{c in s_i} log softmax(f_i)_c``:
    one class gives the cross-entropy, a soft pixel the mean of its classes' terms.  Ignored
    pixels contribute 0 and get exactly zero gradient.  Stable for any finite logits (one
    log-softmax).

    Parameters
    ----------
    logits : torch.Tensor
        (N, C+1, H, W) floating logits; half inputs are computed in float32.
    target : ClassSetTarget
        The pixel targets (int64 bitsets: convert them with :func:`bits_to_target`).
    reduction : {"mean", "paper", "sum", "none"}
        * "mean": mean over the labelled pixels of the whole batch; 0 (with a zero
          gradient) if no pixel is labelled.
        * "paper": exactly Eq. 3 per image, the sum over pixels times 1/C
          (C = num_classes - 1 foreground classes), summed over the batch (Eq. 5).
        * "sum": the plain sum over all pixels of the batch (no 1/C).
        * "none": the (N, H, W) per-pixel losses, 0 on ignored pixels.

    Returns
    -------
    torch.Tensor
        0-dim float tensor (float32, or float64 for float64 logits), or (N, H, W) for "none".

    Raises
    ------
    TypeError
        If ``target`` is not a :class:`ClassSetTarget` (e.g. a bitset tensor) or the logits
        are not floating point.
    ValueError
        On a shape mismatch, a class at or above ``C+1`` or an unknown class set.
    """
    loss, count = _target_terms(logits, target)
    return _reduce(loss, count, logits.shape[1], reduction)


# ----------------------------------------------------------------------------- all three

def mixseg_loss(logits: torch.Tensor, bits: torch.Tensor | None, kind: torch.Tensor, tags: torch.Tensor | None,
                reduction: str = "mean"):
    """The annotation-specific loss of a batch whose samples may be of any kind.

    Each sample goes to its branch: kind 0 (pixel) and 1 (box) to
    :func:`class_set_loss`, kind 2 (image) to :func:`image_loss` (its bits are
    ignored, whatever they hold).  No per-kind copy of the logits is made.

    Reductions (the choice, documented):

    * "paper" (Eq. 5): the sum of the per-sample paper losses -- per pixel/box
      sample the pixel sum times 1/C (Eq. 3/4), per image sample Eq. 2.  With
      batch 1 this is exactly the paper.
    * "mean" (practical, default): each branch's loss is averaged over its
      samples -- pixel and box branches take the mean over the labelled pixels
      pooled over the branch's samples (``class_set_loss(..., "mean")`` on them),
      the image branch the mean of its per-sample losses -- and the total is
      ``sum_b (N_b / N) * L_b``.  A single-kind batch thus gives exactly that
      branch's mean loss, and a mixed batch the average of per-sample losses
      (exactly so when each branch's samples have equal labelled-pixel counts,
      e.g. one sample per branch or fully labelled crops of one size;
      otherwise pixels are pooled within a branch, like ``cross_entropy`` with
      ``ignore_index``).  A branch whose samples have no labelled pixel
      contributes 0 with a zero gradient.

    Parameters
    ----------
    logits : torch.Tensor
        (N, C+1, H, W) floating logits.
    bits : ClassSetTarget or None
        The pixel targets (:class:`ClassSetTarget`, the loader's ``bits``); rows of image
        samples are ignored.  May be None when no sample is of kind pixel or box.  A bitset
        tensor raises TypeError (convert it with :func:`bits_to_target`).
    kind : torch.Tensor
        (N,) integer kinds: 0 pixel, 1 box, 2 image.
    tags : torch.Tensor or None
        (N, C+1) bool or float image-level labels; only rows of image samples
        are used.  May be None when no sample is of kind image.
    reduction : {"mean", "paper"}

    Returns
    -------
    total : torch.Tensor
        0-dim float tensor to backpropagate.
    parts : dict[str, torch.Tensor]
        Detached 0-dim tensors, one per branch present in the batch (keys among
        "pixel", "box", "image"): the branch's mean loss ("mean") or the sum of
        its samples' losses ("paper"), for logging.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}: 'mean' or 'paper'")
    if logits.dim() < 3 or logits.shape[1] < 2:
        raise ValueError(f"logits must be (N, C+1, H, W) with C >= 1, got {tuple(logits.shape)}")
    n = logits.shape[0]
    if kind.dim() != 1 or kind.shape[0] != n:
        raise ValueError(f"kind must be (N,) = ({n},), got {tuple(kind.shape)}")
    kind_cpu = kind.detach().to("cpu", torch.int64)
    if bool(((kind_cpu < 0) | (kind_cpu > 2)).any()):
        raise ValueError(f"kind must be 0 (pixel), 1 (box) or 2 (image), got {kind_cpu.tolist()}")
    kind = kind_cpu.to(logits.device)
    counts = torch.bincount(kind_cpu, minlength=3).tolist()
    dtype = torch.promote_types(logits.dtype, torch.float32)

    branch = {}
    if counts[KIND_PIXEL] or counts[KIND_BOX]:
        if bits is None:
            raise ValueError("bits are required when the batch has pixel or box samples")
        target = _as_target(bits).to(logits.device)
        if counts[KIND_IMAGE]:  # image rows may hold anything: ignored
            target = target.masked_ignore(kind == KIND_IMAGE)
        loss, count = _target_terms(logits, target)
        per_sum = loss.flatten(1).sum(1)  # (N,)
        per_count = (count > 0).flatten(1).sum(1)
        for k in (KIND_PIXEL, KIND_BOX):
            if counts[k]:
                sel = kind == k
                s = per_sum[sel].sum()
                branch[BRANCHES[k]] = (s / (logits.shape[1] - 1) if reduction == "paper"
                                       else s / per_count[sel].sum().clamp_min(1))
    if counts[KIND_IMAGE]:
        if tags is None:
            raise ValueError("tags are required when the batch has image samples")
        if tuple(tags.shape) != tuple(logits.shape[:2]):
            raise ValueError(f"tags must be (N, C+1) = {tuple(logits.shape[:2])}, got {tuple(tags.shape)}")
        sel = kind == KIND_IMAGE
        per = _image_terms(_pool(logits)[sel], tags.to(logits.device)[sel])
        branch["image"] = per.sum() if reduction == "paper" else per.mean()

    terms = [branch[name] if reduction == "paper" else branch[name] * (counts[k] / n)
             for k, name in enumerate(BRANCHES) if name in branch]
    total = sum(terms[1:], terms[0]) if terms else (logits.sum() * 0).to(dtype)  # empty batch: 0
    return total, {name: v.detach() for name, v in branch.items()}

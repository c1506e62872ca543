"""Segmentation networks: output geometry, torchvision key layout, ImageNet loading, gradients.

The torchvision state dicts are written by the tests themselves from torchvision's
published layout (key names and shapes hard-coded below); torchvision is not used.
The big networks run on tiny inputs, at most one real forward each; size sweeps run
on the ``meta`` device (shapes only, no arithmetic).
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from train.networks import (ARCHS, SMALL_PARAMS_RANGE, DeepLabASPP, bilinear_kernel, build_model,
                            count_parameters, load_imagenet_weights)

NUM_CLASSES = 6  # C = 5 foreground classes + background

# torchvision vgg16().features: (index, out_channels, in_channels) of every 3x3 conv;
# every conv is followed by a ReLU at index + 1, max pools at 4, 9, 16, 23, 30.
TV_VGG16_CONVS = [(0, 64, 3), (2, 64, 64), (5, 128, 64), (7, 128, 128), (10, 256, 128), (12, 256, 256),
                  (14, 256, 256), (17, 512, 256), (19, 512, 512), (21, 512, 512), (24, 512, 512),
                  (26, 512, 512), (28, 512, 512)]
TV_VGG16_POOLS = [4, 9, 16, 23, 30]
TV_VGG16_FEATURE_PARAMS = 14_714_688  # 138,357,544 total minus the three Linear layers
TV_RESNET_BACKBONE_PARAMS = {50: 23_508_032, 101: 42_500_160}  # totals minus fc (2,049,000)
TV_RESNET_STATE_KEYS = {50: 320, 101: 626}  # len(resnetXX().state_dict()), num_batches_tracked included


def tv_vgg16_shapes():
    """Key -> shape of torchvision's vgg16 state dict."""
    shapes = {}
    for i, out, inp in TV_VGG16_CONVS:
        shapes[f"features.{i}.weight"] = (out, inp, 3, 3)
        shapes[f"features.{i}.bias"] = (out,)
    for i, out, inp in [(0, 4096, 25088), (3, 4096, 4096), (6, 1000, 4096)]:
        shapes[f"classifier.{i}.weight"] = (out, inp)
        shapes[f"classifier.{i}.bias"] = (out,)
    return shapes


def tv_resnet_shapes(depth):
    """Key -> shape of torchvision's resnet50/101 state dict (Bottleneck, expansion 4)."""
    blocks = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3]}[depth]

    def bn(prefix, c):
        return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
                f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()}

    shapes = {"conv1.weight": (64, 3, 7, 7), **bn("bn1", 64)}
    inplanes = 64
    for li, (width, n) in enumerate(zip([64, 128, 256, 512], blocks), start=1):
        for b in range(n):
            p = f"layer{li}.{b}"
            shapes[f"{p}.conv1.weight"] = (width, inplanes, 1, 1)
            shapes.update(bn(f"{p}.bn1", width))
            shapes[f"{p}.conv2.weight"] = (width, width, 3, 3)
            shapes.update(bn(f"{p}.bn2", width))
            shapes[f"{p}.conv3.weight"] = (width * 4, width, 1, 1)
            shapes.update(bn(f"{p}.bn3", width * 4))
            if b == 0:
                shapes[f"{p}.downsample.0.weight"] = (width * 4, inplanes, 1, 1)
                shapes.update(bn(f"{p}.downsample.1", width * 4))
            inplanes = width * 4
    shapes["fc.weight"] = (1000, 2048)
    shapes["fc.bias"] = (1000,)
    return shapes


def random_state(shapes, seed):
    """A state dict of random tensors with the given shapes (int64 counters for num_batches_tracked)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, s in shapes.items():
        if k.endswith("num_batches_tracked"):
            out[k] = torch.tensor(7)
        elif k.endswith("running_var"):
            out[k] = torch.rand(s, generator=g) + 0.5
        else:
            out[k] = torch.rand(s, generator=g) - 0.5
    return out


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


@pytest.fixture(scope="module")
def vgg16_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "vgg16-imagenet.pth"
    state = random_state(tv_vgg16_shapes(), seed=1)
    torch.save(state, path)
    return path, state


def meta_model(arch):
    with torch.device("meta"):
        return build_model(arch, NUM_CLASSES).eval()


def test_torchvision_layout_facts():
    vgg = tv_vgg16_shapes()
    assert vgg["features.28.weight"] == (512, 512, 3, 3)
    assert vgg["classifier.0.weight"] == (4096, 25088) == (4096, 512 * 7 * 7)
    assert sum(numel(s) for k, s in vgg.items() if k.startswith("features.")) == TV_VGG16_FEATURE_PARAMS
    assert sum(numel(s) for s in vgg.values()) == 138_357_544
    for depth in (50, 101):
        res = tv_resnet_shapes(depth)
        assert len(res) == TV_RESNET_STATE_KEYS[depth]
        learned = {k: s for k, s in res.items() if not k.endswith(("running_mean", "running_var", "tracked"))}
        assert sum(numel(s) for k, s in learned.items() if not k.startswith("fc.")) == TV_RESNET_BACKBONE_PARAMS[depth]
    res = tv_resnet_shapes(50)
    assert res["layer4.2.conv3.weight"] == (2048, 512, 1, 1)
    assert res["layer1.0.downsample.0.weight"] == (256, 64, 1, 1)
    assert res["layer3.0.downsample.0.weight"] == (1024, 512, 1, 1)
    assert "layer1.1.downsample.0.weight" not in res


@pytest.mark.parametrize("arch", ["fcn32s", "fcn16s", "fcn8s", "deeplab_largefov"])
def test_vgg16_features_match_torchvision(arch):
    model = meta_model(arch)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items() if k.startswith("features.")}
    tv = {k: s for k, s in tv_vgg16_shapes().items() if k.startswith("features.")}
    assert ours == tv
    assert len(model.features) == 31
    for i, _, _ in TV_VGG16_CONVS:
        assert isinstance(model.features[i], nn.Conv2d) and isinstance(model.features[i + 1], nn.ReLU)
    for i in TV_VGG16_POOLS:
        assert isinstance(model.features[i], nn.MaxPool2d)
    if arch.startswith("fcn"):
        assert tuple(model.fc6.weight.shape) == (4096, 512, 7, 7)
        assert tuple(model.fc7.weight.shape) == (4096, 4096, 1, 1)
    else:
        assert model.fc6.dilation == (12, 12) and model.fc6.out_channels == 1024
        assert [model.features[i].dilation for i in (24, 26, 28)] == [(2, 2)] * 3
        assert [model.features[i].stride for i in (4, 9, 16, 23, 30)] == [2, 2, 2, 1, 1]


@pytest.mark.parametrize("depth", [50, 101])
def test_resnet_backbone_matches_torchvision(depth):
    model = meta_model(f"deeplab_aspp_resnet{depth}")
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.startswith("aspp.")}
    tv = {k: s for k, s in tv_resnet_shapes(depth).items() if not k.startswith("fc.")}
    assert ours == tv
    # replace_stride_with_dilation=[False, True, True]: stride 2 only in layer2; the first
    # block of a dilated layer keeps the previous dilation (torchvision's _make_layer)
    assert model.layer2[0].conv2.stride == (2, 2)
    assert [b.conv2.dilation[0] for b in model.layer3] == [1] + [2] * (len(model.layer3) - 1)
    assert [b.conv2.dilation[0] for b in model.layer4] == [2, 4, 4]
    assert all(b.conv2.stride == (1, 1) for b in [*model.layer3, *model.layer4])
    assert model.layer3[0].downsample[0].stride == (1, 1)
    assert [c.dilation[0] for c in model.aspp] == [6, 12, 18, 24]


@pytest.mark.parametrize("arch", ARCHS)
def test_forward_gives_logits_at_input_size(arch):
    torch.manual_seed(0)
    model = build_model(arch, NUM_CLASSES).eval()
    # FCN pads conv1_1 by 100, so even a tiny input costs a 220x230 VGG pass
    shape = (2, 3, 67, 93) if arch == "small" else (1, 3, 23, 31) if arch.startswith("fcn") else (1, 3, 37, 29)
    with torch.no_grad():
        out = model(torch.randn(shape))
    assert out.shape == (shape[0], NUM_CLASSES, shape[2], shape[3])
    assert torch.isfinite(out).all()
    if arch.startswith("fcn"):
        assert (out == 0).all()  # FCN's zero-initialised score layers
    else:
        assert out.std() > 0


@pytest.mark.parametrize("arch", ARCHS)
def test_output_size_for_any_input_size(arch):
    model = meta_model(arch)
    for h, w in [(1, 1), (5, 2), (31, 33), (64, 64), (67, 93), (97, 255), (120, 160)]:
        out = model(torch.empty(2, 3, h, w, device="meta"))
        assert tuple(out.shape) == (2, NUM_CLASSES, h, w), (h, w)


def test_small_net_parameter_count_in_documented_range():
    assert SMALL_PARAMS_RANGE == (200_000, 1_000_000)
    for classes in (2, 11, 21):
        n = count_parameters(build_model("small", classes))
        assert 200_000 <= n <= 1_000_000, n


def test_small_net_is_differentiable_everywhere():
    torch.manual_seed(0)
    model = build_model("small", NUM_CLASSES).train()
    x = torch.randn(2, 3, 41, 57)
    target = torch.randint(0, NUM_CLASSES, (2, 41, 57))
    F.cross_entropy(model(x), target).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_largefov_is_differentiable_everywhere():
    torch.manual_seed(0)
    model = build_model("deeplab_largefov", NUM_CLASSES).train()
    x = torch.randn(1, 3, 37, 29)
    F.cross_entropy(model(x), torch.randint(0, NUM_CLASSES, (1, 37, 29))).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_fcn_upsampling_is_bilinear_final_layer_fixed():
    model = meta_model("fcn8s")
    assert model.upscore2.weight.requires_grad and model.upscore_pool4.weight.requires_grad
    assert not model.upscore8.weight.requires_grad
    assert "upscore8.weight" in model.state_dict()
    k = bilinear_kernel(3, 4)
    profile = torch.tensor([0.25, 0.75, 0.75, 0.25])
    assert torch.allclose(k[1, 1], profile[:, None] * profile[None, :])
    assert k[0, 1].abs().sum() == 0 and k[2, 0].abs().sum() == 0
    # x2 transposed conv with this kernel reproduces linear interpolation inside the map
    ramp = torch.arange(6.0).repeat(6, 1)[None, None]
    up = F.conv_transpose2d(ramp, bilinear_kernel(1, 4), stride=2)
    row = up[0, 0, 5, 2:-2]
    assert torch.allclose(row[1:] - row[:-1], torch.full_like(row[1:], 0.5))


def test_vgg16_weights_land_in_fcn_with_fc_reshape(vgg16_file):
    path, state = vgg16_file
    model = build_model("fcn32s", NUM_CLASSES)
    report = load_imagenet_weights(model, path)
    own = model.state_dict()
    for k, v in state.items():
        if k.startswith("features."):
            assert torch.equal(own[k], v), k
    assert torch.equal(own["fc6.weight"], state["classifier.0.weight"].view(4096, 512, 7, 7))
    assert torch.equal(own["fc6.bias"], state["classifier.0.bias"])
    assert torch.equal(own["fc7.weight"][:, :, 0, 0], state["classifier.3.weight"])
    # the reshape is the right one: fc6 on a 7x7 pool5 map equals Linear on its flattening
    pool5 = torch.randn(1, 512, 7, 7)
    with torch.no_grad():
        conv = model.fc6(pool5).flatten()
    lin = F.linear(pool5.flatten(1), state["classifier.0.weight"], state["classifier.0.bias"]).flatten()
    assert torch.allclose(conv, lin, atol=1e-3, rtol=1e-4)
    assert report.missing == [] and report.unexpected == []
    assert sorted(report.skipped) == ["classifier.6.bias", "classifier.6.weight"]
    assert len(report.loaded) == 26 + 4
    assert model.score_fr.weight.abs().sum() == 0  # heads untouched


def test_build_model_pretrained_largefov_skips_fc(vgg16_file):
    path, state = vgg16_file
    torch.manual_seed(0)
    fresh_fc6 = build_model("deeplab_largefov", NUM_CLASSES).fc6.weight.clone()
    torch.manual_seed(0)
    model = build_model("deeplab_largefov", NUM_CLASSES, pretrained=str(path))
    assert torch.equal(model.features[28].weight, state["features.28.weight"])
    assert torch.equal(model.features[0].bias, state["features.0.bias"])
    assert torch.equal(model.fc6.weight, fresh_fc6)
    report = load_imagenet_weights(model, path)
    assert sorted(report.skipped) == sorted(k for k in state if k.startswith("classifier."))
    assert report.missing == []


def test_resnet50_weights_land_and_bn_freezes(tmp_path):
    shapes = tv_resnet_shapes(50)
    # older torchvision files carry no num_batches_tracked; that is not "missing"
    state = random_state({k: s for k, s in shapes.items() if not k.endswith("num_batches_tracked")}, seed=2)
    state["layer9.0.conv1.weight"] = torch.zeros(1)
    path = tmp_path / "resnet50.pth"
    torch.save(state, path)
    model = build_model("deeplab_aspp_resnet50", NUM_CLASSES)
    aspp_before = model.aspp[2].weight.clone()
    report = load_imagenet_weights(model, path)
    own = model.state_dict()
    for k, v in state.items():
        if not k.startswith(("fc.", "layer9")):
            assert torch.equal(own[k], v), k
    assert torch.equal(model.aspp[2].weight, aspp_before)
    assert sorted(report.skipped) == ["fc.bias", "fc.weight"]
    assert report.unexpected == ["layer9.0.conv1.weight"] and report.missing == []
    assert not model.freeze_bn

    model = build_model("deeplab_aspp_resnet50", NUM_CLASSES, pretrained=path)
    assert torch.equal(model.layer4[2].conv3.weight, state["layer4.2.conv3.weight"])
    assert torch.equal(model.layer1[0].downsample[1].running_var, state["layer1.0.downsample.1.running_var"])
    model.train()
    assert model.freeze_bn and model.training and model.aspp.training
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 53 and not any(m.training or m.weight.requires_grad for m in bns)


def test_missing_backbone_keys_are_reported(tmp_path):
    path = tmp_path / "part.pth"
    torch.save({"conv1.weight": torch.ones(64, 3, 7, 7)}, path)
    model = meta_model("deeplab_aspp_resnet50")
    report = load_imagenet_weights(model, path)
    assert report.loaded == ["conv1.weight"]
    assert "layer4.2.bn3.running_var" in report.missing and "bn1.weight" in report.missing
    assert not any(k.startswith("aspp") or k.endswith("num_batches_tracked") for k in report.missing)


def test_wrong_shape_raises_naming_file_and_key_and_loads_nothing(tmp_path):
    path = tmp_path / "bad-vgg.pth"
    good = torch.ones(64, 64, 3, 3)
    torch.save({"features.2.weight": good, "features.0.weight": torch.zeros(64, 3, 5, 5)}, path)
    model = build_model("deeplab_largefov", NUM_CLASSES)
    with pytest.raises(ValueError, match=r"bad-vgg\.pth.*features\.0\.weight"):
        load_imagenet_weights(model, path)
    assert not torch.equal(model.features[2].weight, good)

    torch.save({"classifier.0.weight": torch.zeros(4096, 512 * 6 * 6)}, path)
    with pytest.raises(ValueError, match=r"bad-vgg\.pth.*classifier\.0\.weight"):
        load_imagenet_weights(meta_model("fcn8s"), path)

    path = tmp_path / "bad-resnet.pth"
    torch.save({"layer4.2.conv3.weight": torch.zeros(2048, 512, 3, 3)}, path)
    with pytest.raises(ValueError, match=r"bad-resnet\.pth.*layer4\.2\.conv3\.weight"):
        build_model("deeplab_aspp_resnet50", NUM_CLASSES, pretrained=path)


def test_bad_requests_raise(tmp_path):
    with pytest.raises(ValueError, match="unknown arch"):
        build_model("fcn4s", NUM_CLASSES)
    with pytest.raises(ValueError, match="small"):
        build_model("small", NUM_CLASSES, pretrained="vgg16.pth")
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        build_model("deeplab_largefov", NUM_CLASSES, pretrained=tmp_path / "absent.pth")
    path = tmp_path / "notastate.pth"
    torch.save([torch.ones(2)], path)
    with pytest.raises(ValueError, match="not a state dict"):
        load_imagenet_weights(meta_model("deeplab_largefov"), path)
    with pytest.raises(ValueError, match="no ImageNet backbone"):
        load_imagenet_weights(build_model("small", NUM_CLASSES), path)
    assert isinstance(meta_model("deeplab_aspp_resnet101"), DeepLabASPP)


def test_every_arch_the_config_accepts_builds():
    import typing

    from pipeline.core import config
    assert set(typing.get_args(typing.get_type_hints(config.TrainConfig)["arch"])) == set(config.ARCHS)
    for arch in config.ARCHS:
        model = meta_model(arch)
        assert count_parameters(model) > 0
        assert tuple(model(torch.empty(1, 3, 9, 11, device="meta")).shape) == (1, NUM_CLASSES, 9, 11), arch
    with pytest.raises(ValueError, match=", ".join(config.ARCHS)):
        build_model("resnet", NUM_CLASSES)

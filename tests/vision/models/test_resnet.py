"""distnn.vision.models.resnet: torchvision's state_dict keys and shapes and module
tree (checked against torchvision, and against the documented architecture
without it), the same outputs and gradients given torchvision's weights, output
shapes for CIFAR- and ImageNet-sized inputs, and the refusal of pretrained weights."""

import numpy as np
import pytest

import distnn
from distnn import nn
from distnn.vision import models

# The documented architecture: blocks per stage, block type, and so the state_dict size
# (per BatchNorm 5 entries, per conv 1, fc 2).
ARCHITECTURES = {"resnet18": ([2, 2, 2, 2], "basic", 122), "resnet34": ([3, 4, 6, 3], "basic", 218),
                 "resnet50": ([3, 4, 6, 3], "bottleneck", 320)}


def shapes(state_dict):
    return {k: tuple(v.shape) for k, v in state_dict.items()}


@pytest.fixture(scope="module")
def built():
    """One of each model, shared: building resnet50 draws 25M initial weights."""
    distnn.manual_seed(0)
    return {name: getattr(models, name)() for name in ARCHITECTURES}


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_documented_architecture(built, name):
    layers, kind, entries = ARCHITECTURES[name]
    sd = shapes(built[name].state_dict())
    assert len(sd) == entries
    assert sd["conv1.weight"] == (64, 3, 7, 7) and sd["bn1.num_batches_tracked"] == ()
    expansion = 1 if kind == "basic" else 4
    assert sd["fc.weight"] == (1000, 512 * expansion) and sd["fc.bias"] == (1000,)
    for stage, (blocks, planes) in enumerate(zip(layers, [64, 128, 256, 512]), start=1):
        last = f"layer{stage}.{blocks - 1}"
        assert f"{last}.conv1.weight" in sd and f"layer{stage}.{blocks}.conv1.weight" not in sd
        if kind == "basic":
            assert sd[f"{last}.conv2.weight"] == (planes, planes, 3, 3)
        else:
            assert sd[f"{last}.conv2.weight"] == (planes, planes, 3, 3)
            assert sd[f"{last}.conv3.weight"] == (planes * 4, planes, 1, 1)
        has_downsample = stage > 1 or kind == "bottleneck"
        assert (f"layer{stage}.0.downsample.0.weight" in sd) == has_downsample
        assert f"layer{stage}.1.downsample.0.weight" not in sd


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_state_dict_and_module_tree_are_torchvisions(built, torchvision, name):
    theirs = getattr(torchvision.models, name)()
    ours = built[name]
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert shapes(ours.state_dict()) == shapes(theirs.state_dict())
    assert repr(ours) == repr(theirs)


def load_torch_weights(model, torch_model):
    model.load_state_dict({k: distnn.from_numpy(v.detach().numpy().copy())
                           for k, v in torch_model.state_dict().items()})


def test_same_outputs_and_gradients_as_torchvision(torchvision):
    import torch
    torch.manual_seed(0)
    # float64: at 32x32 the last BatchNorms normalise over 2 values, which magnifies rounding
    theirs = torchvision.models.resnet18(num_classes=10).double()
    ours = models.resnet18(num_classes=10).double()
    load_torch_weights(ours, theirs)
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32))
    # train mode: batch statistics, running stats updated, gradients through every block
    out_t = theirs(torch.from_numpy(x))
    out_t.square().mean().backward()
    out_d = ours(distnn.from_numpy(x))
    out_d.square().mean().backward()
    np.testing.assert_allclose(out_d.detach().numpy(), out_t.detach().numpy(), rtol=1e-7, atol=1e-9)
    for name in ("conv1.weight", "layer1.0.bn1.weight", "layer3.0.downsample.0.weight", "fc.weight"):
        ours_grad = dict(ours.named_parameters())[name].grad.numpy()
        theirs_grad = dict(theirs.named_parameters())[name].grad.numpy()
        np.testing.assert_allclose(ours_grad, theirs_grad, rtol=1e-6, atol=1e-9 * np.abs(theirs_grad).max(),
                                   err_msg=name)
    np.testing.assert_allclose(ours.layer4[1].bn2.running_var.numpy(), theirs.layer4[1].bn2.running_var.numpy(),
                               rtol=1e-7, atol=1e-9)
    # eval mode: running statistics
    ours.eval(), theirs.eval()
    with torch.no_grad():
        expected = theirs(torch.from_numpy(x)).numpy()
    with distnn.no_grad():
        np.testing.assert_allclose(ours(distnn.from_numpy(x)).numpy(), expected, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("size, batch", [(32, 2), (224, 1)])
def test_resnet18_output_shape(size, batch):
    model = models.resnet18(num_classes=10)
    model.eval()
    with distnn.no_grad():
        out = model(distnn.randn(batch, 3, size, size))
    assert out.shape == (batch, 10) and out.dtype == distnn.float32


def test_resnet50_tiny_forward(built):
    model = built["resnet50"]
    model.eval()
    with distnn.no_grad():
        assert model(distnn.randn(1, 3, 32, 32)).shape == (1, 1000)


def test_init_and_zero_init_residual():
    model = models.resnet18(zero_init_residual=True)
    assert all(float(block.bn2.weight.abs().sum()) == 0 for layer in (model.layer1, model.layer4) for block in layer)
    assert float(model.layer1[0].bn1.weight.min()) == 1.0 and float(model.bn1.bias.abs().max()) == 0.0
    std = float(model.conv1.weight.std())  # kaiming_normal_, fan_out = 64 * 7 * 7
    assert abs(std - (2 / (64 * 49)) ** 0.5) < 0.1 * std


def test_bottleneck_zero_init_and_norm_layer():
    model = models.resnet50(zero_init_residual=True, norm_layer=lambda c: nn.GroupNorm(2, c), num_classes=3)
    assert float(model.layer2[0].bn3.weight.abs().sum()) == 0
    assert isinstance(model.bn1, nn.GroupNorm) and not any("running_mean" in k for k in model.state_dict())
    assert model(distnn.randn(1, 3, 16, 16)).shape == (1, 3)


def test_grouped_and_wide_bottlenecks():
    resnext = models.ResNet(models.Bottleneck, [1, 1, 1, 1], groups=32, width_per_group=4)
    assert resnext.layer1[0].conv2.weight.shape == (128, 4, 3, 3) and resnext.layer1[0].conv2.groups == 32
    assert resnext.layer4[0].conv3.weight.shape == (2048, 1024, 1, 1)
    wide = models.ResNet(models.Bottleneck, [1, 1, 1, 1], width_per_group=128)
    assert wide.layer4[0].conv2.weight.shape == (1024, 1024, 3, 3)


@pytest.mark.parametrize("builder, expected", [
    ("resnet101", (models.Bottleneck, [3, 4, 23, 3], {})), ("resnet152", (models.Bottleneck, [3, 8, 36, 3], {})),
    ("resnext50_32x4d", (models.Bottleneck, [3, 4, 6, 3], {"groups": 32, "width_per_group": 4})),
    ("wide_resnet50_2", (models.Bottleneck, [3, 4, 6, 3], {"width_per_group": 128})),
])
def test_large_builders_configure_resnet(monkeypatch, builder, expected):
    """torchvision's configurations, without drawing 45-69M initial weights."""
    from distnn.vision.models import resnet
    monkeypatch.setattr(resnet, "ResNet", lambda block, layers, **kwargs: (block, layers, kwargs))
    assert getattr(models, builder)() == expected
    assert getattr(models, builder)(num_classes=5)[2]["num_classes"] == 5


@pytest.mark.parametrize("kwargs, shown", [
    ({"weights": "IMAGENET1K_V1"}, "weights='IMAGENET1K_V1'"),
    ({"weights": models.ResNet18_Weights.DEFAULT}, "weights=ResNet18_Weights.IMAGENET1K_V1"),
    ({"pretrained": True}, "pretrained=True"),
])
def test_pretrained_weights_are_refused(kwargs, shown):
    with pytest.raises(ValueError) as info:
        models.resnet18(**kwargs)
    msg = str(info.value)
    assert msg.startswith("resnet18: pretrained weights are not available in distnn") and shown in msg
    assert "weights=None" in msg and "load_state_dict" in msg


def test_weights_none_and_legacy_pretrained_false_are_accepted():
    assert isinstance(models.resnet18(weights=None, progress=False), models.ResNet)
    assert isinstance(models.resnet18(pretrained=False), models.ResNet)
    assert models.ResNet50_Weights.DEFAULT is models.ResNet50_Weights.IMAGENET1K_V2
    with pytest.raises(RuntimeError, match="resnet50: pretrained weights are not available"):
        models.ResNet50_Weights.DEFAULT.get_state_dict()


def test_weight_names_and_urls_are_torchvisions(torchvision):
    for name in ("ResNet18_Weights", "ResNet34_Weights", "ResNet50_Weights", "ResNet101_Weights",
                 "ResNet152_Weights", "ResNeXt50_32X4D_Weights", "Wide_ResNet50_2_Weights"):
        ours, theirs = getattr(models, name), getattr(torchvision.models, name)
        assert list(ours.__members__) == list(theirs.__members__), name
        assert [m.url for m in ours] == [m.url for m in theirs], name


def test_block_errors_are_torchvisions():
    with pytest.raises(ValueError, match="BasicBlock only supports groups=1 and base_width=64"):
        models.resnet18(groups=2)
    with pytest.raises(NotImplementedError, match="Dilation > 1 not supported in BasicBlock"):
        models.resnet18(replace_stride_with_dilation=[False, False, True])
    with pytest.raises(ValueError, match="replace_stride_with_dilation should be None or a 3-element tuple"):
        models.resnet50(replace_stride_with_dilation=[True])

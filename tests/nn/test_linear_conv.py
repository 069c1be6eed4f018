"""Linear, Bilinear, Identity and the convolution layers against PyTorch: repr,
default initialisation, outputs and gradients, and argument errors."""

import math

import numpy as np
import pytest

import distnn
import distnn.nn as nn
from layer_check import assert_uniform, compare_module, make_pair, requires_torch, torch
from op_check import DEVICE, host, make_input

# torch's own note that it copies the input for an even 'same' kernel
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")

LINEAR_CASES = [
    ("Linear", (3, 4), {}, [(2, 3)]),
    ("Linear", (3, 4), {"bias": False}, [(5, 2, 3)]),
    ("Linear", (6, 1), {}, [(6,)]),
    ("Bilinear", (3, 2, 4), {}, [(5, 3), (5, 2)]),
    ("Bilinear", (3, 2, 4), {"bias": False}, [(2, 5, 3), (2, 5, 2)]),
    ("Identity", (54,), {"unused": 1}, [(2, 3)]),
]

CONV_CASES = [
    ("Conv2d", (1, 10, 5), {}, (2, 1, 12, 12)),
    ("Conv2d", (4, 6, (3, 2)), {"stride": 2, "padding": 1, "dilation": 2, "groups": 2, "bias": False},
     (2, 4, 9, 8)),
    ("Conv2d", (4, 6, 4), {"padding": "same"}, (2, 4, 7, 6)),
    ("Conv2d", (4, 2, 3), {"padding": "valid", "stride": (1, 2)}, (1, 4, 7, 6)),
    ("Conv2d", (4, 6, 3), {"padding": (1, 2), "padding_mode": "reflect"}, (2, 4, 5, 6)),
    ("Conv2d", (4, 6, 3), {"padding": 2, "padding_mode": "replicate"}, (2, 4, 5, 6)),
    ("Conv2d", (4, 6, 3), {"padding": 1, "padding_mode": "circular"}, (2, 4, 5, 6)),
    ("Conv2d", (3, 4, 3), {}, (3, 6, 6)),  # unbatched
    ("Conv1d", (4, 6, 3), {}, (2, 4, 9)),
    ("Conv1d", (4, 8, 3), {"stride": 2, "padding": 2, "dilation": 2, "groups": 4}, (2, 4, 11)),
    ("Conv1d", (4, 6, 3), {"padding": "same", "padding_mode": "reflect"}, (2, 4, 9)),
    ("ConvTranspose2d", (4, 6, 3), {"stride": 2, "padding": 1, "output_padding": 1}, (2, 4, 5, 4)),
    ("ConvTranspose2d", (4, 6, (2, 3)), {"groups": 2, "dilation": 2, "bias": False}, (2, 4, 3, 3)),
    ("ConvTranspose1d", (4, 6, 3), {"stride": 2}, (2, 4, 7)),
]


def _ids(case):
    return f"{case[0]}{case[1]}{case[2] or ''}".replace(" ", "")


@requires_torch
@pytest.mark.parametrize("case", LINEAR_CASES + [c[:3] + ([c[3]],) for c in CONV_CASES], ids=_ids)
def test_matches_torch(case):
    name, args, kwargs, shapes = case
    ours, theirs = make_pair(name, *args, **kwargs)
    assert repr(ours) == repr(theirs)
    arrays = [make_input(s, seed=i).astype(np.float32) for i, s in enumerate(shapes)]
    compare_module(ours, theirs, arrays, rtol=1e-5, atol=1e-5)


@requires_torch
def test_conv_transpose_output_size():
    ours, theirs = make_pair("ConvTranspose2d", 2, 3, 3, stride=2)
    x = make_input((1, 2, 4, 4)).astype(np.float32)
    compare_module(ours, theirs, [x], backward=False)  # also copies torch's weights into ours
    out = ours(distnn.from_numpy(x).to(DEVICE), output_size=[10, 10])
    ref = theirs(torch.from_numpy(x), output_size=[10, 10])
    assert tuple(out.shape) == tuple(ref.shape) == (1, 3, 10, 10)
    np.testing.assert_allclose(host(out), ref.detach().numpy(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"requested an output size of \[12, 12\], but valid sizes range "
                                         r"from \[9, 9\] to \[10, 10\]"):
        ours(distnn.from_numpy(x).to(DEVICE), output_size=[12, 12])


@pytest.mark.parametrize("name,args,fan_in", [
    ("Linear", (256, 300), 256),
    ("Conv2d", (16, 32, 3), 16 * 9),
    ("Conv2d", (16, 32, 3, 1, 0, 1, 4), 4 * 9),  # groups=4: fan_in counts one group's channels
    ("Conv1d", (8, 64, 5), 40),
    ("ConvTranspose2d", (32, 16, 3), 16 * 9),  # weight is (in, out, k, k): fan_in from dim 1
])
def test_default_init_is_kaiming_uniform(name, args, fan_in):
    distnn.manual_seed(0)
    layer = getattr(nn, name)(*args)
    # kaiming_uniform_(a=sqrt(5)) on the weight and U(+-1/sqrt(fan_in)) on the bias: both bound 1/sqrt(fan_in)
    assert_uniform(layer.weight, 1 / math.sqrt(fan_in))
    bias = layer.bias.detach().numpy()
    assert layer.bias.dtype == distnn.float32
    assert np.abs(bias).max() <= 1 / math.sqrt(fan_in) and bias.std() > 0


def test_init_is_seeded_and_parameters_are_leaves():
    distnn.manual_seed(3)
    a = nn.Conv2d(2, 3, 3)
    distnn.manual_seed(3)
    b = nn.Conv2d(2, 3, 3)
    np.testing.assert_array_equal(a.weight.detach().numpy(), b.weight.detach().numpy())
    assert a.weight.requires_grad and a.weight.is_leaf and a.weight.grad_fn is None
    assert isinstance(a.weight, nn.Parameter)


def test_bilinear_init_bound():
    distnn.manual_seed(0)
    layer = nn.Bilinear(64, 5, 300)
    assert_uniform(layer.weight, 1 / 8)


@requires_torch
@pytest.mark.parametrize("name,args,kwargs", [
    ("Conv2d", (3, 4, 3), {"padding": "same", "bias": False, "dilation": 2}),
    ("Conv1d", (2, 4, 3), {"padding": "valid", "padding_mode": "reflect"}),
    ("Conv2d", (2, 4, (1, 3)), {"groups": 2, "stride": (2, 1)}),
    ("ConvTranspose2d", (3, 4, 3), {"stride": 2, "output_padding": 1}),
    ("ConvTranspose1d", (3, 6, 3), {"groups": 3, "bias": False}),
    ("Linear", (5, 7), {"bias": False}),
    ("Bilinear", (2, 3, 4), {}),
])
def test_repr_matches_torch(name, args, kwargs):
    ours, theirs = make_pair(name, *args, **kwargs)
    assert repr(ours) == repr(theirs)


def test_seed_tutorial_repr():
    assert repr(nn.Conv2d(1, 10, 5)) == "Conv2d(1, 10, kernel_size=(5, 5), stride=(1, 1))"
    assert repr(nn.Linear(320, 50)) == "Linear(in_features=320, out_features=50, bias=True)"


@pytest.mark.parametrize("kwargs,error,match", [
    ({"groups": 3}, ValueError, "in_channels must be divisible by groups"),
    ({"groups": 0}, ValueError, "groups must be a positive integer"),
    ({"padding": "full"}, ValueError, "Invalid padding string 'full'"),
    ({"padding": "same", "stride": 2}, ValueError, "padding='same' is not supported for strided convolutions"),
    ({"padding_mode": "mirror"}, ValueError, "padding_mode must be one of"),
])
def test_conv_constructor_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        nn.Conv2d(4, 6, 3, **kwargs)


def test_conv_transpose_rejects_padding_modes():
    with pytest.raises(ValueError, match='Only "zeros" padding mode is supported for ConvTranspose2d'):
        nn.ConvTranspose2d(2, 2, 3, padding_mode="reflect")


def test_forward_shape_errors_name_both_shapes():
    with pytest.raises(RuntimeError, match=r"mat1 and mat2 shapes cannot be multiplied \(2x5 and 3x4\)"):
        nn.Linear(3, 4)(distnn.zeros(2, 5))
    with pytest.raises(RuntimeError, match="expected input.*to have 3 channels, but got 2 channels"):
        nn.Conv2d(3, 4, 3)(distnn.zeros(1, 2, 5, 5))


@pytest.mark.parametrize("replace", ["weight", "bias"])
def test_linear_uses_a_plain_tensor_put_in_place_of_a_parameter(replace):
    """``del layer.weight; layer.weight = tensor`` (how weight_norm-style hooks work) still reaches forward."""
    layer = nn.Linear(3, 2)
    x = distnn.tensor(make_input((4, 3)), dtype=distnn.float32)
    weight, bias = layer.weight.detach() * 2, layer.bias.detach() * 2
    expected = x @ (weight if replace == "weight" else layer.weight).T + (bias if replace == "bias" else layer.bias)
    delattr(layer, replace)
    setattr(layer, replace, weight if replace == "weight" else bias)
    assert replace not in layer._parameters
    np.testing.assert_allclose(layer(x).detach().numpy(), expected.detach().numpy(), rtol=1e-6)

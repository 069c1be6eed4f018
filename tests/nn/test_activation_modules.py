"""Activation, pooling and flatten layers against PyTorch: repr, outputs, gradients."""

import numpy as np
import pytest

import distnn
import distnn.nn as nn
from layer_check import compare_module, make_pair, requires_torch
from op_check import host, make_input

pytestmark = requires_torch

ACTIVATIONS = [
    ("ReLU", (), {}), ("ReLU", (True,), {}), ("ReLU6", (), {}), ("ReLU6", (), {"inplace": True}),
    ("LeakyReLU", (), {}), ("LeakyReLU", (0.2, True), {}), ("ELU", (), {}), ("ELU", (0.5,), {}),
    ("CELU", (1.5,), {}), ("SELU", (), {}), ("GELU", (), {}), ("GELU", (), {"approximate": "tanh"}),
    ("SiLU", (), {}), ("Mish", (), {}), ("Sigmoid", (), {}), ("Tanh", (), {}),
    ("Softplus", (), {}), ("Softplus", (2.0, 1.0), {}), ("Hardtanh", (), {}), ("Hardtanh", (-0.5, 0.3), {}),
    ("Hardsigmoid", (), {}), ("Hardswish", (), {}), ("LogSigmoid", (), {}), ("Softsign", (), {}),
    ("Tanhshrink", (), {}), ("Hardshrink", (), {}), ("Softshrink", (0.3,), {}), ("Threshold", (0.1, 20.0), {}),
    ("GLU", (), {}), ("GLU", (1,), {}), ("Softmax", (1,), {}), ("Softmax", (), {"dim": -1}),
    ("LogSoftmax", (1,), {}), ("Softmin", (2,), {}), ("Softmax2d", (), {}), ("PReLU", (), {}),
    ("PReLU", (4,), {"init": 0.1}),
]

POOLS = [
    ("MaxPool2d", (2, 2), {}, (2, 4, 8, 6)),
    ("MaxPool2d", ((3, 2),), {"stride": 1, "padding": 1, "dilation": (1, 2), "ceil_mode": True}, (2, 4, 7, 9)),
    ("MaxPool2d", (3,), {"stride": 2, "ceil_mode": True}, (4, 7, 7)),
    ("MaxPool1d", (3,), {"stride": 2, "padding": 1}, (2, 4, 9)),
    ("AvgPool2d", (2,), {}, (2, 4, 8, 6)),
    ("AvgPool2d", (3,), {"stride": 2, "padding": 1, "count_include_pad": False, "ceil_mode": True}, (2, 4, 8, 7)),
    ("AvgPool2d", (2,), {"divisor_override": 3}, (2, 4, 6, 6)),
    ("AvgPool1d", (2,), {"stride": 1}, (2, 4, 7)),
    ("AdaptiveAvgPool2d", ((3, 2),), {}, (2, 4, 7, 5)),
    ("AdaptiveAvgPool2d", ((None, 3),), {}, (2, 4, 7, 5)),
    ("AdaptiveAvgPool2d", (1,), {}, (2, 4, 5, 5)),
    ("AdaptiveAvgPool1d", (4,), {}, (2, 4, 9)),
    ("AdaptiveMaxPool2d", ((2, 3),), {}, (2, 4, 7, 5)),
    ("AdaptiveMaxPool1d", (3,), {}, (2, 4, 8)),
]

SHAPES = [
    ("Flatten", (), {}, (2, 3, 4, 5)),
    ("Flatten", (0, 2), {}, (2, 3, 4, 5)),
    ("Unflatten", (1, (2, 2)), {}, (3, 4, 5)),
    ("Unflatten", (-1, [5, 1]), {}, (3, 4, 5)),
    ("Identity", (), {}, (3, 4)),
]


def _ids(case):
    return f"{case[0]}{case[1]}{case[2] or ''}".replace(" ", "")


@pytest.mark.parametrize("case", ACTIVATIONS, ids=_ids)
def test_activation_matches_torch(case):
    name, args, kwargs = case
    ours, theirs = make_pair(name, *args, **kwargs)
    assert repr(ours) == repr(theirs)
    x = make_input((3, 4, 2, 2), low=-3, high=3, seed=4).astype(np.float32)
    if getattr(ours, "inplace", False):
        # in-place on a leaf that requires grad is refused, so feed a non-leaf
        ours_inp, theirs_inp = _AfterScale(ours), _AfterScale(theirs)
        compare_module(ours_inp, theirs_inp, [x], rtol=1e-5, atol=1e-6)
    else:
        compare_module(ours, theirs, [x], rtol=1e-5, atol=1e-6)


class _AfterScale:
    """``layer(2 * x)``: gives in-place layers a non-leaf input."""

    def __init__(self, layer):
        self.layer = layer

    def __call__(self, x):
        return self.layer(x * 2)

    def __getattr__(self, name):
        return getattr(self.layer, name)


@pytest.mark.parametrize("case", POOLS + SHAPES, ids=_ids)
def test_pool_and_shape_layers_match_torch(case):
    name, args, kwargs, shape = case
    ours, theirs = make_pair(name, *args, **kwargs)
    assert repr(ours) == repr(theirs)
    compare_module(ours, theirs, [make_input(shape, seed=5).astype(np.float32)])


def test_maxpool_return_indices():
    ours, theirs = make_pair("MaxPool2d", 2, return_indices=True)
    (_, idx_ours), (_, idx_theirs) = compare_module(ours, theirs, [make_input((1, 2, 4, 4)).astype(np.float32)])
    assert idx_ours.dtype == distnn.int64
    np.testing.assert_array_equal(host(idx_ours), idx_theirs.numpy())


def test_seed_tutorial_reprs():
    assert repr(nn.MaxPool2d(2, 2)) == "MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)"
    assert repr(nn.ReLU()) == "ReLU()"
    assert repr(nn.Softmax(dim=1)) == "Softmax(dim=1)"


def test_inplace_relu_writes_into_input():
    x = distnn.tensor([-1.0, 2.0])
    y = nn.ReLU(inplace=True)(x)
    assert x.tolist() == [0.0, 2.0] and y.tolist() == [0.0, 2.0]


def test_inplace_on_leaf_requiring_grad_is_refused():
    with pytest.raises(RuntimeError, match="a leaf Variable that requires grad is being used in an in-place"):
        nn.LeakyReLU(inplace=True)(distnn.randn(3, requires_grad=True))


def test_softmax_without_dim_warns():
    with pytest.warns(UserWarning, match="Implicit dimension choice for softmax has been deprecated"):
        out = nn.Softmax()(distnn.randn(2, 3))
    np.testing.assert_allclose(out.sum(1).numpy(), [1, 1], rtol=1e-6)


def test_argument_errors():
    with pytest.raises(AssertionError, match=r"max_val \(-1\) must be greater than min_val \(1\)"):
        nn.Hardtanh(1, -1)
    with pytest.raises(ValueError, match="Softmax2d: expected input to be 3D or 4D, got 2D instead"):
        nn.Softmax2d()(distnn.zeros(2, 3))
    with pytest.raises(TypeError, match="unflattened_size must be tuple of ints, but found element of type float"):
        nn.Unflatten(1, (2, 2.0))

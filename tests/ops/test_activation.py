"""Activation ops: gradcheck and torch comparison over shapes, plus the details
that matter for training: saved outputs, stable softmax, exact erf-based gelu."""

import math
import warnings

import numpy as np
import pytest

import distnn
from distnn.ops import activation, softmaxes
from op_check import check_op, make_input, requires_torch, torch

SHAPES = [(5,), (3, 4), (2, 3, 4)]


def F(lib):
    """The functional namespace: ``torch.nn.functional`` or ours (activation.py's and
    softmaxes.py's functions)."""
    return lib.nn.functional


# (name, kwargs, input range): ranges keep the kinks (0, +-1, +-3, 6) well inside.
POINTWISE = [
    ("relu", {}, (-1, 1)), ("relu6", {}, (-2, 8)), ("hardtanh", {}, (-2, 2)),
    ("hardtanh", {"min_val": -0.5, "max_val": 1.5}, (-2, 2)), ("threshold", {"threshold": 0.2, "value": -1.0}, (-1, 1)),
    ("leaky_relu", {}, (-1, 1)), ("leaky_relu", {"negative_slope": 0.2}, (-1, 1)),
    ("elu", {}, (-2, 2)), ("elu", {"alpha": 0.5}, (-2, 2)), ("selu", {}, (-2, 2)), ("celu", {"alpha": 2.0}, (-2, 2)),
    ("gelu", {}, (-3, 3)), ("gelu", {"approximate": "tanh"}, (-3, 3)), ("silu", {}, (-4, 4)), ("mish", {}, (-4, 4)),
    ("sigmoid", {}, (-6, 6)), ("tanh", {}, (-3, 3)), ("hardsigmoid", {}, (-5, 5)), ("hardswish", {}, (-5, 5)),
    ("softplus", {}, (-3, 3)), ("softplus", {"beta": 2.0, "threshold": 1.0}, (-3, 3)), ("logsigmoid", {}, (-6, 6)),
    ("softsign", {}, (-3, 3)), ("tanhshrink", {}, (-2, 2)), ("hardshrink", {}, (-2, 2)),
    ("softshrink", {"lambd": 0.3}, (-2, 2)),
]


@pytest.mark.parametrize("name,kwargs,bounds", POINTWISE, ids=lambda v: str(v) if isinstance(v, str) else "")
@pytest.mark.parametrize("shape", SHAPES)
def test_pointwise(name, kwargs, bounds, shape):
    x = make_input(shape, low=bounds[0], high=bounds[1], seed=len(shape))
    check_op(lambda lib, t: getattr(F(lib), name)(t, **kwargs), [x])


@pytest.mark.parametrize("name", ["softmax", "log_softmax", "softmin"])
@pytest.mark.parametrize("shape,dim", [((5,), 0), ((3, 4), 1), ((3, 4), 0), ((2, 3, 4), -1), ((2, 3, 4), 1)])
def test_softmax_family(name, shape, dim):
    x = make_input(shape, low=-3, high=3)
    check_op(lambda lib, t: getattr(F(lib), name)(t, dim), [x])


@pytest.mark.parametrize("weight_shape", [(1,), (3,)])
def test_prelu(weight_shape):
    x = make_input((2, 3, 4), seed=3)
    w = make_input(weight_shape, low=0.1, high=0.5, seed=4)
    check_op(lambda lib, t, a: F(lib).prelu(t, a), [x, w])


@pytest.mark.parametrize("dim", [-1, 1])
def test_glu(dim):
    check_op(lambda lib, t: F(lib).glu(t, dim), [make_input((2, 4, 6))])


@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh"])
def test_tensor_methods(name):
    check_op(lambda lib, t: getattr(t, name)(), [make_input((3, 4))])


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_methods(name):
    check_op(lambda lib, t: getattr(t, name)(-1), [make_input((3, 4))])
    check_op(lambda lib, t: getattr(t, name)(dim=0), [make_input((3, 4))])


@requires_torch
@pytest.mark.parametrize("name,kwargs", [
    ("relu", {}), ("sigmoid", {}), ("tanh", {}), ("gelu", {}), ("leaky_relu", {}), ("elu", {}), ("selu", {}),
    ("celu", {}), ("relu6", {}), ("hardtanh", {}), ("silu", {}), ("mish", {}), ("softplus", {}),
    ("logsigmoid", {}), ("hardswish", {}), ("hardsigmoid", {}), ("threshold", {"threshold": 0.0, "value": 0.0}),
    ("softmax", {"dim": 1}), ("log_softmax", {"dim": 1}), ("softmin", {"dim": 1}),
])
def test_node_names_match_torch(name, kwargs):
    ours = getattr(distnn.nn.functional, name)(distnn.randn(2, 3, requires_grad=True), **kwargs)
    theirs = getattr(torch.nn.functional, name)(torch.randn(2, 3, requires_grad=True), **kwargs)
    assert ours.grad_fn.name() == theirs.grad_fn.name()


@requires_torch
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_matches_torch_over_wide_range(dtype, approximate):
    x = np.linspace(-9, 9, 4001).astype(dtype)
    ours = activation.gelu(distnn.from_numpy(x), approximate=approximate).numpy()
    theirs = torch.nn.functional.gelu(torch.from_numpy(x), approximate=approximate).numpy()
    assert ours.dtype == theirs.dtype
    # float32 1 + erf(x) (or 1 + tanh) cancels for x << 0 in torch too: compare absolutely there
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6 if dtype == "float32" else 1e-15)


def test_exact_gelu_in_float32_is_accurate_to_rounding():
    """Phi(x) comes from a float64 erfc, so even the far tail keeps its relative accuracy."""
    x = np.linspace(-9, 9, 4001).astype(np.float32)
    ours = activation.gelu(distnn.from_numpy(x)).numpy()
    truth = [float(v) * 0.5 * math.erfc(-float(v) / math.sqrt(2)) for v in x]
    np.testing.assert_allclose(ours, truth, rtol=3e-7, atol=1e-30)


@requires_torch
@pytest.mark.parametrize("name", ["sigmoid", "logsigmoid", "softplus", "silu", "mish", "elu", "tanh"])
def test_extreme_inputs_stay_finite_and_match_torch(name):
    x = np.array([-1e4, -100.0, -30.0, -5.0, 0.0, 5.0, 30.0, 100.0, 1e4], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warnings from exp
        ours = getattr(activation, name)(distnn.from_numpy(x)).numpy()
    theirs = getattr(torch.nn.functional, name)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-30)


@pytest.mark.parametrize("name", ["gelu", "silu", "mish", "softplus", "elu"])
@pytest.mark.parametrize("blocks", [False, True])
def test_infinite_inputs_make_no_warning(monkeypatch, name, blocks):
    """inf * 0 inside a formula gives NaN where PyTorch's does, and, as PyTorch, no
    warning: in the whole-array form and by blocks on the intra-op threads."""
    if blocks:
        monkeypatch.setattr(activation, "_BLOCKED_MIN_ELEMENTS", 0)
        monkeypatch.setattr(activation, "_BLOCK_ELEMENTS", 2)
    before = distnn.get_num_threads()
    distnn.set_num_threads(2 if blocks else 1)
    x = distnn.tensor(np.array([np.inf, -np.inf, 1.0, -2.0] * 2, np.float32), requires_grad=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            y = getattr(activation, name)(x)
            y.backward(distnn.ones_like(y))
    finally:
        distnn.set_num_threads(before)
    assert np.isnan(x.grad.numpy()[1]) or name in ("softplus", "elu")  # they make no inf * 0
    assert np.isfinite(y.detach().numpy()[2:4]).all()


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_is_stable_for_large_logits(name):
    x = distnn.tensor([[1000.0, 1001.0, 1002.0], [-1000.0, -1001.0, -1002.0]])
    out = getattr(softmaxes, name)(x, dim=1).numpy()
    assert np.isfinite(out).all()
    probs = np.exp(out) if name == "log_softmax" else out
    np.testing.assert_allclose(probs.sum(1), [1.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(probs[0], [0.09003057, 0.24472847, 0.66524096], rtol=1e-5)


@requires_torch
@pytest.mark.parametrize("shape", [(), (4,), (3, 4), (2, 3, 4), (2, 2, 3, 4)])
def test_softmax_implicit_dim_follows_torch_and_warns(shape):
    x = make_input(shape).astype(np.float32)
    with pytest.warns(UserWarning, match="Implicit dimension choice for softmax"):
        ours = softmaxes.softmax(distnn.from_numpy(x))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = torch.nn.functional.softmax(torch.from_numpy(x))
    assert tuple(ours.shape) == tuple(theirs.shape)
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6)


def test_softmax_dtype_argument_casts_first():
    x = distnn.tensor([[1, 2, 3]])
    out = softmaxes.softmax(x, dim=1, dtype=distnn.float64)
    assert out.dtype == distnn.float64
    np.testing.assert_allclose(out.sum().item(), 1.0)


def test_relu_saves_its_output_not_its_input():
    x = distnn.tensor([-1.0, 2.0, 3.0], requires_grad=True)
    h = x * 1
    y = activation.relu(h)
    h.add_(-10.0)  # the input changing does not matter: backward uses the output
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0]
    y2 = activation.relu(x * 1)
    y2.mul_(2)  # the output changing does
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y2.sum().backward()


@requires_torch
@pytest.mark.parametrize("name", ["relu", "leaky_relu", "elu", "hardtanh", "relu6", "silu", "hardswish"])
def test_inplace_variants_match_torch(name):
    x_np = make_input((3, 4), low=-2, high=2).astype(np.float32)
    results = []
    for lib in (distnn, torch):
        x = lib.tensor(x_np, requires_grad=True)
        h = x * 2
        out = getattr(F(lib), name)(h, inplace=True)
        assert out is h and h._version > 0
        (out * out).sum().backward()
        results.append((out.detach().numpy(), x.grad.numpy()))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["relu", "relu6", "hardtanh"])
def test_inplace_relu_and_hardtanh_write_the_array_itself(name):
    # PyTorch's relu_/hardtanh_: one write into the input's own array, version + 1, the
    # node saving those written values; anything that saved the old values refuses backward.
    x = distnn.tensor([-2.0, -0.5, 0.5, 3.0, 7.0], requires_grad=True)
    h = x * 1
    array = h._data
    out = getattr(F(distnn), name)(h, inplace=True)
    assert out is h and h._data is array and h._version == 1
    assert h.grad_fn.name().startswith({"relu": "Relu"}.get(name, "Hardtanh"))
    (out * out).sum().backward()
    lo, hi = {"relu": (0, np.inf), "relu6": (0, 6), "hardtanh": (-1, 1)}[name]
    y = np.clip(x.detach().numpy(), lo, hi)
    assert x.grad.tolist() == (2 * y * ((y > lo) & (y < hi))).tolist()

    h = x * 1
    out = getattr(F(distnn), name)(h, inplace=True)
    loss = (out * 3).sum() + out.sum() * 0
    h.mul_(2)  # the written values were saved: changing them again is caught
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        (loss + (out * out).sum()).backward()
    h = x * 1
    squared = h * h  # saves h's old values
    getattr(F(distnn), name)(h, inplace=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        squared.sum().backward()


@requires_torch
@pytest.mark.parametrize("name,args", [("relu6", ()), ("hardtanh", ()), ("hardtanh", (-2.0, 3.0)), ("relu", ())])
def test_integer_inputs_keep_their_dtype(name, args):
    values = [-5, -1, 0, 2, 7]
    ours, theirs = (getattr(F(lib), name)(lib.tensor(values), *args) for lib in (distnn, torch))
    assert str(ours.dtype).split(".")[-1] == str(theirs.dtype).split(".")[-1]
    assert ours.tolist() == theirs.tolist()


@requires_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,args", [("relu", ()), ("relu6", ()), ("hardtanh", ()), ("threshold", (0.0, -1.0)),
                                       ("hardshrink", ()), ("leaky_relu", (0.2,)), ("leaky_relu", (0.0,)),
                                       ("leaky_relu", (1.5,)), ("softshrink", (0.5,))])
def test_special_values_match_torch_bit_for_bit(name, args, dtype):
    # relu runs through clip and the masked gradients through a float mask: signed zeros,
    # NaNs and infinities, in the values and in the upstream gradient, as PyTorch has them
    values = np.array([-0.0, 0.0, np.nan, -np.inf, np.inf, 1e-39, -1e-39, 6.0, -1.0, 1.0, 3.0, 0.25], dtype)
    if name not in ("relu", "threshold", "leaky_relu"):  # PyTorch's gradient at a NaN input: by dtype
        values[2] = 0.5
    upstream = np.array([1.5, -2.0, 3.0, np.nan, 4.0, -0.0, 2.0, np.inf, 5.0, -1.0, 7.0, -3.0], dtype)
    results = []
    for lib in (distnn, torch):
        x = lib.tensor(values, requires_grad=True)
        out = getattr(F(lib), name)(x * 1, *args)
        out.backward(lib.tensor(upstream))
        results.append((out.detach().numpy(), x.grad.numpy()))
    for ours, theirs in zip(*results):
        np.testing.assert_array_equal(ours, theirs)
        if name != "softshrink":  # PyTorch's softshrink(-0.0) is -0.0 in float32, +0.0 in float64
            np.testing.assert_array_equal(np.signbit(ours), np.signbit(theirs))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_leaky_relu_derivative_is_exactly_one_or_the_slope(dtype):
    # mask * (1 - slope) + slope: 1 - slope's rounding never keeps the sum off 1
    slopes = np.concatenate([np.random.default_rng(0).random(3000), [1.0, 0.5, 2.0 ** -24, 1 - 2.0 ** -24, 0.2]])
    x = distnn.tensor(np.array([1.0, -1.0, 0.0, np.nan, 1e-4], dtype), requires_grad=True)
    for slope in slopes:
        x.grad = None
        activation.leaky_relu(x, float(slope)).backward(distnn.ones(5, dtype=x.dtype))
        s = dtype(slope)
        assert x.grad.numpy().tolist() == [1.0, s, s, s, 1.0], slope


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_saturates_without_overflow(dtype):
    x = np.array([-np.inf, -1000.0, -0.0, 0.0, 1000.0, np.inf, np.nan, -2.0, 2.0], dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # exp never sees a large positive argument
        out = activation.sigmoid(distnn.tensor(x)).numpy()
    assert out[[0, 1]].tolist() == [0.0, 0.0] and out[[2, 3]].tolist() == [0.5, 0.5]
    assert out[[4, 5]].tolist() == [1.0, 1.0] and np.isnan(out[6])
    np.testing.assert_allclose(out[7:], 1 / (1 + np.exp(-x[7:].astype(np.float64))), rtol=1e-6)
    assert out[7] + out[8] == pytest.approx(1.0, abs=1e-7)


def test_inplace_without_grad_overwrites_input():
    x = distnn.tensor([-1.0, 0.5, 2.0])
    with distnn.no_grad():
        out = activation.leaky_relu(x, 0.5, inplace=True)
    assert out is x
    assert x.tolist() == [-0.5, 0.5, 2.0]


def test_inplace_on_leaf_requiring_grad_raises():
    x = distnn.tensor([-1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        activation.relu(x, inplace=True)


@pytest.mark.parametrize("call,error,match", [
    (lambda x: activation.gelu(x, approximate="erf"), ValueError, "none or tanh"),
    (lambda x: softmaxes.softmax(distnn.tensor([1, 2]), dim=0), RuntimeError, "floating"),
    (lambda x: softmaxes.softmax(x, dim=2), IndexError, "Dimension out of range"),
    (lambda x: activation.glu(x, dim=1), RuntimeError, "dimension 1 is size 3"),
    (lambda x: activation.prelu(x, distnn.ones(2)), RuntimeError, "Expect: 3 or 1"),
    (lambda x: activation.hardtanh(x, 1.0, -1.0), ValueError, "min_val <= max_val"),
    (lambda x: activation.softshrink(x, -0.1), RuntimeError, "lambda must be greater or equal to 0"),
])
def test_bad_arguments_raise(call, error, match):
    with pytest.raises(error, match=match):
        call(distnn.ones(2, 3))

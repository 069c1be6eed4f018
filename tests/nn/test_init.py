"""nn.init: gains and fans as PyTorch computes them, the distribution each
initialiser draws, exact results for the deterministic ones, and errors."""

import math

import numpy as np
import pytest

import distnn
from distnn.nn import init
from layer_check import assert_normal, assert_uniform, requires_torch, torch


@requires_torch
@pytest.mark.parametrize("nonlinearity,param", [
    ("linear", None), ("conv2d", None), ("conv_transpose3d", None), ("sigmoid", None), ("tanh", None),
    ("relu", None), ("leaky_relu", None), ("leaky_relu", 0.2), ("leaky_relu", 3), ("selu", None),
])
def test_calculate_gain_matches_torch(nonlinearity, param):
    assert init.calculate_gain(nonlinearity, param) == torch.nn.init.calculate_gain(nonlinearity, param)


def test_calculate_gain_errors():
    with pytest.raises(ValueError, match="Unsupported nonlinearity swish"):
        init.calculate_gain("swish")
    with pytest.raises(ValueError, match="negative_slope True not a valid number"):
        init.calculate_gain("leaky_relu", True)


@requires_torch
@pytest.mark.parametrize("shape", [(3, 4), (6, 2, 3), (8, 4, 3, 5), (2, 3, 1, 1, 2)])
def test_fans_match_torch(shape):
    ours = init._calculate_fan_in_and_fan_out(distnn.empty(*shape))
    assert ours == torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(*shape))


def _param(*shape):
    """A parameter-like leaf that requires grad: init must still work (it runs under no_grad)."""
    return distnn.empty(*shape).requires_grad_(True)


@pytest.mark.parametrize("fn,kwargs,bound", [
    (init.uniform_, {"a": -0.3, "b": 0.3}, 0.3),
    (init.xavier_uniform_, {}, math.sqrt(6 / (200 + 300))),
    (init.xavier_uniform_, {"gain": 2.0}, 2 * math.sqrt(6 / (200 + 300))),
    (init.kaiming_uniform_, {}, math.sqrt(2) * math.sqrt(3 / 300)),  # a=0: leaky_relu gain is sqrt(2)
    (init.kaiming_uniform_, {"a": math.sqrt(5)}, 1 / math.sqrt(300)),
    (init.kaiming_uniform_, {"mode": "fan_out", "nonlinearity": "relu"}, math.sqrt(2) * math.sqrt(3 / 200)),
])
def test_uniform_family(fn, kwargs, bound):
    t = _param(200, 300)
    out = fn(t, **kwargs)
    assert out is t and t.grad_fn is None and t.requires_grad
    assert_uniform(t, bound)


@pytest.mark.parametrize("fn,kwargs,std", [
    (init.normal_, {"mean": 0.5, "std": 0.2}, 0.2),
    (init.xavier_normal_, {}, math.sqrt(2 / (200 + 300))),
    (init.kaiming_normal_, {"nonlinearity": "relu"}, math.sqrt(2 / 300)),
    (init.kaiming_normal_, {"mode": "fan_out", "a": 0.1}, math.sqrt(2 / 1.01) / math.sqrt(200)),
])
def test_normal_family(fn, kwargs, std):
    t = _param(200, 300)
    assert fn(t, **kwargs) is t
    assert_normal(t, kwargs.get("mean", 0.0), std)


def test_conv_shaped_kaiming_uses_receptive_field():
    t = distnn.empty(64, 16, 3, 3)
    init.kaiming_uniform_(t, a=math.sqrt(5))
    assert_uniform(t, 1 / math.sqrt(16 * 9))


@pytest.mark.parametrize("mean,std,a,b", [(0.0, 1.0, -2.0, 2.0), (0.0, 0.02, -0.04, 0.04), (1.0, 1.0, 2.5, 4.0)])
def test_trunc_normal(mean, std, a, b):
    t = distnn.empty(300, 200)
    init.trunc_normal_(t, mean, std, a, b)
    x = t.numpy().astype(np.float64)
    assert t.dtype == distnn.float32 and x.min() >= a and x.max() <= b
    # moments of the truncated normal
    alpha, beta = (a - mean) / std, (b - mean) / std
    pdf = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    cdf = lambda z: (1 + math.erf(z / math.sqrt(2))) / 2  # noqa: E731
    z = cdf(beta) - cdf(alpha)
    expected_mean = mean + std * (pdf(alpha) - pdf(beta)) / z
    expected_var = std ** 2 * (1 + (alpha * pdf(alpha) - beta * pdf(beta)) / z - ((pdf(alpha) - pdf(beta)) / z) ** 2)
    assert abs(x.mean() - expected_mean) < 5 * math.sqrt(expected_var / x.size)
    assert abs(x.std() / math.sqrt(expected_var) - 1) < 0.03


@pytest.mark.parametrize("shape", [(30, 50), (50, 30), (8, 4, 3, 3)])
def test_orthogonal(shape):
    t = distnn.empty(*shape)
    init.orthogonal_(t, gain=2.0)
    flat = t.numpy().reshape(shape[0], -1).astype(np.float64) / 2.0
    small = min(flat.shape)
    gram = flat @ flat.T if flat.shape[0] == small else flat.T @ flat
    np.testing.assert_allclose(gram, np.eye(small), atol=1e-5)
    assert t.dtype == distnn.float32


@requires_torch
@pytest.mark.parametrize("shape,groups", [((4, 4, 3), 1), ((6, 3, 3, 3), 2), ((4, 2, 3, 3, 3), 1), ((2, 5, 3, 2), 1)])
def test_dirac_matches_torch(shape, groups):
    ours = init.dirac_(distnn.randn(*shape), groups)
    theirs = torch.nn.init.dirac_(torch.randn(*shape), groups)
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_deterministic_fills():
    t = _param(3, 4)
    assert init.constant_(t, 0.25) is t and (t.detach().numpy() == 0.25).all()
    assert (init.ones_(t).detach().numpy() == 1).all() and (init.zeros_(t).detach().numpy() == 0).all()
    np.testing.assert_array_equal(init.eye_(t).detach().numpy(), np.eye(3, 4))


def test_sparse_zeroes_exact_fraction_per_column():
    t = init.sparse_(distnn.empty(10, 40), sparsity=0.25, std=0.1)
    zeros_per_column = (t.numpy() == 0).sum(0)
    assert (zeros_per_column == 3).all()  # ceil(0.25 * 10)
    assert 0.07 < t.numpy()[t.numpy() != 0].std() < 0.13


def test_generator_argument_is_reproducible():
    g = distnn.Generator().manual_seed(7)
    a = init.kaiming_normal_(distnn.empty(5, 5), generator=g).numpy().copy()
    g.manual_seed(7)
    b = init.kaiming_normal_(distnn.empty(5, 5), generator=g).numpy()
    np.testing.assert_array_equal(a, b)
    distnn.manual_seed(7)
    c = init.trunc_normal_(distnn.empty(5, 5)).numpy().copy()
    distnn.manual_seed(7)
    np.testing.assert_array_equal(c, init.trunc_normal_(distnn.empty(5, 5)).numpy())


def test_float64_tensor_stays_float64():
    t = distnn.empty(4, 4, dtype=distnn.float64)
    for fn in (init.xavier_uniform_, init.orthogonal_, init.trunc_normal_, init.eye_):
        assert fn(t).dtype == distnn.float64


@pytest.mark.parametrize("call,match", [
    (lambda: init.xavier_uniform_(distnn.empty(5)), "Fan in and fan out can not be computed for tensor with fewer"),
    (lambda: init.kaiming_normal_(distnn.empty(3, 3), mode="fan_avg"), r"Mode fan_avg not supported"),
    (lambda: init.eye_(distnn.empty(2, 2, 2)), "Only tensors with 2 dimensions are supported"),
    (lambda: init.orthogonal_(distnn.empty(4)), "Only tensors with 2 or more dimensions are supported"),
    (lambda: init.dirac_(distnn.empty(3, 3)), "Only tensors with 3, 4, or 5 dimensions are supported"),
    (lambda: init.dirac_(distnn.empty(3, 3, 3), groups=2), "dim 0 must be divisible by groups"),
    (lambda: init.sparse_(distnn.empty(3), 0.5), "Only tensors with 2 dimensions are supported"),
])
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_zero_element_kaiming_warns_and_deprecated_aliases_warn():
    with pytest.warns(UserWarning, match="Initializing zero-element tensors is a no-op"):
        init.kaiming_uniform_(distnn.empty(0, 3))
    with pytest.warns(FutureWarning, match=r"`nn.init.xavier_uniform` is now deprecated in favor of "
                                           r"`nn.init.xavier_uniform_`"):
        init.xavier_uniform(distnn.empty(3, 3))

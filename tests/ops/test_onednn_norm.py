"""Training batch norm through oneDNN (distnn/ops/onednn_norm.py): values, input and
parameter gradients and running statistics against PyTorch with every call counted,
channel counts off the 8/16 blocks, activations far from zero mean, the switch that
turns it off, and the paths that stay numpy's (eval, float64, recorded backward)."""

import numpy as np
import pytest

import distnn
from distnn.backends import mkldnn
from distnn.ops import onednn_norm
from op_check import compare_with_torch, count_served, make_input, requires_torch, torch

pytestmark = pytest.mark.skipif(not mkldnn.is_available(),
                                reason="oneDNN's library (pip onednn-cpu-gomp) is not installed")


@pytest.fixture(autouse=True)
def enabled(monkeypatch):
    monkeypatch.setattr(mkldnn, "enabled", True)


@pytest.fixture
def calls(monkeypatch):
    """How many forward and backward calls went through oneDNN."""
    return count_served(monkeypatch, onednn_norm, (("forward", "batch_norm"), ("backward", "batch_norm_backward")))


def _functional(lib):
    return distnn.ops if lib is distnn else lib.nn.functional


def _run(lib, x, g, weight, bias, momentum=0.1):
    """Forward and backward of training batch norm with running statistics: every
    value the step produces, as numpy arrays."""
    c = x.shape[1]
    stats = [lib.tensor(np.linspace(-0.5, 0.5, c, dtype=np.float32)),
             lib.tensor(np.linspace(0.5, 2.0, c, dtype=np.float32))]
    xt = lib.tensor(x, requires_grad=True)
    params = [None if p is None else lib.tensor(p, requires_grad=True) for p in (weight, bias)]
    out = _functional(lib).batch_norm(xt, *stats, *params, training=True, momentum=momentum)
    out.backward(lib.tensor(g))
    return [out.detach().numpy(), xt.grad.numpy()] + [p.grad.numpy() for p in params if p is not None] + \
        [s.numpy() for s in stats]


@requires_torch
@pytest.mark.parametrize("shape", [(2, 3, 3, 3), (4, 20, 5, 6), (3, 32, 4, 4), (2, 64, 7, 1)])
@pytest.mark.parametrize("affine", [True, False])
def test_training_batch_norm_matches_torch(calls, shape, affine):
    x = make_input(shape, low=-2, high=2, seed=1).astype(np.float32)
    g = make_input(shape, seed=2).astype(np.float32)
    c = shape[1]
    params = [make_input((c,), positive=True, seed=3).astype(np.float32),
              make_input((c,), seed=4).astype(np.float32)] if affine else [None, None]
    ours, theirs = _run(distnn, x, g, *params), _run(torch, x, g, *params)
    assert calls == {"forward": 1, "backward": 1}
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=2e-6)


@requires_torch
def test_far_from_zero_mean_keeps_its_variance(calls):
    """A mean 500 standard deviations away: the two-pass variance, PyTorch's values (a
    one-pass E[x^2] - mean^2 would be about 1% off). The weight gradient, sum(g * xhat),
    is as ill-conditioned as the input's float32 rounding: PyTorch's and numpy's are
    5e-4 apart too."""
    x = (make_input((6, 16, 5, 7), seed=2) + 300).astype(np.float32)
    g = make_input(x.shape, seed=3).astype(np.float32)
    w = make_input((16,), positive=True, seed=5).astype(np.float32)
    ours, theirs = _run(distnn, x, g, w, None, momentum=0.5), _run(torch, x, g, w, None, momentum=0.5)
    assert calls == {"forward": 1, "backward": 1}
    for i, (a, b) in enumerate(zip(ours, theirs)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-3 if i == 2 else 2e-4)


@requires_torch
def test_non_contiguous_input_and_gradient(calls):
    compare_with_torch(lambda lib, x, w, b: _functional(lib).batch_norm(x, None, None, w, b, training=True),
                       [make_input((3, 16, 4, 5), seed=6), make_input((16,), positive=True, seed=7),
                        make_input((16,), seed=8)], rtol=1e-5, atol=2e-6)
    assert calls == {"forward": 2, "backward": 2}  # contiguous and transposed


@pytest.mark.parametrize("case", ["disabled", "eval", "float64"])
def test_numpy_paths_stay_numpy(calls, monkeypatch, case):
    if case == "disabled":
        monkeypatch.setattr(mkldnn, "enabled", False)
    bn = distnn.nn.BatchNorm2d(16).train(case != "eval")
    x = distnn.tensor(make_input((2, 16, 4, 4), seed=9).astype(np.float64 if case == "float64" else np.float32),
                      requires_grad=True)
    if case == "float64":
        bn = bn.double()
    bn(x).sum().backward()
    assert calls == {"forward": 0, "backward": 0}
    assert x.grad is not None


@requires_torch
def test_recorded_backward_differentiates_the_numpy_form(calls):
    """create_graph=True: oneDNN's forward, then the closed form the engine can
    differentiate; second derivatives as PyTorch's."""
    x = make_input((2, 16, 3, 3), seed=10).astype(np.float32)
    w = make_input((16,), positive=True, seed=11).astype(np.float32)
    results = []
    for lib in (distnn, torch):
        xt, wt = lib.tensor(x, requires_grad=True), lib.tensor(w, requires_grad=True)
        out = _functional(lib).batch_norm(xt, None, None, wt, None, training=True)
        (gx,) = lib.autograd.grad((out ** 3).sum(), xt, create_graph=True)
        if lib is distnn:
            assert calls == {"forward": 1, "backward": 0}
        (gx * gx).sum().backward()  # back through the output too, this time not recorded
        results.append([gx.detach().numpy(), xt.grad.numpy(), wt.grad.numpy()])
    assert calls == {"forward": 1, "backward": 1}
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("threads", [1, 2])
def test_same_bits_every_run_at_a_thread_count(calls, threads):
    """oneDNN splits its sums by thread count (a primitive per count): at one count
    the same bits every run, within float32 rounding of the other count's."""
    x = make_input((8, 32, 6, 6), seed=12).astype(np.float32)
    g = make_input(x.shape, seed=13).astype(np.float32)
    w = make_input((32,), positive=True, seed=14).astype(np.float32)
    before = distnn.get_num_threads()
    try:
        distnn.set_num_threads(threads)
        first, second = _run(distnn, x, g, w, None), _run(distnn, x, g, w, None)
        distnn.set_num_threads(3 - threads)
        other = _run(distnn, x, g, w, None)
    finally:
        distnn.set_num_threads(before)
    assert calls == {"forward": 3, "backward": 3}
    for a, b, c in zip(first, second, other):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-6)

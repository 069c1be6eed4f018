"""nn.LSTM through oneDNN's LSTM primitive (distnn/ops/onednn_rnn.py): PyTorch's
values and gradients to the bit in every layout, the primitive's accumulating weight
gradients zeroed per call, each bias its own gradient array, frozen parameters,
the switch that turns it off, and double backward by the array formulas."""

import subprocess
import sys

import numpy as np
import pytest

import distnn
from distnn.backends import mkldnn
from distnn.ops import onednn_rnn
from fork_child import fork_child_script
from layer_check import load_torch_state, make_pair, requires_torch

try:
    import torch
except ImportError:
    torch = None

pytestmark = pytest.mark.skipif(not mkldnn.is_available(),
                                reason="oneDNN's library (pip onednn-cpu-gomp) is not installed")

CONFIGS = [
    {},
    {"num_layers": 2},
    {"bidirectional": True},
    {"num_layers": 2, "bidirectional": True, "batch_first": True},
    {"bias": False, "batch_first": True},
]


@pytest.fixture(autouse=True)
def enabled(monkeypatch):
    monkeypatch.setattr(mkldnn, "enabled", True)


def _run(lib, module, x, state, seed=7):
    """(outputs, input and state gradients, parameter gradients) as numpy arrays for
    a loss weighting every output, h_n and c_n by fixed random numbers."""
    xt = lib.tensor(x, requires_grad=True)
    st = tuple(lib.tensor(s, requires_grad=True) for s in state)
    out, (h_n, c_n) = module(xt, st) if st else module(xt)
    rng = np.random.default_rng(seed)
    weights = [lib.tensor(rng.standard_normal(tuple(o.shape)).astype(np.float32)) for o in (out, h_n, c_n)]
    sum((o * w).sum() for o, w in zip((out, h_n, c_n), weights)).backward()
    grads = [xt.grad] + [s.grad for s in st]
    return ([o.detach().numpy() for o in (out, h_n, c_n)], [g.numpy() for g in grads],
            [p.grad.numpy() for p in module.parameters()], out)


@requires_torch
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "default")
@pytest.mark.parametrize("with_state", [False, True])
def test_pytorchs_bits(monkeypatch, config, with_state):
    calls = []
    real = onednn_rnn.forward
    monkeypatch.setattr(onednn_rnn, "forward", lambda *args: calls.append(1) or real(*args))
    ours, theirs = make_pair("LSTM", 6, 5, **config)
    load_torch_state(ours, theirs)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 6) if config.get("batch_first") else (4, 2, 6)).astype(np.float32)
    layers = config.get("num_layers", 1) * (2 if config.get("bidirectional") else 1)
    state = [rng.standard_normal((layers, 2, 5)).astype(np.float32) for _ in range(2)] if with_state else []
    mine, expected = _run(distnn, ours, x, state), _run(torch, theirs, x, state)
    assert len(calls) == layers  # every layer and direction through oneDNN
    for a, b in zip(mine[0] + mine[1] + mine[2], expected[0] + expected[1] + expected[2]):
        np.testing.assert_array_equal(a, b)


@requires_torch
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "default")
def test_under_no_grad_pytorchs_inference_bits(config):
    """No graph: oneDNN's inference form, as PyTorch's under no_grad (its last bits
    differ from the training form's, in both libraries)."""
    ours, theirs = make_pair("LSTM", 6, 5, **config)
    load_torch_state(ours, theirs)
    x = np.random.default_rng(4).standard_normal((2, 4, 6) if config.get("batch_first") else (4, 2, 6))
    x = x.astype(np.float32)
    with distnn.no_grad():
        mine = ours(distnn.tensor(x))
    with torch.no_grad():
        expected = theirs(torch.tensor(x))
    for a, b in zip([mine[0], *mine[1]], [expected[0], *expected[1]]):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_weight_gradients_are_not_carried_between_calls():
    """oneDNN adds weight gradients into its outputs: a second backward through the
    same graph adds the same gradients once more, and a fresh graph starts from zero."""
    lstm = distnn.nn.LSTM(3, 4)
    x = distnn.randn(5, 2, 3)
    out, _ = lstm(x)
    assert out.grad_fn.name() == "MkldnnRnnLayerBackward0"
    out.sum().backward(retain_graph=True)
    first = [p.grad.numpy().copy() for p in lstm.parameters()]
    out.sum().backward()
    np.testing.assert_allclose([p.grad.numpy() for p in lstm.parameters()][0], 2 * first[0], rtol=1e-6)
    for p in lstm.parameters():
        p.grad = None
    lstm(x)[0].sum().backward()
    for p, f in zip(lstm.parameters(), first):
        np.testing.assert_array_equal(p.grad.numpy(), f)


def test_each_bias_gets_its_own_gradient_array():
    lstm = distnn.nn.LSTM(3, 4)
    lstm(distnn.randn(5, 2, 3))[0].sum().backward()
    np.testing.assert_array_equal(lstm.bias_ih_l0.grad.numpy(), lstm.bias_hh_l0.grad.numpy())
    lstm.bias_ih_l0.grad.add_(1)
    assert not np.array_equal(lstm.bias_ih_l0.grad.numpy(), lstm.bias_hh_l0.grad.numpy())


def test_frozen_parameters_get_no_gradient_and_the_input_still_does():
    lstm = distnn.nn.LSTM(3, 4)
    lstm.weight_hh_l0.requires_grad_(False)
    lstm.bias_hh_l0.requires_grad_(False)
    x = distnn.randn(5, 2, 3, requires_grad=True)
    lstm(x)[0].sum().backward()
    assert lstm.weight_hh_l0.grad is None and lstm.bias_hh_l0.grad is None
    assert x.grad is not None and lstm.weight_ih_l0.grad is not None and lstm.bias_ih_l0.grad is not None


def test_turned_off_or_float64_runs_the_array_loop(monkeypatch):
    lstm = distnn.nn.LSTM(3, 4)
    x = distnn.randn(5, 2, 3)
    fused = lstm(x)[0]
    monkeypatch.setattr(mkldnn, "enabled", False)
    assert onednn_rnn.lstm(5, 2, 3, 4, False) is None
    plain = lstm(x)[0]
    assert plain.grad_fn.name() == "LSTMLayerBackward0"
    np.testing.assert_allclose(fused.detach().numpy(), plain.detach().numpy(), rtol=1e-5, atol=1e-6)
    monkeypatch.setattr(mkldnn, "enabled", True)
    assert lstm.double()(x.double())[0].grad_fn.name() == "LSTMLayerBackward0"


@requires_torch
def test_double_backward_matches_torch():
    """A gradient penalty through a 2-layer LSTM run by oneDNN, against PyTorch's."""
    ours, theirs = make_pair("LSTM", 3, 4, num_layers=2, batch_first=True)
    load_torch_state(ours, theirs)
    x = np.random.default_rng(5).standard_normal((2, 5, 3)).astype(np.float32)
    results = []
    for lib, module in ((distnn, ours), (torch, theirs)):
        xt = lib.tensor(x, requires_grad=True)
        params = list(module.parameters())
        out = module(xt)[0]
        if lib is distnn:
            assert out.grad_fn.name() == "MkldnnRnnLayerBackward0"
        # first derivatives by the recorded formulas, then the penalty's through them
        first = lib.autograd.grad(out.tanh().sum(), [xt] + params, create_graph=True)
        (first[0] * first[0]).sum().backward()
        results.append([f.detach().numpy() for f in first] + [xt.grad.numpy()] + [p.grad.numpy() for p in params])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


CHILD = fork_child_script("""
    distnn.set_num_threads(2)
    lstm = distnn.nn.LSTM(16, 32, 2)
    x = distnn.randn(10, 4, 16)
    y = lstm(x)[0]
    assert y.grad_fn.name() == "MkldnnRnnLayerBackward0"
""", """
    again = lstm(x)[0]
    ok = again.grad_fn.name() == "LSTMLayerBackward0" and np.allclose(again.detach().numpy(), y.detach().numpy(),
                                                                      rtol=1e-5, atol=1e-6)
    os._exit(0 if ok else 3)
""")


def test_a_child_forked_after_it_ran_uses_the_array_loop():
    """oneDNN's OpenMP threads do not survive fork: the child's LSTM runs on arrays."""
    proc = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr

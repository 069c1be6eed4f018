"""The whole-sequence LSTM and GRU ops: gradients and second derivatives by finite
differences in every layout, the same values as the composed cells step by step,
and double backward through nn.LSTM/nn.GRU against PyTorch."""

import numpy as np
import pytest

import distnn
from distnn.autograd import gradcheck, gradgradcheck
from distnn.nn.modules import rnn
from distnn.ops.recurrent import gru_layer, lstm_layer
from layer_check import load_torch_state, make_pair
from op_check import DEVICE, host, requires_torch, torch

LAYOUTS = [(time_dim, reverse) for time_dim in (0, 1) for reverse in (False, True)]
GATES = {"LSTM": 4, "GRU": 3}


def _inputs(mode, time_dim, bias, dtype=np.float64, steps=4, batch=3, hidden=2, seed=0):
    """(xw, h0, [c0,] w_hh, b_hh) for ``mode``, requiring grad."""
    rng = np.random.default_rng(seed)
    gates = GATES[mode] * hidden
    shapes = [(steps, batch, gates) if time_dim == 0 else (batch, steps, gates), (batch, hidden)]
    shapes += [(batch, hidden)] if mode == "LSTM" else []
    shapes += [(gates, hidden)] + ([(gates,)] if bias else [])
    arrays = [distnn.tensor(rng.standard_normal(s).astype(dtype), requires_grad=True) for s in shapes]
    return arrays + ([] if bias else [None])


def _layer(mode, time_dim, reverse):
    fn = lstm_layer if mode == "LSTM" else gru_layer
    return lambda *args: fn(*args, time_dim=time_dim, reverse=reverse)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
@pytest.mark.parametrize("time_dim,reverse", LAYOUTS)
@pytest.mark.parametrize("bias", [True, False])
def test_gradients_and_second_derivatives(mode, time_dim, reverse, bias):
    args = _inputs(mode, time_dim, bias, steps=3, batch=2)
    tensors = tuple(a for a in args if a is not None)
    fn = _layer(mode, time_dim, reverse)

    def layer(*ts):
        return fn(*ts, *([] if bias else [None]))
    assert gradcheck(layer, tensors)
    if bias or not reverse:  # second derivatives are slow to check: every layout once
        assert gradgradcheck(layer, tensors)


def _composed(mode, xw, h, c, w_hh, b_hh, time_dim, reverse):
    """The cells of nn/modules/rnn.py, one recorded step at a time."""
    steps = xw.unbind(time_dim)
    outputs = [None] * len(steps)
    for t in (range(len(steps) - 1, -1, -1) if reverse else range(len(steps))):
        if mode == "LSTM":
            h, c = rnn._lstm_step(steps[t], h, c, w_hh, b_hh)
        else:
            h = rnn._gru_step(steps[t], h, w_hh, b_hh)
        outputs[t] = h
    return [distnn.stack(outputs, time_dim), h] + ([c] if mode == "LSTM" else [])


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
@pytest.mark.parametrize("time_dim,reverse", LAYOUTS)
def test_same_values_as_the_composed_cells(mode, time_dim, reverse):
    args = _inputs(mode, time_dim, True, dtype=np.float32, steps=6, batch=5, hidden=7, seed=3)
    fused = _layer(mode, time_dim, reverse)(*args)
    composed = _composed(mode, *(args if mode == "LSTM" else args[:2] + [None] + args[2:]), time_dim, reverse)
    for a, b in zip(fused, composed):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())  # same float32 ops, same order
    grads, expected = (distnn.autograd.grad(sum(o.sum() * (i + 1) for i, o in enumerate(outs)), args)
                       for outs in (fused, composed))
    for g, e in zip(grads, expected):
        np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=1e-5, atol=1e-5)


def test_frozen_weights_get_no_gradient_and_the_input_still_does():
    xw, h0, c0, w_hh, b_hh = _inputs("LSTM", 0, True)
    w_hh.requires_grad_(False)
    b_hh.requires_grad_(False)
    out, _, _ = lstm_layer(xw, h0, c0, w_hh, b_hh)
    out.sum().backward()
    assert w_hh.grad is None and b_hh.grad is None
    assert xw.grad is not None and h0.grad is not None and c0.grad is not None


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_batch_first_output_is_contiguous(mode):
    layer = getattr(distnn.nn, mode)(3, 4, batch_first=True)
    out, _ = layer(distnn.randn(2, 5, 3))
    assert out.is_contiguous()
    assert out.view(-1, 4).shape == (10, 4)


@requires_torch
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_double_backward_through_the_module_matches_torch(mode):
    """A gradient penalty: d/dparams of |d out/d x|^2, as WGAN-GP critics take it."""
    ours, theirs = make_pair(mode, 3, 4, num_layers=2, bidirectional=True)
    load_torch_state(ours, theirs)
    x = np.random.default_rng(5).standard_normal((5, 2, 3)).astype(np.float32)
    results = []
    for lib, module in ((distnn, ours), (torch, theirs)):
        on_device = {"device": DEVICE} if lib is distnn else {}  # the input beside the module
        values = host if lib is distnn else (lambda t: t.detach().numpy())
        xt = lib.tensor(x, requires_grad=True, **on_device)
        (g,) = lib.autograd.grad(module(xt)[0].tanh().sum(), xt, create_graph=True)
        (g * g).sum().backward()
        results.append([values(xt.grad)] + [values(p.grad) for p in module.parameters()])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)

"""RNN, LSTM, GRU and their cells against PyTorch: parameter names and shapes, repr,
default init, outputs and every gradient, across layers, directions and layouts."""

import math
import warnings

import numpy as np
import pytest

import distnn
import distnn.nn as nn
from layer_check import assert_uniform, compare_module, make_pair, requires_torch
from op_check import make_input

pytestmark = requires_torch

CONFIGS = [
    {},
    {"num_layers": 2},
    {"bidirectional": True},
    {"num_layers": 2, "bidirectional": True, "batch_first": True},
    {"bias": False, "batch_first": True},
]


@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "default")
def test_matches_torch(mode, config):
    ours, theirs = make_pair(mode, 3, 5, **config)
    assert repr(ours) == repr(theirs)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    x = make_input((4, 2, 3) if not config.get("batch_first") else (2, 4, 3), seed=3).astype(np.float32)
    compare_module(ours, theirs, [x])


@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
def test_initial_state_gets_gradients(mode):
    ours, theirs = make_pair(mode, 3, 4, num_layers=2, bidirectional=True)
    x = make_input((5, 2, 3), seed=1).astype(np.float32)
    h0 = make_input((4, 2, 4), seed=2).astype(np.float32)
    state = [h0, make_input((4, 2, 4), seed=4).astype(np.float32)] if mode == "LSTM" else [h0]
    compare_module(_WithState(ours), _WithState(theirs), [x, *state])


class _WithState:
    """Calls ``rnn(x, h0)`` so compare_module can pass the initial state as an input."""

    def __init__(self, rnn):
        self.rnn = rnn

    def __call__(self, x, *state):
        return self.rnn(x, state[0] if len(state) == 1 else state)

    def __getattr__(self, name):
        return getattr(self.rnn, name)


def test_rnn_relu_and_repr():
    ours, theirs = make_pair("RNN", 3, 4, 2, "relu", batch_first=True)
    assert repr(ours) == repr(theirs) == "RNN(3, 4, num_layers=2, batch_first=True)"
    assert ours.nonlinearity == "relu"
    compare_module(ours, theirs, [make_input((2, 6, 3), seed=5).astype(np.float32)])


def test_lstm_projection():
    ours, theirs = make_pair("LSTM", 3, 6, num_layers=2, proj_size=2, bidirectional=True)
    assert repr(ours) == repr(theirs)
    assert tuple(ours.weight_hr_l1_reverse.shape) == (2, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch: "LSTM with projections is not supported with oneDNN"
        outs, _ = compare_module(ours, theirs, [make_input((4, 2, 3), seed=6).astype(np.float32)])
    assert tuple(outs[0].shape) == (4, 2, 4) and tuple(outs[1].shape) == (4, 2, 2)


@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_unbatched_input(mode, batch_first):
    ours, theirs = make_pair(mode, 3, 4, num_layers=2, batch_first=batch_first)
    outs, _ = compare_module(ours, theirs, [make_input((5, 3), seed=7).astype(np.float32)])
    assert tuple(outs[0].shape) == (5, 4) and tuple(outs[1].shape) == (2, 4)


@pytest.mark.parametrize("name,chunks", [("RNNCell", 1), ("LSTMCell", 4), ("GRUCell", 3)])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batched", [True, False])
def test_cells(name, chunks, bias, batched):
    ours, theirs = make_pair(name, 3, 5, bias=bias)
    assert repr(ours) == repr(theirs)
    assert tuple(ours.weight_ih.shape) == (chunks * 5, 3)
    x = make_input((4, 3) if batched else (3,), seed=8).astype(np.float32)
    compare_module(ours, theirs, [x])


def test_cells_with_state_and_relu():
    ours, theirs = make_pair("RNNCell", 3, 4, nonlinearity="relu")
    assert repr(ours) == repr(theirs) == "RNNCell(3, 4, nonlinearity=relu)"
    x, h = make_input((2, 3), seed=1).astype(np.float32), make_input((2, 4), seed=2).astype(np.float32)
    compare_module(ours, theirs, [x, h])
    ours, theirs = make_pair("LSTMCell", 3, 4)
    c = make_input((2, 4), seed=3).astype(np.float32)
    compare_module(_WithState(ours), _WithState(theirs), [x, h, c])


@pytest.mark.parametrize("mode,gates", [("RNN", 1), ("LSTM", 4), ("GRU", 3)])
def test_parameter_shapes_and_default_init(mode, gates):
    distnn.manual_seed(0)
    rnn = getattr(nn, mode)(10, 64, num_layers=2, bidirectional=True)
    names = [n for n, _ in rnn.named_parameters()]
    assert names[:4] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    assert names[4] == "weight_ih_l0_reverse"
    assert tuple(rnn.weight_ih_l0.shape) == (gates * 64, 10)
    assert tuple(rnn.weight_ih_l1.shape) == (gates * 64, 128)  # both directions feed layer 1
    assert tuple(rnn.bias_hh_l1_reverse.shape) == (gates * 64,)
    everything = distnn.cat([p.detach().reshape(-1) for p in rnn.parameters()])
    assert_uniform(everything, 1 / math.sqrt(64))
    assert len(rnn.all_weights) == 4 and len(rnn.all_weights[0]) == 4


def test_gate_order_follows_torch():
    """LSTM gates are (i, f, g, o): with only the forget gate's bias large, c carries over."""
    lstm = nn.LSTMCell(1, 1)
    with distnn.no_grad():
        for p in lstm.parameters():
            p.zero_()
        lstm.bias_ih[1] = 100.0  # forget gate fully open, input gate at 0.5, g = tanh(0) = 0
    h, c = lstm(distnn.zeros(1, 1), (distnn.zeros(1, 1), distnn.full((1, 1), 0.75)))
    assert c.item() == pytest.approx(0.75)
    assert h.item() == pytest.approx(0.5 * math.tanh(0.75), rel=1e-6)


def test_dropout_between_layers():
    rnn = nn.GRU(3, 8, num_layers=3, dropout=0.5)
    x = distnn.randn(6, 2, 3)
    distnn.manual_seed(1)
    a, _ = rnn(x)
    distnn.manual_seed(2)
    b, _ = rnn(x)
    assert not np.allclose(a.detach().numpy(), b.detach().numpy())  # training: dropout active
    rnn.eval()
    c, _ = rnn(x)
    d, _ = rnn(x)
    np.testing.assert_array_equal(c.detach().numpy(), d.detach().numpy())


def test_dropout_needs_two_layers_warning():
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
        nn.LSTM(3, 4, dropout=0.2)


@pytest.mark.parametrize("kwargs,error,match", [
    ({"dropout": 1.5}, ValueError, "dropout should be a number in range"),
    ({"hidden_size": 0}, ValueError, "hidden_size must be greater than zero"),
    ({"num_layers": 0}, ValueError, "num_layers must be greater than zero"),
    ({"bias": 1}, TypeError, "bias should be of type bool, got: int"),
    ({"proj_size": 4}, ValueError, "proj_size has to be smaller than hidden_size"),
])
def test_constructor_errors(kwargs, error, match):
    args = {"input_size": 3, "hidden_size": 4, **kwargs}
    with pytest.raises(error, match=match):
        nn.LSTM(**args)


def test_forward_errors_match_torch_messages():
    rnn = nn.GRU(3, 4, num_layers=2)
    with pytest.raises(RuntimeError, match=r"input.size\(-1\) must be equal to input_size. Expected 3, got 5"):
        rnn(distnn.zeros(2, 1, 5))
    with pytest.raises(RuntimeError, match=r"Expected hidden size \(2, 1, 4\), got \[1, 1, 4\]"):
        rnn(distnn.zeros(2, 1, 3), distnn.zeros(1, 1, 4))
    with pytest.raises(ValueError, match="GRU: Expected input to be 2D or 3D, got 4D instead"):
        rnn(distnn.zeros(1, 2, 1, 3))
    with pytest.raises(ValueError, match="input dtype"):
        rnn(distnn.zeros(2, 1, 3, dtype=distnn.float64))
    lstm = nn.LSTM(3, 4)
    with pytest.raises(RuntimeError, match=r"Expected hidden\[1\] size \(1, 2, 4\), got \[1, 3, 4\]"):
        lstm(distnn.zeros(5, 2, 3), (distnn.zeros(1, 2, 4), distnn.zeros(1, 3, 4)))
    with pytest.raises(ValueError, match="proj_size argument is only supported for LSTM"):
        nn.GRU(3, 4, proj_size=2)


def test_long_sequence_trains():
    lstm = nn.LSTM(4, 8, batch_first=True)
    out, (h, c) = lstm(distnn.randn(2, 200, 4))
    out.sum().backward()
    assert lstm.weight_ih_l0.grad is not None and tuple(out.shape) == (2, 200, 8)

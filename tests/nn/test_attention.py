"""``nn.MultiheadAttention`` against PyTorch with PyTorch's weights loaded: parameter names,
repr and init; outputs, attention weights and the gradients of inputs and every parameter
across configurations, layouts and masks (attention 2-D/3-D, bool/float, key padding, both,
causal); eval and train; float64 tightly; and where PyTorch exports it from."""

import warnings

import numpy as np
import pytest

import distnn
import distnn.nn as nn
from layer_check import assert_uniform, compare_module, make_pair, requires_torch
from op_check import const, host, make_input, torch

pytestmark = requires_torch

E, HEADS, N, L, S = 8, 2, 2, 4, 5


class Called:
    """``fn(module, lib, *inputs)`` as a module call for compare_module: flags and masks are
    closed over, built with the library the module belongs to; None outputs dropped."""

    def __init__(self, module, fn):
        self.module, self.fn = module, fn

    def __call__(self, *inputs):
        lib = distnn if isinstance(self.module, nn.Module) else torch
        out = self.fn(self.module, lib, *inputs)
        return tuple(o for o in out if o is not None) if isinstance(out, tuple) else out

    def __getattr__(self, name):
        return getattr(self.module, name)


def compare(config, fn, arrays, dtype=np.float32, train=False, **tol):
    ours, theirs = make_pair("MultiheadAttention", E, HEADS, **config)
    for m in (ours, theirs):
        m.train(train)
    if dtype == np.float64:
        ours, theirs = ours.double(), theirs.double()
        tol = {"rtol": 1e-10, "atol": 1e-12}
    tol = tol or {"rtol": 1e-4, "atol": 1e-5}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's "mismatched key_padding_mask and attn_mask" and the like
        return compare_module(Called(ours, fn), Called(theirs, fn), [a.astype(dtype) for a in arrays], **tol)


def seq(length, seed, batch_first=False, width=E):
    return make_input((N, length, width) if batch_first else (length, N, width), seed=seed)


@pytest.mark.parametrize("config", [
    {},
    {"batch_first": True},
    {"bias": False},
    {"add_bias_kv": True},
    {"add_zero_attn": True, "batch_first": True},
    {"kdim": 3, "vdim": 5},
    {"dropout": 0.3},  # eval: no dropout
], ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "default")
@pytest.mark.parametrize("need_weights", [True, False])
def test_matches_torch(config, need_weights):
    bf = config.get("batch_first", False)
    q = seq(L, 1, bf)
    k, v = seq(S, 2, bf, config.get("kdim", E)), seq(S, 3, bf, config.get("vdim", E))
    if "kdim" in config:
        compare(config, lambda m, lib, q, k, v: m(q, k, v, need_weights=need_weights), [q, k, v])
        return
    compare(config, lambda m, lib, x: m(x, x, x, need_weights=need_weights), [q])  # self-attention: one GEMM
    compare(config, lambda m, lib, q, kv: m(q, kv, kv, need_weights=need_weights), [q, k])  # key is value
    compare(config, lambda m, lib, q, k, v: m(q, k, v, need_weights=need_weights), [q, k, v])


def test_per_head_weights_and_unbatched():
    compare({}, lambda m, lib, q, k: m(q, k, k, average_attn_weights=False), [seq(L, 1), seq(S, 2)])
    for bf in (False, True):
        compare({"batch_first": bf}, lambda m, lib, x: m(x, x, x), [make_input((L, E), seed=4)])


PAD = np.array([[False, False, False, True, True], [False, False, False, False, False]])
ATTN = make_input((L, S), seed=5) > 0.4


def masks(lib, kind, batch_first=False):
    """The ``attn_mask``/``key_padding_mask`` keyword arguments of one mask kind."""
    float_of = {"attn": np.where(ATTN, -np.inf, 0.0), "pad": np.where(PAD, -np.inf, 0.0)}
    dtype = lib.float32
    return {
        "bool_attn": {"attn_mask": const(lib, ATTN)},
        "float_attn": {"attn_mask": const(lib, make_input((L, S), seed=6)).to(dtype)},
        "attn_3d": {"attn_mask": const(lib, make_input((N * HEADS, L, S), seed=7)).to(dtype)},
        "bool_3d": {"attn_mask": const(lib, make_input((N * HEADS, L, S), seed=8) > 0.5)},
        "padding": {"key_padding_mask": const(lib, PAD)},
        "float_padding": {"key_padding_mask": const(lib, float_of["pad"]).to(dtype)},
        "both": {"attn_mask": const(lib, ATTN), "key_padding_mask": const(lib, PAD)},
        "both_float": {"attn_mask": const(lib, float_of["attn"]).to(dtype),
                       "key_padding_mask": const(lib, float_of["pad"]).to(dtype)},
    }[kind]


@pytest.mark.parametrize("kind", ["bool_attn", "float_attn", "attn_3d", "bool_3d", "padding", "float_padding",
                                  "both", "both_float"])
@pytest.mark.parametrize("need_weights", [True, False])
def test_masks(kind, need_weights):
    fn = lambda m, lib, q, kv: m(q, kv, kv, need_weights=need_weights, **masks(lib, kind))  # noqa: E731
    compare({}, fn, [seq(L, 1), seq(S, 2)])


CAUSAL = np.triu(np.full((L, L), -np.inf), 1)


@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("padding", [False, True])
def test_causal(need_weights, padding):
    """``is_causal`` with the causal mask: PyTorch uses the hint alone when it can."""
    def fn(m, lib, x):
        pad = {"key_padding_mask": const(lib, PAD[:, :L])} if padding else {}
        return m(x, x, x, attn_mask=const(lib, CAUSAL).to(lib.float32), is_causal=True, need_weights=need_weights,
                 **pad)
    compare({"batch_first": True}, fn, [seq(L, 1, True)])


def test_fully_masked_rows_match_torch():
    """A batch row all padding: NaN with need_weights (a plain softmax), zeros without (SDPA)."""
    pad = np.array([[True] * S, [False] * S])
    for need_weights in (True, False):
        outs, _ = compare({}, lambda m, lib, q, kv: m(q, kv, kv, need_weights=need_weights,
                                                       key_padding_mask=const(lib, pad)), [seq(L, 1), seq(S, 2)])
        out = host(outs[0])
        assert np.isnan(out[:, 0]).all() == need_weights and not np.isnan(out[:, 1]).any()


def test_float64_is_tight():
    compare({"add_bias_kv": True}, lambda m, lib, q, kv: m(q, kv, kv, **masks(lib, "both")), [seq(L, 1), seq(S, 2)],
            dtype=np.float64)


def test_train_mode_without_dropout_matches():
    compare({"batch_first": True}, lambda m, lib, x: m(x, x, x, **masks(lib, "padding")), [seq(S, 1, True)],
            train=True)


def test_train_mode_dropout_drops_weights():
    mha = nn.MultiheadAttention(E, HEADS, dropout=0.5)
    x = distnn.from_numpy(seq(L, 1).astype(np.float32))
    _, weights = mha(x, x, x, average_attn_weights=False)
    assert (weights.detach().numpy() == 0).any()
    _, weights = mha.eval()(x, x, x, average_attn_weights=False)
    np.testing.assert_allclose(weights.detach().numpy().sum(-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("config", [{}, {"kdim": 3, "vdim": 5, "bias": False}, {"add_bias_kv": True}])
def test_parameters_repr_and_init(config):
    ours, theirs = make_pair("MultiheadAttention", E, HEADS, **config)
    assert repr(ours) == repr(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [(n, tuple(p.shape)) for n, p in ours.named_parameters()] == \
        [(n, tuple(p.shape)) for n, p in theirs.named_parameters()]
    if "kdim" not in config:
        assert_uniform(ours.in_proj_weight, (6 / (E + 3 * E)) ** 0.5)  # xavier over (3E, E)
        assert not ours.in_proj_bias.detach().numpy().any() and not ours.out_proj.bias.detach().numpy().any()


def test_merge_masks_matches_torch():
    ours, theirs = make_pair("MultiheadAttention", E, HEADS, batch_first=True)
    pad = np.where(PAD[:, :L], -np.inf, 0.0).astype(np.float32)
    attn = make_input((L, L), seed=9).astype(np.float32)
    got, kind = ours.merge_masks(distnn.from_numpy(attn), distnn.from_numpy(pad), distnn.zeros(N, L, E))
    want, want_kind = theirs.merge_masks(torch.from_numpy(attn), torch.from_numpy(pad), torch.zeros(N, L, E))
    assert kind == want_kind == 2
    np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_exported_where_pytorch_has_it():
    from distnn.nn.modules.activation import MultiheadAttention
    assert MultiheadAttention is nn.MultiheadAttention is nn.modules.MultiheadAttention


def test_errors():
    with pytest.raises(AssertionError, match="embed_dim must be divisible by num_heads"):
        nn.MultiheadAttention(5, 2)
    with pytest.raises(ValueError, match="embed_dim and num_heads must be greater than 0"):
        nn.MultiheadAttention(0, 2)
    mha = nn.MultiheadAttention(E, HEADS)
    x = distnn.zeros(L, N, E)
    with pytest.raises(RuntimeError, match=r"The shape of the 2D attn_mask is torch.Size\(\[2, 2\]\), but should "
                                           r"be \(4, 4\)."):
        mha(x, x, x, attn_mask=distnn.zeros(2, 2))
    with pytest.raises(RuntimeError, match="Need attn_mask if specifying the is_causal hint"):
        mha(x, x, x, is_causal=True)
    with pytest.raises(AssertionError, match="expected `key` and `value` to be 3-D"):
        mha(x, x[0], x[0])

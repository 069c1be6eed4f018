"""``F.scaled_dot_product_attention`` and ``F.multi_head_attention_forward`` against PyTorch:
masks (bool, float, learnable, rows with nothing to attend to), causal, scale, grouped
heads, values and gradients (gradchecked in float64), and PyTorch's errors."""

import numpy as np
import pytest

import distnn
import distnn.nn.functional as F
from op_check import check_op, compare_with_torch, make_input, requires_torch, torch

Q, K, V = make_input((2, 3, 4, 5), seed=1), make_input((2, 3, 6, 5), seed=2), make_input((2, 3, 6, 4), seed=3)


def sdpa(**kwargs):
    return lambda lib, q, k, v, *mask: lib.nn.functional.scaled_dot_product_attention(
        q, k, v, *mask, **kwargs)


@pytest.mark.parametrize("kwargs", [{}, {"is_causal": True}, {"scale": 0.7}, {"dropout_p": 0.0}],
                         ids=["plain", "causal", "scale", "dropout0"])
def test_sdpa_4d(kwargs):
    check_op(sdpa(**kwargs), [Q, K, V])


def test_sdpa_causal_square():
    check_op(sdpa(is_causal=True), [Q, K[:, :, :4], V[:, :, :4]])


# an empty row (query 1 may attend to no key) gives zeros and no gradient, as in PyTorch
BOOL_MASK = make_input((4, 6), seed=4) > -0.3
BOOL_MASK[1] = False
FLOAT_MASK = np.where(make_input((4, 6), seed=5) > -0.3, make_input((4, 6), seed=6), -np.inf)
FLOAT_MASK[2] = -np.inf


@pytest.mark.parametrize("mask", [BOOL_MASK, BOOL_MASK[None, None, :1], FLOAT_MASK, FLOAT_MASK[None]],
                         ids=["bool", "bool_broadcast_row", "float", "float_3d"])
def test_sdpa_masks(mask):
    requires = [True, True, True, False]
    check_op(sdpa(), [Q, K, V, mask], requires_grad=requires)


def test_sdpa_learnable_float_mask_gets_gradients():
    bias = make_input((3, 4, 6), seed=7)
    check_op(sdpa(), [Q, K, V, bias])


def test_sdpa_grouped_query_heads():
    q = make_input((2, 6, 4, 5), seed=8)
    check_op(sdpa(enable_gqa=True), [q, K, V])
    check_op(sdpa(enable_gqa=True, is_causal=True), [q, K[:, :2], V[:, :2]], gradcheck=False)


def test_sdpa_dropout_is_inverted_and_random():
    q, k, v = (distnn.from_numpy(a.astype(np.float32)) for a in (Q, K, V))
    plain = F.scaled_dot_product_attention(q, k, v)
    ones = distnn.ones(2, 3, 6, 1)
    kept = F.scaled_dot_product_attention(q, k, ones, dropout_p=0.5)  # rows of surviving weights * 2
    assert not np.allclose(kept.numpy(), 1.0) and tuple(plain.shape) == (2, 3, 4, 4)
    np.testing.assert_allclose(F.scaled_dot_product_attention(q, k, ones, dropout_p=0.0).numpy(), 1.0, rtol=1e-6)


def test_sdpa_errors():
    q = distnn.ones(1, 2, 3)
    with pytest.raises(RuntimeError, match="Explicit attn_mask should not be set when is_causal=True"):
        F.scaled_dot_product_attention(q, q, q, attn_mask=distnn.ones(2, 2, dtype=distnn.bool), is_causal=True)
    with pytest.raises(RuntimeError, match="Expected attn_mask dtype to be bool or float or to match query dtype"):
        F.scaled_dot_product_attention(q, q, q, attn_mask=distnn.ones(2, 2, dtype=distnn.int64))
    with pytest.raises(RuntimeError, match="Expected query, key, and value to have the same dtype"):
        F.scaled_dot_product_attention(q.double(), q, q)
    with pytest.raises(RuntimeError, match="Number of heads in key and value must divide"):
        F.scaled_dot_product_attention(distnn.ones(1, 4, 2, 3), distnn.ones(1, 3, 2, 3), distnn.ones(1, 3, 2, 3),
                                       enable_gqa=True)


# --- multi_head_attention_forward -------------------------------------------------------

E, HEADS = 4, 2


def mha_forward(**kwargs):
    """``F.multi_head_attention_forward`` on (L, N, E) query/key/value, with the
    projection weights as inputs (so they are gradchecked too)."""
    def fn(lib, q, k, v, w_in, b_in, w_out, b_out, *extra):
        if kwargs.get("use_separate_proj_weight"):
            wq, wk, wv = w_in.chunk(3)
            sep = {"q_proj_weight": wq, "k_proj_weight": wk, "v_proj_weight": wv}
            w_in = None
        else:
            sep = {}
        bias_kv = tuple(e.reshape(1, 1, E) for e in extra) or (None, None)
        out, weights = lib.nn.functional.multi_head_attention_forward(
            q, k, v, E, HEADS, w_in, b_in, *bias_kv, kwargs.get("add_zero_attn", False), 0.0, w_out, b_out,
            **{k: v for k, v in kwargs.items() if k != "add_zero_attn"}, **sep)
        return out if weights is None else (out, weights)
    return fn


WEIGHTS = [make_input((3 * E, E), seed=10), make_input((3 * E,), seed=11), make_input((E, E), seed=12),
           make_input((E,), seed=13)]
X, MEM = make_input((3, 2, E), seed=14), make_input((4, 2, E), seed=15)


@pytest.mark.parametrize("kwargs,gradcheck", [
    ({}, True),
    ({"need_weights": False}, True),
    ({"average_attn_weights": False}, False),
    ({"use_separate_proj_weight": True}, False),
    ({"add_zero_attn": True}, False),
], ids=["weights", "no_weights", "per_head_weights", "separate_proj", "zero_attn"])
def test_multi_head_attention_forward(kwargs, gradcheck):
    check_op(mha_forward(**kwargs), [X, MEM, MEM[:, :, ::-1].copy(), *WEIGHTS], gradcheck=gradcheck)


def test_multi_head_attention_forward_bias_kv():
    bias_k, bias_v = make_input((E,), seed=16), make_input((E,), seed=17)
    check_op(mha_forward(), [X, MEM, MEM, *WEIGHTS, bias_k, bias_v])


@requires_torch
def test_multi_head_attention_forward_static_kv():
    static_k, static_v = (make_input((2 * HEADS, 5, E // HEADS), seed=s) for s in (18, 19))

    def fn(lib, q, w_in, b_in, w_out, b_out, sk, sv):
        return lib.nn.functional.multi_head_attention_forward(q, q, q, E, HEADS, w_in, b_in, None, None, False,
                                                              0.0, w_out, b_out, static_k=sk, static_v=sv)[0]
    compare_with_torch(fn, [X, *WEIGHTS, static_k, static_v], rtol=1e-4, atol=1e-5, layouts=("contiguous",))


@requires_torch
def test_canonical_mask_matches_torch():
    mask = np.array([[True, False], [False, False]])
    ours = F._canonical_mask(distnn.from_numpy(mask), "m", None, "", distnn.float64)
    theirs = torch.nn.functional._canonical_mask(torch.from_numpy(mask), "m", None, "", torch.float64)
    assert ours.dtype == distnn.float64
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    with pytest.warns(UserWarning, match="Support for mismatched m and other is deprecated"):
        F._canonical_mask(distnn.from_numpy(mask), "m", distnn.float32, "other", distnn.float32)
    with pytest.raises(AssertionError, match="only bool and floating types of m are supported"):
        F._canonical_mask(distnn.ones(2, dtype=distnn.int64), "m", None, "", distnn.float32)

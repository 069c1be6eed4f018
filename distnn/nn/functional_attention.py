"""The attention part of ``nn.functional``: ``scaled_dot_product_attention`` and
``multi_head_attention_forward`` (what ``nn.MultiheadAttention`` runs), with PyTorch's
mask conventions, shapes and errors, composed from differentiable ops.

Heads are batched: queries, keys and values are laid out as ``(N * heads, L, E / heads)``
so each product is one batched matmul, with no loop over heads or positions.
"""

import math
import warnings

from .. import dtypes
from ..backend import array_module
from ..ops.softmaxes import softmax
from ..ops.index import masked_fill
from ..ops.join import cat
from ..ops.linalg import linear, matmul
from ..ops.dropouts import dropout
from ..ops.padding import pad
from ..tensor import _wrap

__all__ = ["scaled_dot_product_attention", "multi_head_attention_forward"]


# --- scaled dot-product attention ------------------------------------------------------

def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                                 scale=None, enable_gqa=False):
    """``softmax(Q K^T * scale + mask) V`` over the last two dims; a bool ``attn_mask`` says
    which keys each query may attend to (True: attend), a float one is added to the
    scores. A query that may attend to no key gets zeros, as in PyTorch."""
    _check_sdpa(query, key, value, attn_mask, is_causal)
    if enable_gqa:
        key, value = _repeat_heads(key, query), _repeat_heads(value, query)
    L, S = query.shape[-2], key.shape[-2]
    scale = 1 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = matmul(query * scale, key.transpose(-2, -1))
    if is_causal:
        xp = array_module(query._data)
        above = _wrap(xp.triu(xp.ones((L, S), dtype=bool), 1))
        weights = softmax(masked_fill(scores, above, float("-inf")), -1)
    else:
        weights = _masked_softmax(scores, attn_mask)
    if dropout_p > 0.0:
        weights = dropout(weights, dropout_p, True)
    return matmul(weights, value)


def _masked_softmax(scores, mask):
    """Softmax over the last dim after the mask; rows the mask leaves empty are zero."""
    if mask is None:
        return softmax(scores, -1)
    xp = array_module(mask._data)
    if mask.dtype == dtypes.bool_:
        scores = masked_fill(scores, mask.logical_not(), float("-inf"))
        empty = ~mask._data.any(axis=-1, keepdims=True)
    else:
        scores = scores + mask
        empty = xp.isneginf(mask._data).all(axis=-1, keepdims=True)
    # The plain softmax when no row is empty; a GPU takes the masked path whatever the
    # mask, since asking would wait for it (masking no row changes nothing).
    if xp.__name__ == "numpy" and not empty.any():
        return softmax(scores, -1)
    empty = _wrap(empty)
    return masked_fill(softmax(masked_fill(scores, empty, 0.0), -1), empty, 0.0)


def _repeat_heads(t, query):
    """Grouped-query attention: each key/value head serves ``Hq / Hkv`` query heads in turn."""
    hq, hkv = query.shape[-3], t.shape[-3]
    if hq % hkv:
        raise RuntimeError("Number of heads in key and value must divide the number of heads in query")
    if hq == hkv:
        return t
    shape = tuple(t.shape)
    grouped = t.unsqueeze(-3).expand(*shape[:-2], hq // hkv, *shape[-2:])
    return grouped.reshape(*shape[:-3], hq, *shape[-2:])


def _check_sdpa(query, key, value, attn_mask, is_causal):
    if not query.dtype == key.dtype == value.dtype:
        raise RuntimeError("Expected query, key, and value to have the same dtype, but got query.dtype: "
                           f"{_c_name(query.dtype)} key.dtype: {_c_name(key.dtype)} and value.dtype: "
                           f"{_c_name(value.dtype)} instead.")
    if attn_mask is not None and attn_mask.dtype not in (dtypes.bool_, query.dtype):
        raise RuntimeError("Expected attn_mask dtype to be bool or float or to match query dtype, but got "
                           f"attn_mask.dtype: {_c_name(attn_mask.dtype)} and  query.dtype: "
                           f"{_c_name(query.dtype)} instead.")
    if is_causal and attn_mask is not None:
        raise RuntimeError("_scaled_dot_product_attention: Explicit attn_mask should not be set when "
                           "is_causal=True")


def _c_name(dtype):
    """The C++ type name PyTorch's SDPA errors print."""
    return {"float32": "float", "float64": "double", "float16": "c10::Half", "int64": "long int",
            "int32": "int", "bool": "bool"}.get(dtype.name, dtype.name)


# --- masks as nn.MultiheadAttention takes them -------------------------------------------

def _canonical_mask(mask, mask_name, other_type, other_name, target_type, check_other=True):
    """A bool mask (True: masked out) as a float one of ``target_type`` (-inf: masked out)."""
    if mask is None:
        return None
    if mask.dtype != dtypes.bool_ and not mask.is_floating_point():
        raise AssertionError(f"only bool and floating types of {mask_name} are supported")
    if check_other and other_type is not None and mask.dtype != other_type:
        warnings.warn(f"Support for mismatched {mask_name} and {other_name} is deprecated. Use same type "
                      "for both instead.", stacklevel=3)
    if mask.is_floating_point():
        return mask
    xp = array_module(mask._data)
    dtype = target_type.np
    return _wrap(xp.where(mask._data, dtype.type(-math.inf), dtype.type(0)))


def _none_or_dtype(input):
    if input is None:
        return None
    if hasattr(input, "dtype") and hasattr(input, "_data"):
        return input.dtype
    raise RuntimeError("input to _none_or_dtype() must be None or torch.Tensor")


# --- multi-head attention --------------------------------------------------------------

def multi_head_attention_forward(query, key, value, embed_dim_to_check, num_heads, in_proj_weight, in_proj_bias,
                                 bias_k, bias_v, add_zero_attn, dropout_p, out_proj_weight, out_proj_bias,
                                 training=True, key_padding_mask=None, need_weights=True, attn_mask=None,
                                 use_separate_proj_weight=False, q_proj_weight=None, k_proj_weight=None,
                                 v_proj_weight=None, static_k=None, static_v=None, average_attn_weights=True,
                                 is_causal=False):
    """PyTorch's multi-head attention on ``(L, N, E)`` inputs (or unbatched ``(L, E)``):
    returns the output and, when ``need_weights``, the attention weights (averaged over
    heads when ``average_attn_weights``)."""
    return _multi_head_attention(
        query, key, value, embed_dim_to_check, num_heads, in_proj_weight, in_proj_bias, bias_k, bias_v,
        add_zero_attn, dropout_p, out_proj_weight, out_proj_bias, training, key_padding_mask, need_weights,
        attn_mask, use_separate_proj_weight, q_proj_weight, k_proj_weight, v_proj_weight, static_k, static_v,
        average_attn_weights, is_causal, batch_first=False)


def _multi_head_attention(query, key, value, embed_dim_to_check, num_heads, in_proj_weight, in_proj_bias,
                          bias_k, bias_v, add_zero_attn, dropout_p, out_proj_weight, out_proj_bias, training,
                          key_padding_mask, need_weights, attn_mask, use_separate_proj_weight, q_proj_weight,
                          k_proj_weight, v_proj_weight, static_k, static_v, average_attn_weights, is_causal,
                          batch_first):
    """``multi_head_attention_forward`` for either layout: ``batch_first`` inputs are
    ``(N, L, E)`` and are never transposed, the heads are split straight out of them."""
    is_batched = _mha_shape_check(query, key, value, key_padding_mask, attn_mask, num_heads)
    bdim = 0 if batch_first else 1
    if not is_batched:
        query, key, value = query.unsqueeze(bdim), key.unsqueeze(bdim), value.unsqueeze(bdim)
        if key_padding_mask is not None:
            key_padding_mask = key_padding_mask.unsqueeze(0)
    bsz, tgt_len, embed_dim = query.shape[bdim], query.shape[1 - bdim], query.shape[2]

    key_padding_mask = _canonical_mask(key_padding_mask, "key_padding_mask", _none_or_dtype(attn_mask),
                                       "attn_mask", query.dtype)
    if is_causal and attn_mask is None:
        raise RuntimeError("Need attn_mask if specifying the is_causal hint. You may use the Transformer module "
                           "method `generate_square_subsequent_mask` to create this mask.")
    if is_causal and key_padding_mask is None and not need_weights:
        attn_mask = None  # the hint alone says it: no mask to build or add
    else:
        attn_mask = _canonical_mask(attn_mask, "attn_mask", None, "", query.dtype, check_other=False)
        if key_padding_mask is not None:
            is_causal = False  # the merged mask is no longer causal
    if embed_dim != embed_dim_to_check:
        raise AssertionError(f"was expecting embedding dimension of {embed_dim_to_check}, but got {embed_dim}")
    head_dim = embed_dim // num_heads
    if head_dim * num_heads != embed_dim:
        raise AssertionError(f"embed_dim {embed_dim} not divisible by num_heads {num_heads}")
    if use_separate_proj_weight:
        if tuple(key.shape[:2]) != tuple(value.shape[:2]):
            raise AssertionError(f"key's sequence and batch dims {key.shape[:2]} do not match value's "
                                 f"{value.shape[:2]}")
    elif tuple(key.shape) != tuple(value.shape):
        raise AssertionError(f"key shape {key.shape} does not match value shape {value.shape}")

    q, k, v = _in_projection(query, key, value, num_heads, in_proj_weight, in_proj_bias,
                             use_separate_proj_weight, (q_proj_weight, k_proj_weight, v_proj_weight), batch_first)
    src_len = key.shape[1 - bdim]
    if attn_mask is not None:
        attn_mask = _mask_3d(attn_mask, bsz * num_heads, tgt_len, src_len)

    if bias_k is not None and bias_v is not None:
        if static_k is not None:
            raise AssertionError("bias cannot be added to static key.")
        if static_v is not None:
            raise AssertionError("bias cannot be added to static value.")
        k = cat([k, _bias_heads(bias_k, bsz, num_heads, head_dim)], 1)
        v = cat([v, _bias_heads(bias_v, bsz, num_heads, head_dim)], 1)
        attn_mask, key_padding_mask = _pad_masks(attn_mask, key_padding_mask)
    elif bias_k is not None:
        raise AssertionError("bias_k is set but bias_v is None")
    elif bias_v is not None:
        raise AssertionError("bias_v is set but bias_k is None")
    k = k if static_k is None else _static(static_k, "static_k", bsz * num_heads, head_dim)
    v = v if static_v is None else _static(static_v, "static_v", bsz * num_heads, head_dim)
    if add_zero_attn:
        zeros = _wrap(array_module(k._data).zeros((bsz * num_heads, 1, head_dim), k._data.dtype))
        k, v = cat([k, zeros], 1), cat([v, zeros.to(v.dtype)], 1)
        attn_mask, key_padding_mask = _pad_masks(attn_mask, key_padding_mask)
    src_len = k.shape[1]

    if key_padding_mask is not None:
        for i, size in enumerate((bsz, src_len)):
            if key_padding_mask.shape[i] != size:
                raise AssertionError(f"Expected key_padded_mask.shape[{i}] to be {size}, but got "
                                     f"{key_padding_mask.shape[i]}")
        padding = (key_padding_mask.reshape(bsz, 1, 1, src_len).expand(-1, num_heads, -1, -1)
                   .reshape(bsz * num_heads, 1, src_len))
        attn_mask = padding if attn_mask is None else attn_mask + padding
    if not training:
        dropout_p = 0.0

    if need_weights:
        # PyTorch's explicit path: a plain softmax (a fully masked row is NaN there too)
        scores = matmul(q * math.sqrt(1.0 / head_dim), k.transpose(-2, -1))
        if attn_mask is not None:
            scores = scores + attn_mask
        weights = softmax(scores, -1)
        if dropout_p > 0.0:
            weights = dropout(weights, dropout_p, True)
        out = matmul(weights, v)
    else:
        out = scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, is_causal)
        weights = None
    out = _merge_heads(out, bsz, num_heads, batch_first)
    out = linear(out, out_proj_weight, out_proj_bias)
    out = out.reshape(*((bsz, tgt_len) if batch_first else (tgt_len, bsz)), embed_dim)
    if weights is not None:
        weights = weights.reshape(bsz, num_heads, tgt_len, src_len)
        if average_attn_weights:
            weights = weights.mean(1)
    if not is_batched:
        out = out.squeeze(bdim)
        weights = weights.squeeze(0) if weights is not None else None
    return out, weights


def _in_projection(query, key, value, num_heads, in_proj_weight, in_proj_bias, separate, weights, batch_first):
    """``q, k, v`` as ``(N * heads, length, head_dim)``: one GEMM for self-attention,
    two when key is value, three otherwise, as PyTorch splits the packed weight."""
    E = query.shape[-1]
    b = in_proj_bias
    if not separate:
        if in_proj_weight is None:
            raise AssertionError("use_separate_proj_weight is False but in_proj_weight is None")
        if key is value and query is key:
            return _split_heads(linear(query, in_proj_weight, b), 3, num_heads, batch_first)
        if key is value:
            q = _split_heads(linear(query, in_proj_weight[:E], None if b is None else b[:E]), 1, num_heads,
                             batch_first)[0]
            k, v = _split_heads(linear(key, in_proj_weight[E:], None if b is None else b[E:]), 2, num_heads,
                                batch_first)
            return q, k, v
        w_q, w_k, w_v = in_proj_weight.chunk(3)
    else:
        for name, w in zip("qkv", weights):
            if w is None:
                raise AssertionError(f"use_separate_proj_weight is True but {name}_proj_weight is None")
        w_q, w_k, w_v = weights
        for what, w, x in (("query", w_q, query), ("key", w_k, key), ("value", w_v, value)):
            if tuple(w.shape) != (E, x.shape[-1]):
                raise AssertionError(f"expecting {what} weights shape of {(E, x.shape[-1])}, but got "
                                     f"{tuple(w.shape)}")
    b_q, b_k, b_v = (None, None, None) if b is None else b.chunk(3)
    return tuple(_split_heads(linear(x, w, bias), 1, num_heads, batch_first)[0]
                 for x, w, bias in ((query, w_q, b_q), (key, w_k, b_k), (value, w_v, b_v)))


def _split_heads(proj, parts, num_heads, batch_first):
    """``(L, N, parts * E)`` (or ``(N, L, ...)``) -> ``parts`` tensors ``(N * heads, L, E / heads)``,
    one copy for all of them."""
    first, second, width = proj.shape
    head_dim = width // (parts * num_heads)
    split = proj.reshape(first, second, parts, num_heads, head_dim)
    split = split.permute(2, 0, 3, 1, 4) if batch_first else split.permute(2, 1, 3, 0, 4)
    length = second if batch_first else first
    return split.reshape(parts, -1, length, head_dim).unbind(0)


def _merge_heads(out, bsz, num_heads, batch_first):
    """``(N * heads, L, head_dim)`` -> ``(N * L, E)`` or ``(L * N, E)``, rows in the output's order."""
    _, length, head_dim = out.shape
    out = out.reshape(bsz, num_heads, length, head_dim)
    out = out.permute(0, 2, 1, 3) if batch_first else out.permute(2, 0, 1, 3)
    return out.reshape(bsz * length, num_heads * head_dim)


def _bias_heads(bias, bsz, num_heads, head_dim):
    """``bias_k``/``bias_v`` (1, 1, E) as one more key for each batch row and head."""
    return bias.reshape(1, num_heads, 1, head_dim).expand(bsz, -1, -1, -1).reshape(bsz * num_heads, 1, head_dim)


def _pad_masks(attn_mask, key_padding_mask):
    """One more key (a bias or zero key): every mask lets every query see it."""
    return (None if attn_mask is None else pad(attn_mask, (0, 1)),
            None if key_padding_mask is None else pad(key_padding_mask, (0, 1)))


def _static(t, name, rows, head_dim):
    if t.shape[0] != rows:
        raise AssertionError(f"expecting {name}.size(0) of {rows}, but got {t.shape[0]}")
    if t.shape[2] != head_dim:
        raise AssertionError(f"expecting {name}.size(2) of {head_dim}, but got {t.shape[2]}")
    return t


def _mask_3d(attn_mask, rows, tgt_len, src_len):
    if attn_mask.ndim == 2:
        if tuple(attn_mask.shape) != (tgt_len, src_len):
            raise RuntimeError(f"The shape of the 2D attn_mask is {attn_mask.shape}, but should be "
                               f"{(tgt_len, src_len)}.")
        return attn_mask.unsqueeze(0)
    if attn_mask.ndim == 3:
        if tuple(attn_mask.shape) != (rows, tgt_len, src_len):
            raise RuntimeError(f"The shape of the 3D attn_mask is {attn_mask.shape}, but should be "
                               f"{(rows, tgt_len, src_len)}.")
        return attn_mask
    raise RuntimeError(f"attn_mask's dimension {attn_mask.ndim} is not supported")


def _mha_shape_check(query, key, value, key_padding_mask, attn_mask, num_heads):
    """Whether the inputs are batched (3-D query) or not (2-D), checking the rest agrees."""
    if query.ndim == 3:
        if key.ndim != 3 or value.ndim != 3:
            raise AssertionError("For batched (3-D) `query`, expected `key` and `value` to be 3-D but found "
                                 f"{key.ndim}-D and {value.ndim}-D tensors respectively")
        if key_padding_mask is not None and key_padding_mask.ndim != 2:
            raise AssertionError("For batched (3-D) `query`, expected `key_padding_mask` to be `None` or 2-D "
                                 f"but found {key_padding_mask.ndim}-D tensor instead")
        if attn_mask is not None and attn_mask.ndim not in (2, 3):
            raise AssertionError("For batched (3-D) `query`, expected `attn_mask` to be `None`, 2-D or 3-D but "
                                 f"found {attn_mask.ndim}-D tensor instead")
        return True
    if query.ndim == 2:
        if key.ndim != 2 or value.ndim != 2:
            raise AssertionError("For unbatched (2-D) `query`, expected `key` and `value` to be 2-D but found "
                                 f"{key.ndim}-D and {value.ndim}-D tensors respectively")
        if key_padding_mask is not None and key_padding_mask.ndim != 1:
            raise AssertionError("For unbatched (2-D) `query`, expected `key_padding_mask` to be `None` or 1-D "
                                 f"but found {key_padding_mask.ndim}-D tensor instead")
        if attn_mask is not None:
            if attn_mask.ndim not in (2, 3):
                raise AssertionError("For unbatched (2-D) `query`, expected `attn_mask` to be `None`, 2-D or "
                                     f"3-D but found {attn_mask.ndim}-D tensor instead")
            expected = (num_heads, query.shape[0], key.shape[0])
            if attn_mask.ndim == 3 and tuple(attn_mask.shape) != expected:
                raise AssertionError(f"Expected `attn_mask` shape to be {expected} but got {attn_mask.shape}")
        return False
    raise AssertionError(f"query should be unbatched 2D or batched 3D tensor but received {query.ndim}-D query "
                         "tensor")

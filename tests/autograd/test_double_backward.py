"""The double-backward contract, op by op: an op class that sets ``double_backward = True``
passes full-mode ``gradgradcheck``, one that does not refuses a second derivative with
an error naming its node, and a census fails when an op implementation has no case.

Each case is ``(id, fn, inputs)``: ``fn`` takes float64 leaves (index tensors and masks
are closed over) and is deterministic. Inputs keep away from kinks and ties; outputs of
ops that are linear or piecewise linear are squared or multiplied by another input, so
the second derivative has something to check. Whether a case goes to gradgradcheck or
to the refusal test is read from its graph: refused if an op in it claims no double
backward.
"""

import re

import numpy as np
import pytest

import distnn
import distnn.nn  # noqa: F401  (its ops join the census)
import distnn.nn.functional as F
from distnn.autograd.function import Op
from op_check import DEVICE

grad = distnn.autograd.grad


# --- inputs ----------------------------------------------------------------------

def _leaf(array):
    return distnn.tensor(array, dtype=distnn.float64, device=DEVICE, requires_grad=True)


def uniform(shape, seed, low=-1.0, high=1.0):
    return _leaf(np.random.default_rng(seed).uniform(low, high, size=shape))


def _spread(shape, seed, low, high, kinks):
    n = int(np.prod(shape))
    step = (high - low) / n
    values = low + step * (np.arange(n) + 0.63)  # off-centre, so no two |values| tie either
    for k in kinks:
        near = np.abs(values - k) < step / 3
        values = np.where(near, k + np.where(values >= k, step, -step) / 3, values)
    return np.random.default_rng(seed).permutation(values).reshape(shape)


def spread(shape, seed, low=-1.0, high=1.0, kinks=(0.0,)):
    """Distinct values spread evenly over [low, high] in random order, none closer than a
    third of their spacing to a kink: no ties for max and pooling, no jump in the
    derivatives of relu, abs or clamp within a finite difference of any input."""
    return _leaf(_spread(shape, seed, low, high, kinks))


def apart(shape, seed, kinks=(0.0,), low=-1.5, high=1.5):
    """Two leaves x, y whose difference x - y is ``spread`` (off the ``kinks``): no ties
    for maximum and minimum, no kinks of l1, smooth l1 or huber losses."""
    x = np.random.default_rng(seed).uniform(-1, 1, size=shape)
    return _leaf(x), _leaf(x - _spread(shape, seed + 1, low, high, kinks))


def const(data, dtype=None):
    """A constant (no grad): class indices, masks, weights, running statistics."""
    return distnn.tensor(np.asarray(data), dtype=dtype, device=DEVICE)


def const64(shape, seed, low=0.5, high=1.5):
    return const(np.random.default_rng(seed).uniform(low, high, size=shape), distnn.float64)


def case(case_id, fn, *inputs):
    return case_id, fn, inputs


_ROWS = [2, 0, 2]  # repeated: gradients accumulate
_MASK = np.array([[True, False, True, True], [False, False, True, False], [True, True, False, True]])
_GATHER = [[0, 0], [1, 3], [2, 1]]
_SCATTER = [[3, 0], [1, 2], [0, 3]]  # no repeats within a row: scatter's result is defined


# --- cases, by op family -----------------------------------------------------------

ACTIVATION = [
    case("relu", lambda x: F.relu(x) ** 2, spread((2, 3), 1, -2, 2)),
    case("relu6", lambda x: F.relu6(x) ** 2, spread((2, 4), 2, -1, 7, kinks=(0, 6))),
    case("hardtanh", lambda x: F.hardtanh(x, -0.5, 0.8) ** 2, spread((2, 3), 3, kinks=(-0.5, 0.8))),
    case("threshold", lambda x: F.threshold(x, 0.1, -2.0) ** 2, spread((2, 3), 4, kinks=(0.1,))),
    case("leaky_relu", lambda x: F.leaky_relu(x, 0.2) ** 2, spread((2, 3), 5)),
    case("prelu_single_weight", lambda x, w: F.prelu(x, w) ** 2, spread((2, 3, 2), 6), uniform((1,), 7, 0.1, 0.4)),
    case("prelu_per_channel", lambda x, w: F.prelu(x, w) ** 2, spread((2, 3, 2), 8), uniform((3,), 9, 0.1, 0.4)),
    case("elu", lambda x: F.elu(x, 0.7), spread((2, 3), 10, -2, 2)),
    case("selu", lambda x: F.selu(x), spread((2, 3), 11, -2, 2)),
    case("celu", lambda x: F.celu(x, 1.3), spread((2, 3), 12, -2, 2)),
    case("gelu", lambda x: F.gelu(x), uniform((2, 3), 13, -2, 2)),
    case("gelu_tanh", lambda x: F.gelu(x, approximate="tanh"), uniform((2, 3), 14, -2, 2)),
    case("hardshrink", lambda x: F.hardshrink(x, 0.5) ** 2, spread((2, 3), 15, kinks=(-0.5, 0.5))),
    case("softshrink", lambda x: F.softshrink(x, 0.5) ** 2, spread((2, 3), 16, kinks=(-0.5, 0.5))),
    case("hardsigmoid", lambda x: F.hardsigmoid(x) ** 2, spread((2, 4), 17, -4, 4, kinks=(-3, 3))),
    case("hardswish", lambda x: F.hardswish(x), spread((2, 4), 18, -4, 4, kinks=(-3, 3))),
    case("logsigmoid", lambda x: F.logsigmoid(x), uniform((2, 3), 19, -2, 2)),
    case("mish", lambda x: F.mish(x), uniform((2, 3), 20, -2, 2)),
    case("sigmoid", lambda x: x.sigmoid(), uniform((2, 3), 21, -2, 2)),
    case("silu", lambda x: F.silu(x), uniform((2, 3), 22, -2, 2)),
    case("tanh", lambda x: x.tanh(), uniform((2, 3), 23, -2, 2)),
    # beta * x crosses the threshold (x = 0.75): both branches
    case("softplus", lambda x: F.softplus(x, beta=2.0, threshold=1.5), spread((2, 3), 24, -2, 2, kinks=(0.75,))),
    case("softmax", lambda x: F.softmax(x, dim=1), uniform((2, 4), 25, -2, 2)),
    case("softmin", lambda x: F.softmin(x, dim=0), uniform((3, 2), 26, -2, 2)),
    case("log_softmax", lambda x: F.log_softmax(x, dim=-1), uniform((2, 4), 27, -2, 2)),
]

_LABELS = [1, 3, 0]
_LABELS_4D = [[[0, 2], [1, 1]], [[2, 0], [0, 1]]]

CLASSIFICATION_LOSS = [
    case("cross_entropy", lambda x: F.cross_entropy(x, const(_LABELS)), uniform((3, 4), 40, -2, 2)),
    case("cross_entropy_weight_ignore_index",
         lambda x: F.cross_entropy(x, const(_LABELS), weight=const64((4,), 41), ignore_index=0),
         uniform((3, 4), 42, -2, 2)),
    case("nll_loss_sum", lambda x: F.nll_loss(F.log_softmax(x, 1), const(_LABELS), reduction="sum"),
         uniform((3, 4), 43, -2, 2)),
    case("nll_loss_4d_weight_ignore_index",
         lambda x: F.nll_loss(F.log_softmax(x, 1), const(_LABELS_4D), weight=const64((3,), 44), ignore_index=1),
         uniform((2, 3, 2, 2), 45, -2, 2)),
    case("nll_loss_3d_none", lambda x: F.nll_loss(x, const([[0, 2], [1, 1]]), reduction="none") ** 2,
         uniform((2, 3, 2), 46, -2, 2)),
    case("cross_entropy_label_smoothing", lambda x: F.cross_entropy(x, const(_LABELS), label_smoothing=0.1),
         uniform((3, 4), 47, -2, 2)),
    case("cross_entropy_label_smoothing_weight_ignore_index",
         lambda x: F.cross_entropy(x, const(_LABELS), weight=const64((4,), 48), ignore_index=3,
                                   reduction="sum", label_smoothing=0.2),
         uniform((3, 4), 49, -2, 2)),
    case("cross_entropy_label_smoothing_none",
         lambda x: F.cross_entropy(x, const(_LABELS), reduction="none", label_smoothing=0.3),
         uniform((3, 4), 50, -2, 2)),
    case("cross_entropy_probabilities", lambda x, p: F.cross_entropy(x, p),
         uniform((3, 4), 51, -2, 2), uniform((3, 4), 52, 0.0, 0.5)),
    case("cross_entropy_probabilities_smoothing_weight",
         lambda x, p, w: F.cross_entropy(x, p, weight=w, label_smoothing=0.2),
         uniform((3, 4), 53, -2, 2), uniform((3, 4), 54, 0.0, 0.5), uniform((4,), 55, 0.5, 1.5)),
    case("cross_entropy_probabilities_none", lambda x, p: F.cross_entropy(x, p, reduction="none") ** 2,
         uniform((3, 4), 56, -2, 2), uniform((3, 4), 57, 0.0, 0.5)),
    case("cross_entropy_probabilities_4d_sum", lambda x, p: F.cross_entropy(x, p, reduction="sum"),
         uniform((1, 3, 2, 2), 58, -2, 2), uniform((1, 3, 2, 2), 59, 0.0, 0.5)),
]

CONV = [
    case("conv1d", lambda x, w, b: F.conv1d(x, w, b),
         uniform((1, 2, 5), 60), uniform((2, 2, 3), 61), uniform((2,), 62)),
    case("conv2d_stride_padding_groups", lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1, groups=2),
         uniform((1, 2, 4, 4), 63), uniform((2, 1, 3, 3), 64), uniform((2,), 65)),
    case("conv2d_dilation", lambda x, w: F.conv2d(x, w, dilation=2),
         uniform((1, 1, 5, 5), 66), uniform((1, 1, 2, 2), 67)),
    case("conv_transpose2d", lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1),
         uniform((1, 2, 2, 2), 68), uniform((2, 1, 3, 3), 69), uniform((1,), 70)),
]


def _copy_into_clone(x, y):
    out = x.clone()
    out.copy_(y)  # y (3,) broadcast over x (2, 3)
    return out * x


def _fill_with_tensor(x, v):
    out = x.clone()
    out.fill_(v)
    return out * x


CONVERSION = [
    case("cast_float64", lambda x: distnn.ops.to_dtype(x, np.float64) ** 2, uniform((2, 3), 80)),
    # float32 in the middle: finite differences need the wider step of _TOLERANCES
    case("cast_through_float32", lambda x: x.float().double() ** 2, uniform((2, 3), 81)),
    case("clone", lambda x: x.clone() ** 2, uniform((2, 3), 82)),
    case("copy_into_clone", _copy_into_clone, uniform((2, 3), 83), uniform((3,), 84)),
    case("fill_with_tensor", _fill_with_tensor, uniform((2, 3), 85), uniform((), 86)),
    case("to_device", lambda x: distnn.ops.to_device(x, "cpu") ** 2, uniform((2, 3), 87)),
]

ELEMENTWISE = [
    case("add_broadcast", lambda x, y: (x + y) ** 2, uniform((2, 3), 100), uniform((3,), 101)),
    case("add_alpha_scalar", lambda x, y: distnn.add(x, y, alpha=2.0) * (x + 2.5),
         uniform((2, 3), 102), uniform((2, 3), 103)),
    case("sub_broadcast", lambda x, y: (x - y) ** 2, uniform((2, 3), 104), uniform((1, 3), 105)),
    case("rsub_scalar", lambda x: (2.0 - x) * x, uniform((2, 3), 106)),
    case("mul", lambda x, y: x * y, uniform((2, 3), 107), uniform((2, 3), 108)),
    case("mul_broadcast_scalar", lambda x, y: x * y * 3.0, uniform((2, 3), 109), uniform((2, 1), 110)),
    case("div", lambda x, y: x / y, uniform((2, 3), 111), uniform((2, 3), 112, 0.5, 1.5)),
    case("rdiv_scalar", lambda y: 2.0 / y, uniform((2, 3), 113, 0.5, 1.5)),
    case("neg", lambda x, y: -x * y, uniform((2, 3), 114), uniform((2, 3), 115)),
    case("pow_scalar_exponent", lambda x: x ** 3, uniform((2, 3), 116)),
    case("pow_scalar_base", lambda x: 2.0 ** x, uniform((2, 3), 117)),
    case("pow_tensor_tensor", lambda x, y: x ** y, uniform((2, 3), 118, 0.5, 1.5), uniform((2, 3), 119)),
    case("exp", lambda x: x.exp(), uniform((2, 3), 120)),
    case("log", lambda x: x.log(), uniform((2, 3), 121, 0.5, 1.5)),
    case("log10", lambda x: x.log10(), uniform((2, 3), 122, 0.5, 1.5)),
    case("log1p", lambda x: x.log1p(), uniform((2, 3), 123, -0.5, 1.0)),
    case("log2", lambda x: x.log2(), uniform((2, 3), 124, 0.5, 1.5)),
    case("reciprocal", lambda x: x.reciprocal(), uniform((2, 3), 125, 0.5, 1.5)),
    case("rsqrt", lambda x: x.rsqrt(), uniform((2, 3), 126, 0.5, 1.5)),
    case("sqrt", lambda x: x.sqrt(), uniform((2, 3), 127, 0.5, 1.5)),
    case("square", lambda x: x.square() * x, uniform((2, 3), 128)),
    case("sin", lambda x: x.sin(), uniform((2, 3), 129, -2, 2)),
    case("cos", lambda x: x.cos(), uniform((2, 3), 130, -2, 2)),
    case("abs", lambda x, y: x.abs() * y, spread((2, 3), 131), uniform((2, 3), 132)),
    case("clamp", lambda x: x.clamp(-0.5, 0.5) ** 2, spread((2, 4), 133, kinks=(-0.5, 0.5))),
    case("clamp_min", lambda x: x.clamp(min=0.2) ** 2, spread((2, 3), 134, kinks=(0.2,))),
    case("maximum", lambda x, y: distnn.maximum(x, y) ** 2, *apart((2, 3), 135)),
    case("minimum", lambda x, y: distnn.minimum(x, y) ** 2, *apart((2, 3), 137)),
    case("where", lambda x, y: distnn.where(const(_MASK[:2, :3]), x, y) ** 2,
         uniform((2, 3), 139), uniform((2, 3), 140)),
    case("where_scalar", lambda x: distnn.where(const(_MASK[:2, :3]), x, 0.5) ** 2, uniform((2, 3), 141)),
    case("sign", lambda x: x.sign() * x * x, spread((2, 3), 142)),
    case("floor", lambda x: x.floor() * x, spread((2, 3), 143, -2, 2, kinks=(-2, -1, 0, 1, 2))),
    # ceil's first derivative is a constant zero: an output of gradgradcheck's function
    # that does not require grad (PyTorch's gradcheck leaves such outputs out)
    case("ceil_beside_square", lambda x, y: x.ceil() + y * y,
         spread((2, 3), 144, -2, 2, kinks=(-2, -1, 0, 1, 2)), uniform((2, 3), 145)),
]

_EMBED_IDX = [[1, 3, 3], [0, 4, 1]]

EMBEDDING = [
    case("embedding", lambda w: F.embedding(const(_EMBED_IDX), w) ** 2, uniform((5, 2), 150)),
    case("embedding_padding_idx", lambda w: F.embedding(const(_EMBED_IDX), w, padding_idx=0) ** 2,
         uniform((5, 2), 151)),
]

GATHER_SCATTER = [
    case("gather", lambda x: x.gather(1, const(_GATHER)) ** 2, uniform((3, 4), 160)),
    case("index_select", lambda x: x.index_select(1, const([2, 0, 2])) ** 2, uniform((2, 3), 161)),
    case("scatter", lambda x, s: x.scatter(1, const(_SCATTER), s) ** 2, uniform((3, 4), 162), uniform((3, 2), 163)),
    case("scatter_value", lambda x: x.scatter(1, const(_SCATTER), 0.5) ** 2, uniform((3, 4), 164)),
    case("scatter_add", lambda x, s: x.scatter_add(1, const(_GATHER), s) ** 2,
         uniform((3, 4), 165), uniform((3, 2), 166)),
]


def _setitem_on_clone(x, v):
    out = x.clone()
    out[1:, 1] = v
    return out ** 2


INDEX = [
    case("index_int_array", lambda x: x[const(_ROWS)] ** 2, uniform((3, 2), 170)),
    case("index_int_arrays", lambda x: x[const([0, 2, 0]), const([1, 3, 1])] ** 2, uniform((3, 4), 171)),
    case("index_bool_mask", lambda x: x[const(_MASK)] ** 2, uniform((3, 4), 172)),
    case("masked_fill_tensor", lambda x, v: x.masked_fill(const(_MASK), v) ** 2, uniform((3, 4), 173),
         uniform((), 174)),
    case("masked_fill_scalar", lambda x: x.masked_fill(const(_MASK[0]), 0.5) ** 2, uniform((2, 4), 175)),
    case("masked_select", lambda x: x.masked_select(const(_MASK)) ** 2, uniform((3, 4), 176)),
    case("masked_select_broadcast", lambda x: x.masked_select(const(_MASK[0])) ** 2, uniform((2, 4), 177)),
    case("slice", lambda x: x[1:, ::2] ** 2, uniform((3, 4), 178)),
    case("select", lambda x: x[1] ** 2, uniform((3, 2), 179)),
    case("none_index", lambda x: x[:, None] ** 2, uniform((2, 3), 180)),
    case("ellipsis", lambda x: x[...] ** 2, uniform((2, 3), 181)),
    case("index_put", lambda x, v: distnn.ops.index_put(x, (const([0, 2]),), v) ** 2,
         uniform((3, 2), 182), uniform((2, 2), 183)),
    case("index_put_accumulate", lambda x, v: distnn.ops.index_put(x, (const(_ROWS),), v, accumulate=True) ** 2,
         uniform((3, 2), 184), uniform((3, 2), 185)),
    case("setitem_on_clone", _setitem_on_clone, uniform((3, 2), 186), uniform((2,), 187)),
]


def _split_pair(x):
    a, b = x.split(2, dim=1)
    return a * b


def _split_sizes(x):
    a, b = x.split([1, 2], dim=0)
    return a * b


def _chunk(x):
    a, b = x.chunk(2, 0)
    return a * b


def _unbind(x):
    a, b, c = x.unbind(0)
    return a * b + c ** 2


JOIN = [
    case("cat", lambda x, y: distnn.cat([x, y], 1) ** 2, uniform((2, 2), 190), uniform((2, 3), 191)),
    case("stack", lambda x, y: distnn.stack([x, y], 1) ** 2, uniform((2, 3), 192), uniform((2, 3), 193)),
    case("narrow", lambda x: x.narrow(1, 1, 2) ** 2, uniform((2, 4), 194)),
    case("split", _split_pair, uniform((2, 4), 195)),
    case("split_sizes", _split_sizes, uniform((3, 2), 196)),
    case("split_one_piece_used", lambda x: x.split(2, 1)[0] ** 2, uniform((2, 4), 197)),
    case("chunk", _chunk, uniform((4, 2), 198)),
    case("unbind", _unbind, uniform((3, 2), 199)),
]

LINALG = [
    case("mm", lambda a, b: distnn.mm(a, b), uniform((2, 3), 200), uniform((3, 2), 201)),
    case("matmul_2d_2d", lambda a, b: (a @ b) ** 2, uniform((2, 3), 202), uniform((3, 2), 203)),
    case("matmul_1d_1d", lambda u, v: (u @ v) ** 2, uniform((3,), 204), uniform((3,), 205)),
    case("dot", lambda u, v: distnn.dot(u, v), uniform((3,), 206), uniform((3,), 207)),
    case("mv", lambda a, v: distnn.mv(a, v), uniform((2, 3), 208), uniform((3,), 209)),
    case("matmul_1d_2d", lambda u, b: u @ b, uniform((2,), 210), uniform((2, 3), 211)),
    case("bmm", lambda a, b: distnn.bmm(a, b), uniform((2, 2, 3), 212), uniform((2, 3, 2), 213)),
    case("matmul_3d_2d", lambda a, b: a @ b, uniform((2, 2, 3), 214), uniform((3, 2), 215)),
    case("matmul_3d_3d_broadcast", lambda a, b: a @ b, uniform((2, 2, 3), 216), uniform((1, 3, 2), 217)),
    case("matmul_2d_3d", lambda a, b: a @ b, uniform((2, 3), 218), uniform((2, 3, 2), 219)),
    case("addmm", lambda c, a, b: distnn.addmm(c, a, b, beta=0.5, alpha=2.0),
         uniform((2,), 220), uniform((2, 3), 221), uniform((3, 2), 222)),
    case("linear", lambda x, w, b: F.linear(x, w, b),
         uniform((3, 4), 223), uniform((2, 4), 224), uniform((2,), 225)),
    case("linear_3d", lambda x, w, b: F.linear(x, w, b), uniform((2, 2, 3), 226), uniform((2, 3), 227),
         uniform((2,), 228)),
    case("linear_no_bias", lambda x, w: F.linear(x, w), uniform((3, 4), 229), uniform((2, 4), 230)),
    case("einsum", lambda a, b: distnn.einsum("ij,jk->ik", a, b), uniform((2, 3), 231), uniform((3, 2), 232)),
    case("einsum_summed_out", lambda a, b: distnn.einsum("ij,k->ik", a, b) ** 2,
         uniform((2, 3), 233), uniform((2,), 234)),
]


LOSS = [
    case("mse_loss", lambda x, y: F.mse_loss(x, y), uniform((2, 3), 240), uniform((2, 3), 241)),
    case("mse_loss_none", lambda x, y: F.mse_loss(x, y, reduction="none") * x, uniform((2, 3), 242),
         uniform((2, 3), 243)),
    case("l1_loss", lambda x, y: F.l1_loss(x, y) ** 2, *apart((2, 3), 244)),
    case("l1_loss_none", lambda x, y: F.l1_loss(x, y, reduction="none") ** 2, *apart((2, 3), 246)),
    case("smooth_l1_loss", lambda x, y: F.smooth_l1_loss(x, y, beta=0.5), *apart((2, 3), 248, (-0.5, 0, 0.5))),
    case("huber_loss", lambda x, y: F.huber_loss(x, y, reduction="sum", delta=0.5),
         *apart((2, 3), 250, (-0.5, 0, 0.5))),
    case("binary_cross_entropy", lambda p, t: F.binary_cross_entropy(p, t),
         uniform((2, 3), 252, 0.1, 0.9), uniform((2, 3), 253, 0.0, 1.0)),
    case("binary_cross_entropy_weight_sum",
         lambda p, t: F.binary_cross_entropy(p, t, weight=const64((2, 3), 254), reduction="sum"),
         uniform((2, 3), 255, 0.1, 0.9), uniform((2, 3), 256, 0.0, 1.0)),
    case("binary_cross_entropy_with_logits", lambda x, t: F.binary_cross_entropy_with_logits(x, t),
         uniform((2, 3), 257, -2, 2), uniform((2, 3), 258, 0.0, 1.0)),
    case("binary_cross_entropy_with_logits_weight_pos_weight",
         lambda x, t: F.binary_cross_entropy_with_logits(x, t, weight=const64((2, 3), 259), reduction="none",
                                                         pos_weight=const64((3,), 260, 0.5, 3.0)),
         uniform((2, 3), 261, -2, 2), uniform((2, 3), 262, 0.0, 1.0)),
    case("kl_div", lambda x, t: F.kl_div(x, t, reduction="batchmean"),
         uniform((2, 3), 263, -2, 0), uniform((2, 3), 264, 0.1, 1.0)),
    case("kl_div_log_target", lambda x, t: F.kl_div(x, t, reduction="sum", log_target=True),
         uniform((2, 3), 265, -2, 0), uniform((2, 3), 266, -2, 0)),
    case("kl_div_none", lambda x, t: F.kl_div(x, t, reduction="none") * x,
         uniform((2, 3), 267, -2, 0), uniform((2, 3), 268, 0.1, 1.0)),
]

MINMAX = [
    case("amax_dim", lambda x: x.amax(1) ** 2, spread((3, 4), 270)),
    case("amax_all", lambda x: x.amax() ** 2, spread((2, 3), 271)),
    case("amin_dims", lambda x: x.amin((0, 2)) ** 2, spread((2, 2, 2), 272)),
    case("max_all", lambda x: x.max() ** 2, spread((2, 3), 273)),
    case("min_all", lambda x: x.min() ** 2, spread((2, 3), 274)),
    case("max_dim", lambda x: x.max(1).values ** 2, spread((3, 4), 275)),
    case("max_dim_keepdim", lambda x: x.max(0, keepdim=True)[0] ** 2, spread((3, 2), 276)),
    case("min_dim", lambda x: x.min(1)[0] ** 2, spread((2, 3), 277)),
]


def _running_stats(seed):
    return const64((2,), seed, -0.5, 0.5), const64((2,), seed + 1, 0.5, 1.5)


NORMALIZATION = [
    case("normalize_p2", lambda x: F.normalize(x, p=2.0, dim=1), uniform((2, 3), 280)),
    case("normalize_p1", lambda x: F.normalize(x, p=1.0, dim=0), spread((2, 3), 281)),
    case("normalize_p3", lambda x: F.normalize(x, p=3.0, dim=1), spread((2, 3), 282)),
    case("normalize_inf", lambda x: F.normalize(x, p=float("inf"), dim=1), spread((2, 3), 283)),
    case("batch_norm_training", lambda x, w, b: F.batch_norm(x, *_running_stats(284), w, b, training=True),
         uniform((3, 2, 2), 286), uniform((2,), 287, 0.5, 1.5), uniform((2,), 288)),
    case("batch_norm_eval", lambda x, w, b: F.batch_norm(x, *_running_stats(289), w, b, training=False) ** 2,
         uniform((3, 2, 2), 291), uniform((2,), 292, 0.5, 1.5), uniform((2,), 293)),
    case("group_norm", lambda x, w, b: F.group_norm(x, 2, w, b),
         uniform((2, 4, 2), 294), uniform((4,), 295, 0.5, 1.5), uniform((4,), 296)),
    case("layer_norm", lambda x, w, b: F.layer_norm(x, (4,), w, b),
         uniform((2, 4), 297), uniform((4,), 298, 0.5, 1.5), uniform((4,), 299)),
    case("rms_norm", lambda x, w: F.rms_norm(x, (4,), w), uniform((2, 4), 300), uniform((4,), 301, 0.5, 1.5)),
    case("instance_norm", lambda x: F.instance_norm(x), uniform((1, 2, 3), 302)),
]

PADDING = [
    case("pad_constant", lambda x: F.pad(x, (1, 2), value=0.5) ** 2, uniform((2, 3), 310)),
    case("pad_reflect", lambda x: F.pad(x, (2, 1), mode="reflect") ** 2, uniform((1, 2, 3), 311)),
    case("pad_replicate", lambda x: F.pad(x, (1, 1, 0, 1), mode="replicate") ** 2, uniform((1, 2, 2), 312)),
    case("pad_circular", lambda x: F.pad(x, (1, 2), mode="circular") ** 2, uniform((1, 2, 3), 313)),
]


POOL = [
    case("max_pool2d_k2", lambda x: F.max_pool2d(x, 2) ** 2, spread((1, 1, 4, 4), 320)),
    case("max_pool2d_k3_s2_p1", lambda x: F.max_pool2d(x, 3, 2, padding=1) ** 2, spread((1, 1, 5, 5), 321)),
    case("avg_pool2d", lambda x: F.avg_pool2d(x, 2) ** 2, uniform((1, 1, 4, 4), 322)),
    case("avg_pool2d_exclude_pad", lambda x: F.avg_pool2d(x, 3, 2, padding=1, count_include_pad=False) ** 2,
         uniform((1, 1, 4, 4), 323)),
    case("adaptive_avg_pool2d", lambda x: F.adaptive_avg_pool2d(x, (2, 2)) ** 2, uniform((1, 1, 3, 3), 324)),
    case("adaptive_max_pool2d", lambda x: F.adaptive_max_pool2d(x, 2) ** 2, spread((1, 2, 3, 3), 325)),
]

REDUCE = [
    case("sum_dim", lambda x: x.sum(1) ** 2, uniform((2, 3), 330)),
    case("sum_all", lambda x: x.sum() ** 2, uniform((2, 3), 331)),
    case("mean_dims_keepdim", lambda x: x.mean((0, 2), keepdim=True) ** 2, uniform((2, 3, 2), 332)),
    case("cumsum", lambda x: x.cumsum(1) ** 2, uniform((2, 3), 333)),
    case("logsumexp", lambda x: x.logsumexp(1), uniform((2, 3), 334, -2, 2)),
    case("var_dim", lambda x: x.var(1), uniform((2, 3), 335)),
    case("var_all_biased", lambda x: x.var(unbiased=False), uniform((2, 3), 336)),
    case("std_dim", lambda x: x.std(0), uniform((3, 2), 337)),
    case("norm_p2_all", lambda x: x.norm(), uniform((2, 3), 338)),
    case("norm_p2_dim", lambda x: x.norm(2, dim=1), uniform((2, 3), 339)),
    case("norm_p1", lambda x: x.norm(1, dim=1) ** 2, spread((2, 3), 340)),
    case("norm_p3", lambda x: x.norm(3, dim=0), spread((2, 3), 341)),
    case("norm_inf", lambda x: x.norm(float("inf"), dim=1) ** 2, spread((2, 3), 342)),
    case("prod", lambda x: x.prod(), uniform((2, 3), 343, 0.5, 1.5)),
    case("prod_dim", lambda x: x.prod(1), uniform((2, 3), 344, 0.5, 1.5)),
]

SHAPE = [
    case("expand", lambda x: x.expand(2, 3) ** 2, uniform((1, 3), 350)),
    case("flip", lambda x: x.flip(1) * x, uniform((2, 3), 351)),
    case("permute", lambda x: x.permute(2, 0, 1) ** 2, uniform((2, 3, 2), 352)),
    case("repeat", lambda x: x.repeat(2, 1, 2) ** 2, uniform((2, 3), 353)),
    case("squeeze_all", lambda x: x.squeeze() ** 2, uniform((2, 1, 3), 354)),
    case("squeeze_dim", lambda x: x.squeeze(1) ** 2, uniform((2, 1, 3), 355)),
    case("squeeze_dims", lambda x: x.squeeze((1,)) ** 2, uniform((2, 1, 3), 356)),
    case("transpose", lambda x: x.transpose(0, 2) ** 2, uniform((2, 3, 2), 357)),
    case("t", lambda x: x.t() ** 2, uniform((2, 3), 358)),
    case("reshape_of_transpose", lambda x: x.t().reshape(-1) ** 2, uniform((2, 3), 359)),
    case("unsqueeze", lambda x: x.unsqueeze(1) ** 2, uniform((2, 3), 360)),
    case("view", lambda x: x.view(3, 2) ** 2, uniform((2, 3), 361)),
]


# Variants that take other code paths: unbatched, non-contiguous, broadcast, odd geometry,
# and nn.functional compositions.
VARIANTS = [
    case("softmax_of_transpose", lambda x: F.softmax(x.t(), dim=1), uniform((4, 2), 400, -2, 2)),
    case("layer_norm_2d_no_affine_of_permute", lambda x: F.layer_norm(x.permute(2, 0, 1), (2, 3)) ** 2,
         uniform((2, 3, 2), 401)),
    case("batch_norm_2d_input", lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
         uniform((3, 2), 402), uniform((2,), 403, 0.5, 1.5), uniform((2,), 404)),
    case("group_norm_no_affine", lambda x: F.group_norm(x, 1, eps=1e-3) ** 2, uniform((2, 2, 2), 405)),
    case("rms_norm_2d_no_weight", lambda x: F.rms_norm(x, (2, 2)), uniform((2, 2, 2), 406)),
    case("cross_entropy_unbatched", lambda x: F.cross_entropy(x, const(2)), uniform((4,), 407, -2, 2)),
    case("cross_entropy_4d_none", lambda x: F.cross_entropy(x, const(_LABELS_4D), reduction="none") ** 2,
         uniform((2, 3, 2, 2), 408, -2, 2)),
    case("conv1d_unbatched", lambda x, w: F.conv1d(x, w, padding=1), uniform((2, 4), 409), uniform((1, 2, 3), 410)),
    case("conv2d_same_even_kernel", lambda x, w: F.conv2d(x, w, padding="same"),
         uniform((1, 1, 3, 3), 411), uniform((1, 1, 2, 2), 412)),
    case("conv_transpose2d_groups_dilation_output_padding",
         lambda x, w: F.conv_transpose2d(x, w, stride=2, output_padding=1, groups=2, dilation=1),
         uniform((1, 2, 2, 2), 413), uniform((2, 1, 2, 2), 414)),
    case("max_pool2d_dilation", lambda x: F.max_pool2d(x, 2, 1, dilation=2) ** 2, spread((1, 1, 4, 4), 415)),
    case("max_pool1d", lambda x: F.max_pool1d(x, 2) ** 2, spread((1, 2, 4), 416)),
    case("avg_pool2d_ceil_divisor_override",
         lambda x: F.avg_pool2d(x, 2, ceil_mode=True, divisor_override=3) ** 2, uniform((1, 1, 3, 3), 417)),
    case("adaptive_avg_pool1d", lambda x: F.adaptive_avg_pool1d(x, 2) ** 2, uniform((1, 2, 3), 418)),
    case("pad_constant_crop", lambda x: F.pad(x, (-1, 2)) ** 2, uniform((2, 3), 419)),
    case("pad_reflect_2d", lambda x: F.pad(x, (1, 1, 2, 0), mode="reflect") ** 2, uniform((1, 1, 3, 2), 420)),
    case("div_broadcast", lambda x, y: x / y, uniform((2, 3), 421), uniform((3,), 422, 0.5, 1.5)),
    case("where_broadcast", lambda x, y: distnn.where(const(_MASK[0, :3]), x, y) ** 2,
         uniform((2, 3), 423), uniform((1, 3), 424)),
    case("pow_fractional", lambda x: x ** 2.5, uniform((2, 3), 425, 0.5, 1.5)),
    case("matmul_1d_3d", lambda u, b: u @ b, uniform((3,), 426), uniform((2, 3, 2), 427)),
    case("matmul_3d_1d", lambda a, v: a @ v, uniform((2, 2, 3), 428), uniform((3,), 429)),
    case("linear_1d_input", lambda x, w, b: F.linear(x, w, b), uniform((3,), 430), uniform((2, 3), 431),
         uniform((2,), 432)),
    case("einsum_three_operands", lambda a, b, c: distnn.einsum("ij,jk,kl->il", a, b, c),
         uniform((2, 2), 433), uniform((2, 3), 434), uniform((3, 2), 435)),
    case("einsum_transpose", lambda a: distnn.einsum("ij->ji", a) ** 2, uniform((2, 3), 436)),
    case("slice_negative_step", lambda x: x[::-1, 1:] ** 2, uniform((3, 3), 437)),
    case("index_basic_and_advanced", lambda x: x[1:, const([0, 2, 0])] ** 2, uniform((3, 3), 438)),
    case("index_put_mask_tensor_value", lambda x, v: distnn.ops.index_put(x, const(_MASK), v) ** 2,
         uniform((3, 4), 439), uniform((), 440)),
    case("gather_3d_last_dim", lambda x: x.gather(-1, const([[[1, 0]], [[2, 2]]])) ** 2, uniform((2, 1, 3), 441)),
    case("scatter_add_dim0", lambda x, s: x.scatter_add(0, const([[1, 0, 1]]), s) ** 2,
         uniform((2, 3), 442), uniform((1, 3), 443)),
    case("expand_new_dims", lambda x: x.expand(2, 3) * x, uniform((3,), 444)),
    case("unbind_one_piece_used", lambda x: x.unbind(1)[1] ** 2, uniform((2, 3), 445)),
    case("cumsum_3d_dim0", lambda x: x.cumsum(0) ** 2, uniform((2, 2, 2), 446)),
    case("logsumexp_dims_keepdim", lambda x: x.logsumexp((0, 2), keepdim=True), uniform((2, 2, 2), 447, -2, 2)),
    case("std_dims_keepdim", lambda x: x.std((0, 1), keepdim=True), uniform((2, 2, 2), 448)),
    case("norm_p_half", lambda x: x.norm(0.5, dim=1), uniform((2, 3), 449, 0.5, 1.5)),
    case("max_negative_dim", lambda x: x.max(-1)[0] ** 2, spread((2, 3), 450)),
    case("huber_loss_weight", lambda x, y: F.huber_loss(x, y, delta=0.5, weight=const64((2, 3), 451)),
         *apart((2, 3), 452, (-0.5, 0, 0.5))),
    case("binary_cross_entropy_none", lambda p, t: F.binary_cross_entropy(p, t, reduction="none") * p,
         uniform((2, 3), 454, 0.1, 0.9), uniform((2, 3), 455, 0.0, 1.0)),
    case("glu", lambda x: F.glu(x, 1), uniform((2, 4), 456, -2, 2)),
    case("softsign", lambda x: F.softsign(x), spread((2, 3), 457, -2, 2)),
    case("tanhshrink", lambda x: F.tanhshrink(x), uniform((2, 3), 458, -2, 2)),
    case("bilinear", lambda x1, x2, w, b: F.bilinear(x1, x2, w, b),
         uniform((2, 2), 459), uniform((2, 3), 460), uniform((2, 2, 3), 461), uniform((2,), 462)),
    case("cosine_similarity", lambda x, y: F.cosine_similarity(x, y), uniform((2, 3), 463), uniform((2, 3), 464)),
    case("pairwise_distance", lambda x, y: F.pairwise_distance(x, y), uniform((2, 3), 465), uniform((2, 3), 466)),
    case("interpolate_bilinear", lambda x: F.interpolate(x, size=(3, 3), mode="bilinear") ** 2,
         uniform((1, 1, 2, 2), 467)),
    case("interpolate_nearest", lambda x: F.interpolate(x, scale_factor=2) ** 2, uniform((1, 1, 2), 468)),
    case("scaled_dot_product_attention_causal",
         lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
         uniform((1, 3, 2), 469), uniform((1, 3, 2), 470), uniform((1, 3, 2), 471)),
]


def first_derivatives(op):
    """``fn(*xs, v)``: ``op``'s gradients w.r.t. all but its last input ``v``, for upstream
    ``v``, recorded. Ops that only backward formulas record (ConvolutionInputGrad,
    ConvolutionWeightGrad, NormalCdf, LinearMap, IndexPut) are then in the forward graph,
    and gradgradcheck checks their own double backward: a third derivative of ``op``."""
    def fn(*args):
        xs, v = args[:-1], args[-1]
        return grad(op(*xs), xs, v, create_graph=True)
    return fn


DERIVATIVES = [
    case("conv2d_grads", first_derivatives(lambda x, w: F.conv2d(x, w)),
         uniform((1, 1, 3, 3), 370), uniform((1, 1, 2, 2), 371), uniform((1, 1, 2, 2), 372)),
    case("conv2d_strided_grouped_grads",
         first_derivatives(lambda x, w: F.conv2d(x, w, stride=2, padding=1, groups=2)),
         uniform((1, 2, 3, 3), 373), uniform((2, 1, 2, 2), 374), uniform((1, 2, 2, 2), 375)),
    case("conv_transpose1d_grads", first_derivatives(lambda x, w: F.conv_transpose1d(x, w, stride=2)),
         uniform((1, 2, 3), 376), uniform((2, 1, 2), 377), uniform((1, 1, 6), 378)),
    case("gelu_grads", first_derivatives(F.gelu), uniform((2, 3), 379, -2, 2), uniform((2, 3), 380)),
    case("avg_pool2d_grads", first_derivatives(lambda x: F.avg_pool2d(x, 2) ** 2),
         uniform((1, 1, 4, 4), 381), uniform((1, 1, 2, 2), 382)),
    case("max_pool2d_grads", first_derivatives(lambda x: F.max_pool2d(x, 2) ** 2),
         spread((1, 1, 4, 4), 383), uniform((1, 1, 2, 2), 384)),
    case("embedding_grads", first_derivatives(lambda w: F.embedding(const(_EMBED_IDX), w, padding_idx=0) ** 2),
         uniform((5, 2), 385), uniform((2, 3, 2), 386)),
    case("reflect_pad_grads", first_derivatives(lambda x: F.pad(x, (2, 1), mode="reflect") ** 2),
         uniform((1, 2, 3), 387), uniform((1, 2, 6), 388)),
    case("index_grads", first_derivatives(lambda x: x[const(_ROWS)] ** 2),
         uniform((3, 2), 389), uniform((3, 2), 390)),
]

CASES = (ACTIVATION + CLASSIFICATION_LOSS + CONV + CONVERSION + ELEMENTWISE + EMBEDDING + GATHER_SCATTER
         + INDEX + JOIN + LINALG + LOSS + MINMAX + NORMALIZATION + PADDING + POOL + REDUCE + SHAPE + VARIANTS
         + DERIVATIVES)

# float32 round off (~1e-7) over a 1e-6 step would swamp the difference quotient
_TOLERANCES = {"cast_through_float32": dict(eps=1e-2, atol=1e-4)}


# --- graphs ---------------------------------------------------------------------------

def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def implementation(op_class):
    """The class whose ``backward`` ``op_class`` runs: renamed ops share their base's."""
    return next(c for c in op_class.__mro__ if "backward" in c.__dict__)


def _name(cls):
    return f"{cls.__module__.rsplit('.', 1)[-1]}.{cls.__qualname__}"


def _tensors(out):
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return [o for o in outs if isinstance(o, distnn.Tensor) and o.requires_grad]


def graph_nodes(tensors):
    """Every node reachable from the tensors' ``grad_fn``."""
    seen, stack = {}, [t.grad_fn for t in tensors if t.grad_fn is not None]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen[id(node)] = node
        stack.extend(edge[0] for edge in node._next if edge is not None)
    return seen.values()


def graph_ops(tensors):
    """The Op classes of the nodes reachable from ``tensors`` (leaves and user Functions left out)."""
    ops = (type(node)._fn for node in graph_nodes(tensors))
    return {fn for fn in ops if isinstance(fn, type) and issubclass(fn, Op)}


def _refused_in(fn, inputs):
    """The node names of the ops in ``fn``'s graph that claim no double backward."""
    try:
        outs = _tensors(fn(*inputs))
    except Exception:  # noqa: BLE001  the gradgradcheck test shows the error
        return ()
    return tuple(sorted(f"{op.__name__}{op._node_suffix}" for op in graph_ops(outs) if not op.double_backward))


_REFUSING = {case_id: _refused_in(fn, inputs) for case_id, fn, inputs in CASES}
CHECKED = [c for c in CASES if not _REFUSING[c[0]]]
REFUSED = [c for c in CASES if _REFUSING[c[0]]]


def _params(cases):
    return [pytest.param(fn, inputs, id=case_id) for case_id, fn, inputs in cases]


# --- the contract -----------------------------------------------------------------------

@pytest.mark.parametrize("fn, inputs", _params(CHECKED))
def test_double_backward_matches_finite_differences(request, fn, inputs):
    tolerance = _TOLERANCES.get(request.node.callspec.id, {})
    assert distnn.autograd.gradgradcheck(fn, inputs, **tolerance)


@pytest.mark.parametrize("fn, inputs", _params(REFUSED))
def test_refused_double_backward_names_the_op(request, fn, inputs):
    x = next(t for t in inputs if t.requires_grad)
    (g,) = grad(fn(*inputs).sum(), x, create_graph=True)
    (expected,) = grad(fn(*inputs).sum(), x)  # the first derivative is still given, and right
    np.testing.assert_allclose(g.detach().cpu().numpy(), expected.cpu().numpy())
    names = "|".join(re.escape(n) for n in _REFUSING[request.node.callspec.id])
    with pytest.raises(RuntimeError, match=rf"^({names}) does not support double backward"):
        (g ** 2).sum().backward()


def _first_derivative_ops(outs, inputs):
    """The ops recorded while differentiating ``outs`` with create_graph=True, with
    upstream gradients that require grad, as gradgradcheck passes them."""
    diff = [t for t in inputs if t.requires_grad]
    upstream = [distnn.ones_like(o).requires_grad_(True) for o in outs]
    grads = grad(outs, diff, upstream, create_graph=True, allow_unused=True)
    return graph_ops([g for g in grads if g is not None and g.requires_grad])


def test_every_op_is_covered():
    ids = [case_id for case_id, _, _ in CASES]
    assert len(set(ids)) == len(ids), f"case ids repeat: {sorted({i for i in ids if ids.count(i) > 1})}"
    impls = {}
    for op in _subclasses(Op):
        impls.setdefault(implementation(op), set()).add(op)
    mixed = sorted(_name(impl) for impl, ops in impls.items()
                   if len({op.double_backward for op in ops | {impl}}) > 1)
    assert not mixed, f"renamed ops that disagree with their implementation on double_backward: {mixed}"

    reached = {"checked": set(), "refused": set()}
    for kind, cases in (("checked", CHECKED), ("refused", REFUSED)):
        for _, fn, inputs in cases:
            outs = _tensors(fn(*inputs))
            for op in graph_ops(outs) | _first_derivative_ops(outs, inputs):
                reached[kind].add(implementation(op))
    claiming = {impl for impl in impls if impl.double_backward}
    unchecked = sorted(_name(impl) for impl in claiming - reached["checked"])
    unrefused = sorted(_name(impl) for impl in set(impls) - claiming - reached["refused"])
    assert not (unchecked or unrefused), (
        f"ops claiming double backward that no gradgradcheck case reaches: {unchecked}; "
        f"ops refusing double backward that no refusal case reaches: {unrefused}")

"""The double-backward case catalogue (not tests itself: the runner and census are
tests/autograd/test_double_backward.py). ``CASES`` is every case; this module holds the
families of the tensor ops (conversion, elementwise, gather/scatter, index, join,
linalg, minmax, reduce, scan, shape, sorting) and one op that refuses double backward;
``double_backward_nn_cases`` those behind ``nn.functional``, variants and derivatives.

Each case is ``(id, fn, inputs)``: ``fn`` takes float64 leaves (index tensors and masks
are closed over) and is deterministic. Inputs keep away from kinks and ties; outputs of
ops that are linear or piecewise linear are squared or multiplied by another input, so
the second derivative has something to check.
"""

import numpy as np

import distnn
import distnn.nn.functional as F
from distnn.autograd.function import Op
from double_backward_inputs import GATHER, MASK, ROWS, SCATTER, apart, case, const, spread, uniform, with_zeros
from double_backward_nn_cases import (ACTIVATION, CLASSIFICATION_LOSS, CONV, DERIVATIVES, EMBEDDING, LOSS,
                                      NORMALIZATION, PADDING, POOL, RECURRENT, VARIANTS)


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
    # float32 in the middle: finite differences need the wider step of TOLERANCES
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
    case("where", lambda x, y: distnn.where(const(MASK[:2, :3]), x, y) ** 2,
         uniform((2, 3), 139), uniform((2, 3), 140)),
    case("where_scalar", lambda x: distnn.where(const(MASK[:2, :3]), x, 0.5) ** 2, uniform((2, 3), 141)),
    case("sign", lambda x: x.sign() * x * x, spread((2, 3), 142)),
    case("floor", lambda x: x.floor() * x, spread((2, 3), 143, -2, 2, kinks=(-2, -1, 0, 1, 2))),
    # ceil's first derivative is a constant zero: an output of gradgradcheck's function
    # that does not require grad (PyTorch's gradcheck leaves such outputs out)
    case("ceil_beside_square", lambda x, y: x.ceil() + y * y,
         spread((2, 3), 144, -2, 2, kinks=(-2, -1, 0, 1, 2)), uniform((2, 3), 145)),
]

GATHER_SCATTER = [
    case("gather", lambda x: x.gather(1, const(GATHER)) ** 2, uniform((3, 4), 160)),
    case("index_select", lambda x: x.index_select(1, const([2, 0, 2])) ** 2, uniform((2, 3), 161)),
    case("scatter", lambda x, s: x.scatter(1, const(SCATTER), s) ** 2, uniform((3, 4), 162), uniform((3, 2), 163)),
    case("scatter_value", lambda x: x.scatter(1, const(SCATTER), 0.5) ** 2, uniform((3, 4), 164)),
    case("scatter_add", lambda x, s: x.scatter_add(1, const(GATHER), s) ** 2,
         uniform((3, 4), 165), uniform((3, 2), 166)),
]


def _setitem_on_clone(x, v):
    out = x.clone()
    out[1:, 1] = v
    return out ** 2


INDEX = [
    case("index_int_array", lambda x: x[const(ROWS)] ** 2, uniform((3, 2), 170)),
    case("index_int_arrays", lambda x: x[const([0, 2, 0]), const([1, 3, 1])] ** 2, uniform((3, 4), 171)),
    case("index_bool_mask", lambda x: x[const(MASK)] ** 2, uniform((3, 4), 172)),
    case("masked_fill_tensor", lambda x, v: x.masked_fill(const(MASK), v) ** 2, uniform((3, 4), 173),
         uniform((), 174)),
    case("masked_fill_scalar", lambda x: x.masked_fill(const(MASK[0]), 0.5) ** 2, uniform((2, 4), 175)),
    case("masked_select", lambda x: x.masked_select(const(MASK)) ** 2, uniform((3, 4), 176)),
    case("masked_select_broadcast", lambda x: x.masked_select(const(MASK[0])) ** 2, uniform((2, 4), 177)),
    case("slice", lambda x: x[1:, ::2] ** 2, uniform((3, 4), 178)),
    case("select", lambda x: x[1] ** 2, uniform((3, 2), 179)),
    case("none_index", lambda x: x[:, None] ** 2, uniform((2, 3), 180)),
    case("ellipsis", lambda x: x[...] ** 2, uniform((2, 3), 181)),
    case("index_put", lambda x, v: distnn.ops.index_put(x, (const([0, 2]),), v) ** 2,
         uniform((3, 2), 182), uniform((2, 2), 183)),
    case("index_put_accumulate", lambda x, v: distnn.ops.index_put(x, (const(ROWS),), v, accumulate=True) ** 2,
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

REDUCE = [
    case("sum_dim", lambda x: x.sum(1) ** 2, uniform((2, 3), 330)),
    case("sum_all", lambda x: x.sum() ** 2, uniform((2, 3), 331)),
    case("mean_dims_keepdim", lambda x: x.mean((0, 2), keepdim=True) ** 2, uniform((2, 3, 2), 332)),
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
    # zeros: one; two in a row; per row two in a row, one, two apart, none; three along dim 0
    case("prod_one_zero", lambda x: x.prod(), with_zeros((2, 3), 345, [4])),
    case("prod_two_zeros_in_a_row", lambda x: x.prod(), with_zeros((2, 3), 346, [1, 2])),
    case("prod_dim_keepdim_zeros", lambda x: x.prod(-1, keepdim=True), with_zeros((4, 3), 347, [1, 2, 3, 6, 8])),
    case("prod_3d_dim0_zeros", lambda x: x.prod(0), with_zeros((3, 2, 2), 348, [0, 4, 8, 3])),
]

SCAN = [
    case("cumsum", lambda x: x.cumsum(1) ** 2, uniform((2, 3), 333)),
    case("cumprod", lambda x: x.cumprod(1), uniform((2, 4), 472, 0.5, 1.5)),
    # rows with no zero, one zero, two in a row, two apart, and a zero first
    case("cumprod_zeros", lambda x: distnn.cumprod(x, -1), with_zeros((5, 4), 473, [5, 9, 10, 12, 15, 16])),
    case("cumprod_3d_dim0_zeros", lambda x: x.cumprod(0) * x, with_zeros((3, 2, 2), 474, [0, 5, 9])),
]

def _t_inplace(x):
    y = x * 1
    y.t_()
    return y ** 2


SORTING = [
    case("sort", lambda x: x.sort(1).values ** 2, spread((3, 4), 478)),
    case("sort_stable_descending", lambda x: x.sort(0, descending=True, stable=True)[0] ** 2, spread((3, 2), 479)),
    case("topk", lambda x: x.topk(2).values ** 2, spread((3, 4), 480)),
]

SHAPE = [
    case("tril", lambda x: distnn.tril(x, 1) * x, uniform((3, 4), 300)),
    case("triu_batched", lambda x: x.triu(-1) * x, uniform((2, 3, 3), 301)),
    case("diag_of_vector", lambda x: distnn.diag(x, 1) ** 2, uniform((3,), 476)),
    case("diag_of_matrix", lambda x: x.diag(-1) ** 2, uniform((3, 4), 477)),
    case("expand", lambda x: x.expand(2, 3) ** 2, uniform((1, 3), 350)),
    case("flip", lambda x: x.flip(1) * x, uniform((2, 3), 351)),
    case("permute", lambda x: x.permute(2, 0, 1) ** 2, uniform((2, 3, 2), 352)),
    case("repeat", lambda x: x.repeat(2, 1, 2) ** 2, uniform((2, 3), 353)),
    case("squeeze_all", lambda x: x.squeeze() ** 2, uniform((2, 1, 3), 354)),
    case("squeeze_dim", lambda x: x.squeeze(1) ** 2, uniform((2, 1, 3), 355)),
    case("squeeze_dims", lambda x: x.squeeze((1,)) ** 2, uniform((2, 1, 3), 356)),
    case("transpose", lambda x: x.transpose(0, 2) ** 2, uniform((2, 3, 2), 357)),
    case("t", lambda x: x.t() ** 2, uniform((2, 3), 358)),
    case("t_inplace", _t_inplace, uniform((2, 3), 481)),
    case("reshape_of_transpose", lambda x: x.t().reshape(-1) ** 2, uniform((2, 3), 359)),
    case("unsqueeze", lambda x: x.unsqueeze(1) ** 2, uniform((2, 3), 360)),
    case("view", lambda x: x.view(3, 2) ** 2, uniform((2, 3), 361)),
]



class SquareWithoutDoubleBackward(Op):
    """``x * x`` with ``double_backward`` left False. Every distnn op supports double
    backward, so this stand-in keeps the refusal path under test."""

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return a * a

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return 2 * a * g


REFUSING = [
    case("op_without_double_backward", lambda x: SquareWithoutDoubleBackward.apply(x) * x, uniform((2, 3), 475)),
]

CASES = (ACTIVATION + CLASSIFICATION_LOSS + CONV + CONVERSION + ELEMENTWISE + EMBEDDING + GATHER_SCATTER
         + INDEX + JOIN + LINALG + LOSS + MINMAX + NORMALIZATION + PADDING + POOL + RECURRENT + REDUCE + SCAN + SHAPE
         + SORTING + VARIANTS + DERIVATIVES + REFUSING)

# float32 round off (~1e-7) over a 1e-6 step would swamp the difference quotient
TOLERANCES = {"cast_through_float32": dict(eps=1e-2, atol=1e-4),
              "mkldnn_lstm_layer_float32_batch_first_reverse": dict(eps=1e-2, atol=1e-3, rtol=1e-2)}

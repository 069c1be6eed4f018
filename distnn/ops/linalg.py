"""Matrix products: matmul (and its special cases mm, bmm, mv, dot), outer,
addmm, baddbmm, einsum, and ``linear`` as one fused GEMM-plus-bias op.

Every product is a single ``xp.matmul`` call; a stack multiplied by one shared
matrix is folded into one 2-D GEMM rather than a loop over the batch. Shape
errors name both shapes as PyTorch's do.
"""

import numpy as np

from ..autograd.function import Op
from ..autograd.graph_xp import recording
from ..threads import map_chunks
from . import fused_cuda
from .common import as_array, renamed_op

__all__ = ["matmul", "mm", "bmm", "mv", "dot", "outer", "ger", "linear", "addmm", "baddbmm", "einsum"]

TENSOR_METHODS = ("matmul", "mm", "bmm", "mv", "dot", "outer", "ger", "addmm", "baddbmm")


def _fold_matmul(xp, a, b):
    """``a @ b`` for a 2-D ``b``: one GEMM over all of ``a``'s leading dims."""
    if a.ndim <= 2:
        return xp.matmul(a, b)
    return xp.matmul(a.reshape(-1, a.shape[-1]), b).reshape(a.shape[:-1] + (b.shape[-1],))


class Mm(Op):
    """``a @ b`` with matmul semantics; the other products only differ in their node name."""

    double_backward = True

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        if b.ndim == 2:
            return _fold_matmul(ctx.xp, a, b)
        return as_array(ctx.xp.matmul(a, b))

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        xp = ctx.xp
        need_a, need_b = ctx.needs_input_grad
        if a.ndim == 1 and b.ndim == 1:
            return (g * b if need_a else None), (g * a if need_b else None)
        # treat vectors as a row (left) or a column (right) matrix, then drop that axis again
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        if a.ndim == 1:
            g = xp.expand_dims(g, -2)
        if b.ndim == 1:
            g = xp.expand_dims(g, -1)
        ga = gb = None
        if need_a:
            ga = _fold_matmul(xp, g, b2.T) if b2.ndim == 2 else xp.matmul(g, xp.swapaxes(b2, -1, -2))
            if a.ndim == 1:
                ga = ga.reshape(-1, a.shape[0]).sum(0)
        if need_b:
            if b2.ndim == 2 and a2.ndim > 2:
                # one shared matrix: a single GEMM over every batch row, not a batch then a sum
                gb = xp.matmul(a2.reshape(-1, a2.shape[-1]).T, g.reshape(-1, g.shape[-1]))
            else:
                gb = xp.matmul(xp.swapaxes(a2, -1, -2), g)
            if b.ndim == 1:
                gb = gb.reshape(-1, b.shape[0]).sum(0)
        return ga, gb


Mv = renamed_op(Mm, "Mv")
Dot = renamed_op(Mm, "Dot")
Bmm = renamed_op(Mm, "Bmm")
VecMat = renamed_op(Mm, "Squeeze", 4)  # PyTorch computes vector @ matrix as a squeezed mm
BatchedMatmul = renamed_op(Mm, "UnsafeView")  # ... and batched matmul as a bmm of folded views


def _column_sums(xp, rows):
    """A bias gradient, ``rows.sum(0)``: on numpy as a GEMV of ones against the rows
    (BLAS reads them once, in order; ``sum(0)`` took 1.9 ms on a 700x10000 decoder
    gradient at 2 threads, the GEMV 0.7); elsewhere (CuPy, graph mode, more rows than
    a float32 running sum keeps accurate) the pairwise sum."""
    if xp is np and type(rows) is np.ndarray and rows.dtype.kind == "f" and 1 < rows.shape[0] <= 1 << 14:
        return np.matmul(np.ones(rows.shape[0], rows.dtype), rows)
    if not recording(rows) and fused_cuda.takes(xp, rows):  # one kernel on a GPU
        return fused_cuda.sum_outer_inner(xp, rows.reshape(rows.shape + (1,)))
    return rows.sum(0)


# bias adds past this many elements go by blocks of rows over the intra-op threads: a
# language model's decoder output (700 x 10000) 1.45 -> 0.8 ms at 2 threads
_ROW_BLOCK_ELEMENTS = 1 << 19


def _add_rows(xp, out, bias):
    """``out += bias`` for a fresh (rows, cols) ``out`` and a (cols,) ``bias``."""
    if xp is not np or type(out) is not np.ndarray or out.size < 2 * _ROW_BLOCK_ELEMENTS or bias.ndim != 1:
        out += bias
        return
    per = max(1, _ROW_BLOCK_ELEMENTS // out.shape[1])
    map_chunks(xp, lambda rows: xp.add(out[rows], bias, out=out[rows]),
               [slice(i, i + per) for i in range(0, out.shape[0], per)])


class Addmm(Op):
    """``beta * bias + alpha * (m1 @ m2)`` in one GEMM plus an in-place add.

    ``transposed=True`` multiplies by ``m2.T`` without copying it: that is
    ``linear(x, W, b)``, where ``m1`` may also have extra leading dims.
    """

    double_backward = True

    @staticmethod
    def forward(ctx, bias, m1, m2, beta=1, alpha=1, transposed=False):
        xp = ctx.xp
        ctx.save_for_backward(m1, m2)
        ctx.beta, ctx.alpha, ctx.transposed = beta, alpha, transposed
        ctx.bias_shape = None if bias is None else bias.shape
        rows = m1.reshape(-1, m1.shape[-1]) if m1.ndim != 2 else m1
        out = xp.matmul(rows, m2.T if transposed else m2)
        if alpha != 1:
            out *= alpha
        if bias is not None:
            if beta == 1:
                _add_rows(xp, out, bias)
            elif beta != 0:
                out += beta * bias
        return out if m1.ndim == 2 else out.reshape(m1.shape[:-1] + (out.shape[-1],))

    @staticmethod
    def backward(ctx, g):
        m1, m2 = ctx.saved_tensors
        xp = ctx.xp
        need_bias, need_m1, need_m2 = ctx.needs_input_grad
        g2 = g.reshape(-1, g.shape[-1]) if g.ndim != 2 else g
        if ctx.alpha != 1:
            g2 = g2 * ctx.alpha
        gbias = gm1 = gm2 = None
        if need_bias:
            gbias = _column_sums(xp, g.reshape(-1, g.shape[-1])) if len(ctx.bias_shape) <= 1 else g
            if ctx.beta != 1:
                gbias = gbias * ctx.beta
        if need_m1:
            gm1 = xp.matmul(g2, m2 if ctx.transposed else m2.T).reshape(m1.shape)
        if need_m2:
            rows = m1.reshape(-1, m1.shape[-1]) if m1.ndim != 2 else m1
            gm2 = xp.matmul(g2.T, rows) if ctx.transposed else xp.matmul(rows.T, g2)
        return gbias, gm1, gm2


class LinearGemm(Op):
    """``F.linear`` with a 1-D bias: ``x @ W.T + b``; ``W`` is read transposed (never
    copied) and ``x``'s leading dims fold into one GEMM. Addmm without its scalars."""

    double_backward = True

    @staticmethod
    def forward(ctx, bias, x, w):
        ctx.save_for_backward(x, w)
        out = ctx.xp.matmul(x if x.ndim == 2 else x.reshape(-1, x.shape[-1]), w.T)
        _add_rows(ctx.xp, out, bias)
        return out if x.ndim == 2 else out.reshape(x.shape[:-1] + (out.shape[-1],))

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        need_bias, need_x, need_w = ctx.needs_input_grad
        xp = ctx.xp
        if x.ndim == 2:
            return (_column_sums(xp, g) if need_bias else None, xp.matmul(g, w) if need_x else None,
                    xp.matmul(g.T, x) if need_w else None)
        g2 = g.reshape(-1, g.shape[-1])
        return (_column_sums(xp, g2) if need_bias else None,
                xp.matmul(g2, w).reshape(x.shape) if need_x else None,
                xp.matmul(g2.T, x.reshape(-1, x.shape[-1])) if need_w else None)


LinearGemm = renamed_op(LinearGemm, "Addmm")  # PyTorch's node for linear is AddmmBackward0


# --- argument checks ---------------------------------------------------------------

def _shape_str(shape):
    return "x".join(str(s) for s in shape)


def _prod(shape):
    n = 1
    for s in shape:
        n *= s
    return n


def _broadcast_batch(sa, sb):
    """Broadcast two batch shapes, with PyTorch's error when they do not match."""
    n = max(len(sa), len(sb))
    sa, sb = (1,) * (n - len(sa)) + tuple(sa), (1,) * (n - len(sb)) + tuple(sb)
    out = []
    for i, (x, y) in enumerate(zip(sa, sb)):
        if x != y and x != 1 and y != 1:
            raise RuntimeError(f"The size of tensor a ({x}) must match the size of tensor b ({y}) at "
                               f"non-singleton dimension {i}")
        out.append(max(x, y))
    return tuple(out)


def _check_matmul(sa, sb):
    if not sa or not sb:
        raise RuntimeError(f"both arguments to matmul need to be at least 1D, but they are "
                           f"{len(sa)}D and {len(sb)}D")
    ka, kb = sa[-1], (sb[0] if len(sb) == 1 else sb[-2])
    if len(sb) >= 3:
        batch = _prod(_broadcast_batch(sa[:-2], sb[:-2]))
        if ka != kb:
            raise RuntimeError(f"Expected size for first two dimensions of batch2 tensor to be: "
                               f"[{batch}, {ka}] but got: [{batch}, {kb}].")
        return
    if ka == kb:
        return
    if len(sa) == 1 and len(sb) == 1:
        raise RuntimeError(f"inconsistent tensor size, expected tensor [{ka}] and src [{kb}] to have the "
                           f"same number of elements, but got {ka} and {kb} elements respectively")
    if len(sb) == 1:
        rows = _prod(sa[:-1])
        raise RuntimeError(f"size mismatch, got input ({rows}), mat ({rows}x{ka}), vec ({kb})")
    left = (1, ka) if len(sa) == 1 else (_prod(sa[:-1]), ka)
    raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({_shape_str(left)} and "
                       f"{_shape_str(sb)})")


def _check_same_dtype(a, b):
    if a._data.dtype != b._data.dtype:
        raise RuntimeError(f"expected m1 and m2 to have the same dtype, but got: {_c_name(a)} != {_c_name(b)}")


_C_NAMES = {"float32": "float", "float64": "double", "float16": "c10::Half", "int64": "long int",
            "int32": "int", "int16": "short int", "int8": "signed char", "uint8": "unsigned char",
            "bool": "bool"}


def _c_name(t):
    return _C_NAMES.get(t._data.dtype.name, t._data.dtype.name)


def _require_ndim(t, ndim, message):
    if t._data.ndim != ndim:
        raise RuntimeError(message)


def _check_bias(bias, rows, cols):
    """``bias`` must broadcast to the ``rows x cols`` product (PyTorch's expand error otherwise)."""
    shape = tuple(bias._data.shape)
    target = [rows, cols]
    if len(shape) > 2:
        raise RuntimeError(f"expand({bias.type()}{{{list(shape)}}}, size={target}): the number of sizes "
                           f"provided (2) must be greater or equal to the number of dimensions in the "
                           f"tensor ({len(shape)})")
    for i, (s, want) in enumerate(zip((1,) * (2 - len(shape)) + shape, target)):
        if s != 1 and s != want:
            raise RuntimeError(f"The expanded size of the tensor ({want}) must match the existing size ({s}) "
                               f"at non-singleton dimension {i}.  Target sizes: {target}.  "
                               f"Tensor sizes: {list(shape)}")


# --- functional forms -------------------------------------------------------------

def matmul(input, other):
    sa, sb = input._data.shape, other._data.shape
    _check_matmul(sa, sb)
    _check_same_dtype(input, other)
    na, nb = len(sa), len(sb)
    if na == 1 and nb == 1:
        return Dot.apply(input, other)
    if nb == 1:
        return Mv.apply(input, other)
    if na == 2 and nb == 2:
        return Mm.apply(input, other)
    if na == 1 and nb == 2:
        return VecMat.apply(input, other)
    return BatchedMatmul.apply(input, other)


def mm(input, mat2):
    _require_ndim(input, 2, "self must be a matrix")
    _require_ndim(mat2, 2, "mat2 must be a matrix")
    _check_matmul(input._data.shape, mat2._data.shape)
    _check_same_dtype(input, mat2)
    return Mm.apply(input, mat2)


def bmm(input, mat2):
    _require_ndim(input, 3, "batch1 must be a 3D tensor")
    _require_ndim(mat2, 3, "batch2 must be a 3D tensor")
    sa, sb = input._data.shape, mat2._data.shape
    if sb[0] != sa[0] or sb[1] != sa[2]:
        raise RuntimeError(f"Expected size for first two dimensions of batch2 tensor to be: "
                           f"[{sa[0]}, {sa[2]}] but got: [{sb[0]}, {sb[1]}].")
    _check_same_dtype(input, mat2)
    return Bmm.apply(input, mat2)


def mv(input, vec):
    if input._data.ndim != 2 or vec._data.ndim != 1:
        raise RuntimeError(f"vector + matrix @ vector expected, got 1, {input._data.ndim}, {vec._data.ndim}")
    _check_matmul(input._data.shape, vec._data.shape)
    _check_same_dtype(input, vec)
    return Mv.apply(input, vec)


def dot(input, tensor):
    if input._data.ndim != 1 or tensor._data.ndim != 1:
        raise RuntimeError(f"1D tensors expected, but got {input._data.ndim}D and {tensor._data.ndim}D tensors")
    _check_matmul(input._data.shape, tensor._data.shape)
    if input._data.dtype != tensor._data.dtype:
        raise RuntimeError(f"dot : expected both vectors to have same dtype, but found "
                           f"{_type_name(input)} and {_type_name(tensor)}")
    return Dot.apply(input, tensor)


def _type_name(t):
    return t.type().split(".")[-1].replace("Tensor", "")


def outer(input, vec2):
    """``input[:, None] * vec2``: a broadcast product, as PyTorch computes it (MulBackward0)."""
    for name, v in (("self", input), ("vec2", vec2)):
        if v._data.ndim != 1:
            raise RuntimeError(f"outer: Expected 1-D argument {name}, but got {v._data.ndim}-D")
    from .elementwise import mul
    from .shape import unsqueeze
    return mul(unsqueeze(input, 1), vec2)


ger = outer


def linear(input, weight, bias=None):
    """``input @ weight.T + bias``: one GEMM (weight never copied) and an in-place bias add."""
    if bias is not None:  # the common case, checked in a few comparisons
        x, w, b = input._data, weight._data, bias._data
        if (w.ndim == 2 and x.ndim and b.ndim == 1 and x.shape[-1] == w.shape[1] and b.shape[0] == w.shape[0]
                and x.dtype is w.dtype is b.dtype):
            return LinearGemm.apply(bias, input, weight)
    if weight._data.ndim != 2:
        if weight._data.ndim == 1:  # PyTorch allows a vector weight: a dot product per row
            out = matmul(input, weight)
            return out if bias is None else out + bias
        raise RuntimeError(f"Expect: weight.ndim == 2, Actual: {weight._data.ndim}")
    sx, sw = input._data.shape, weight._data.shape
    if not sx:
        raise RuntimeError("both arguments to linear need to be at least 1D, but they are 0D and 2D")
    if sx[-1] != sw[1]:
        rows = _prod(sx[:-1])
        raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({rows}x{sx[-1]} and "
                           f"{sw[1]}x{sw[0]})")
    _check_same_dtype(input, weight)
    if bias is None:
        from .shape import t
        return matmul(input, t(weight))
    if bias._data.dtype != weight._data.dtype:
        raise RuntimeError(f"self and mat2 must have the same dtype, but got {_type_name(bias)} and "
                           f"{_type_name(weight)}")
    _check_bias(bias, _prod(sx[:-1]), sw[0])
    return Addmm.apply(bias, input, weight, transposed=True)


def addmm(input, mat1, mat2, *, beta=1, alpha=1):
    _require_ndim(mat1, 2, f"mat1 must be a matrix, got {mat1._data.ndim}-D tensor")
    _require_ndim(mat2, 2, f"mat2 must be a matrix, got {mat2._data.ndim}-D tensor")
    _check_matmul(mat1._data.shape, mat2._data.shape)
    _check_same_dtype(mat1, mat2)
    _check_bias(input, mat1._data.shape[0], mat2._data.shape[1])
    return Addmm.apply(input, mat1, mat2, beta=beta, alpha=alpha)


def baddbmm(input, batch1, batch2, *, beta=1, alpha=1):
    """``beta * input + alpha * bmm(batch1, batch2)``."""
    product = bmm(batch1, batch2)
    if alpha != 1:
        product = product * alpha
    if beta == 0:
        return product
    return product + (input if beta == 1 else input * beta)


class Einsum(Op):
    """``xp.einsum`` with explicit output; each operand's gradient is another einsum."""

    double_backward = True

    @staticmethod
    def forward(ctx, *operands, inputs, output):
        ctx.inputs, ctx.output = inputs, output
        ctx.save_for_backward(*operands)
        return as_array(ctx.xp.einsum(",".join(inputs) + "->" + output, *operands))

    @staticmethod
    def backward(ctx, g):
        operands = ctx.saved_tensors
        xp = ctx.xp
        grads = []
        for i, (subs, need) in enumerate(zip(ctx.inputs, ctx.needs_input_grad)):
            if not need:
                grads.append(None)
                continue
            others = [(s, op) for j, (s, op) in enumerate(zip(ctx.inputs, operands)) if j != i]
            seen = set(ctx.output).union(*(set(s) for s, _ in others))
            kept = "".join(c for c in subs if c in seen)
            eq = ",".join([ctx.output] + [s for s, _ in others]) + "->" + kept
            r = xp.einsum(eq, g, *(op for _, op in others))
            # letters summed out of this operand alone come back by broadcasting
            shape = operands[i].shape
            r = r.reshape(tuple(n if c in kept else 1 for c, n in zip(subs, shape)))
            grads.append(xp.broadcast_to(r, shape))
        return tuple(grads)


def einsum(equation, *operands):
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    inputs = lhs.split(",")
    if len(inputs) != len(operands):
        raise RuntimeError(f"einsum(): {len(inputs)} operands were specified in the equation but "
                           f"{len(operands)} were given")
    if "." in eq:
        raise NotImplementedError("einsum(): '...' is not supported; name every dimension")
    for j, (subs, op) in enumerate(zip(inputs, operands)):
        if len(subs) != op._data.ndim:
            raise RuntimeError(f"einsum(): the number of subscripts in the equation ({len(subs)}) does not "
                               f"match the number of dimensions ({op._data.ndim}) for operand {j} and no "
                               "ellipsis was given")
        if len(set(subs)) != len(subs):
            raise NotImplementedError(f"einsum(): repeated subscripts within one operand ('{subs}') are "
                                      "not supported")
    if not arrow:
        counts = {}
        for c in lhs.replace(",", ""):
            counts[c] = counts.get(c, 0) + 1
        rhs = "".join(sorted(c for c, n in counts.items() if n == 1))
    sizes = {}
    for j, (subs, op) in enumerate(zip(inputs, operands)):
        for c, s in zip(subs, op._data.shape):
            if sizes.setdefault(c, s) != s:
                raise RuntimeError(f"einsum(): subscript {c} has size {s} for operand {j} which does not "
                                   f"broadcast with previously seen size {sizes[c]}")
    return Einsum.apply(*operands, inputs=tuple(inputs), output=rhs)

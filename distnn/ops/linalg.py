"""Matrix products: matmul (and its special cases mm, bmm, mv, dot), outer,
addmm, baddbmm, einsum, and ``linear`` as one fused GEMM-plus-bias op.

Every product is a single ``xp.matmul`` call; stacks that multiply one shared
matrix are folded into one 2-D GEMM instead of a loop over the batch.
"""

from ..autograd.function import Op

__all__ = ["matmul"]

TENSOR_METHODS = ("matmul",)


def _shape_str(shape):
    return "x".join(str(s) for s in shape)


def _fold_matmul(xp, a, b):
    """``a @ b`` where ``b`` is 2-D: one GEMM over all of ``a``'s leading dims."""
    if a.ndim <= 2:
        return xp.matmul(a, b)
    lead = a.shape[:-1]
    return xp.matmul(a.reshape(-1, a.shape[-1]), b).reshape(lead + (b.shape[-1],))


class _Product(Op):
    """``a @ b`` with numpy's matmul semantics; subclasses only differ in name."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        if b.ndim == 2:
            return _fold_matmul(ctx.xp, a, b)
        return ctx.xp.matmul(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        xp = ctx.xp
        need_a, need_b = ctx.needs_input_grad[:2]
        if a.ndim == 1 and b.ndim == 1:
            return (g * b if need_a else None), (g * a if need_b else None)
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
                # a shared matrix: one GEMM over all batch rows instead of a batch then a sum
                k = a2.shape[-1]
                gb = xp.matmul(a2.reshape(-1, k).T, g.reshape(-1, g.shape[-1]))
            else:
                gb = xp.matmul(xp.swapaxes(a2, -1, -2), g)
            if b.ndim == 1:
                gb = gb.reshape(-1, b.shape[0]).sum(0)
        return ga, gb


class Mm(_Product):
    pass


class Mv(_Product):
    pass


class Dot(_Product):
    pass


class Bmm(_Product):
    pass


class Matmul(_Product):
    """Batched products with broadcast batch dims (PyTorch shows UnsafeViewBackward0 there)."""


def _check_matmul(a, b):
    sa, sb = a._data.shape, b._data.shape
    if len(sa) == 0 or len(sb) == 0:
        raise RuntimeError(f"both arguments to matmul need to be at least 1D, but they are "
                           f"{len(sa)}D and {len(sb)}D")
    k_a = sa[-1]
    k_b = sb[0] if len(sb) == 1 else sb[-2]
    if k_a != k_b:
        if len(sa) == 1 and len(sb) == 1:
            raise RuntimeError(f"inconsistent tensor size, expected tensor [{sa[0]}] and src [{sb[0]}] to "
                               f"have the same number of elements, but got {sa[0]} and {sb[0]} elements "
                               "respectively")
        if len(sb) == 1:
            raise RuntimeError(f"size mismatch, got input ({sa[-2] if len(sa) > 1 else 1}), "
                               f"mat ({_shape_str(sa)}), vec ({sb[0]})")
        left = sa if len(sa) <= 2 else (_prod(sa[:-1]), sa[-1])
        raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({_shape_str(left if len(sa) > 1 else (1,) + sa)} "
                           f"and {_shape_str(sb)})")


def _prod(shape):
    n = 1
    for s in shape:
        n *= s
    return n


def _same_dtype(a, b):
    if a._data.dtype != b._data.dtype:
        raise RuntimeError(f"expected m1 and m2 to have the same dtype, but got: "
                           f"{_torch_name(a)} != {_torch_name(b)}")


def _torch_name(t):
    return str(t.dtype).replace("torch.", "")


def matmul(input, other):
    _same_dtype(input, other)
    _check_matmul(input, other)
    na, nb = input._data.ndim, other._data.ndim
    if na == 1 and nb == 1:
        return Dot.apply(input, other)
    if na == 2 and nb == 1:
        return Mv.apply(input, other)
    if na == 2 and nb == 2:
        return Mm.apply(input, other)
    return Matmul.apply(input, other)

"""Higher-order gradients: an op's array-level backward formula run on Tensors.

With ``create_graph=True`` the engine hands an op's ``backward(ctx, g)`` a
``GraphArray`` for ``g`` and for each saved input or output, and ``ctx.xp`` is
``graph_namespace(xp)``. A ``GraphArray`` answers the part of the ndarray API the
formulas use (operators, ``sum(axis, keepdims)``, ``reshape``, ``T``, ``astype``,
``dtype``, ...) by calling the differentiable ops, so the formula itself is
recorded and can be differentiated again. Anything that is not a GraphArray
(masks from comparisons, index arrays, zeros) stays a plain array: a constant.

Only ops that set ``double_backward = True`` run this way; each was audited for
saved intermediates (which would be constants here) and passes gradgradcheck.
"""

import numpy as np

from .. import backend


class GraphArray:
    """A Tensor dressed as an xp array, for backward formulas written on arrays."""

    __slots__ = ("t",)
    __array_ufunc__ = None  # ndarray <op> GraphArray defers to the reflected method here

    def __init__(self, t):
        self.t = t

    # --- what formulas read -------------------------------------------------
    @property
    def shape(self):
        return self.t._data.shape

    @property
    def ndim(self):
        return self.t._data.ndim

    @property
    def size(self):
        return self.t._data.size

    @property
    def dtype(self):
        return self.t._data.dtype

    @property
    def T(self):
        return GraphArray(_ops().permute(self.t, tuple(reversed(range(self.ndim)))))

    def __len__(self):
        return len(self.t._data)

    def __repr__(self):
        return f"GraphArray({self.t!r})"

    # --- array methods ------------------------------------------------------
    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return GraphArray(_ops().reshape(self.t, shape))

    def sum(self, axis=None, keepdims=False, dtype=None):
        if _no_axes(axis):
            return self if dtype is None else self.astype(dtype)
        if dtype is not None and np.dtype(dtype) != self.dtype:
            return self.astype(dtype).sum(axis, keepdims)
        return GraphArray(_ops().sum(self.t, _dims(axis), keepdims))

    def max(self, axis=None, keepdims=False):
        if _no_axes(axis):
            return self
        return GraphArray(_ops().amax(self.t, _dims(axis) if axis is not None else (), keepdims))

    def mean(self, axis=None, keepdims=False):
        if _no_axes(axis):
            return self
        return GraphArray(_ops().mean(self.t, _dims(axis), keepdims))

    def transpose(self, *axes):
        if not axes:
            return self.T
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return GraphArray(_ops().permute(self.t, axes))

    def swapaxes(self, a, b):
        return GraphArray(_ops().transpose(self.t, a, b))

    def astype(self, dtype, copy=True):
        dtype = np.dtype(dtype)
        if dtype == self.dtype:
            return self
        return GraphArray(_ops().to_dtype(self.t, dtype))

    def cumsum(self, axis, dtype=None):
        return GraphArray(_ops().cumsum(self.astype(dtype).t if dtype is not None else self.t, axis))

    def squeeze(self, axis=None):
        return GraphArray(_ops().squeeze(self.t, axis) if axis is not None else _ops().squeeze(self.t))

    def view(self):
        return self

    def copy(self):
        return GraphArray(_ops().clone(self.t))

    def __getitem__(self, index):
        return GraphArray(_ops().getitem(self.t, _unwrap_index(index)))

    # --- operators ------------------------------------------------------------
    def __add__(self, other):
        return _binary("add", self, other)

    def __radd__(self, other):
        return _binary("add", other, self)

    def __sub__(self, other):
        return _binary("sub", self, other)

    def __rsub__(self, other):
        return _binary("sub", other, self)

    def __mul__(self, other):
        return _binary("mul", self, other)

    def __rmul__(self, other):
        return _binary("mul", other, self)

    def __truediv__(self, other):
        return _binary("div", self, other)

    def __rtruediv__(self, other):
        return _binary("div", other, self)

    def __pow__(self, other):
        return _binary("pow", self, other)

    def __rpow__(self, other):
        return _binary("pow", other, self)

    def __matmul__(self, other):
        return _binary("matmul", self, other)

    def __rmatmul__(self, other):
        return _binary("matmul", other, self)

    def __neg__(self):
        return GraphArray(_ops().neg(self.t))

    def __pos__(self):
        return self

    # Comparisons have no gradient: their results are plain (constant) arrays.
    def __gt__(self, other):
        return self.t._data > _value(other)

    def __ge__(self, other):
        return self.t._data >= _value(other)

    def __lt__(self, other):
        return self.t._data < _value(other)

    def __le__(self, other):
        return self.t._data <= _value(other)

    def __eq__(self, other):
        return self.t._data == _value(other)

    def __ne__(self, other):
        return self.t._data != _value(other)

    __hash__ = None

    # No __iadd__ & co: ``a += b`` rebinds ``a`` to ``a + b``, recorded. The formulas
    # that use them only ever update a result they made themselves.

    def __setitem__(self, index, value):
        raise _in_place("item assignment")


def recording(x):
    """Whether a backward formula runs recorded (create_graph=True) on this operand."""
    return type(x) is GraphArray


def _ops():
    from .. import ops
    return ops


def _in_place(what):
    return RuntimeError(f"an in-place write ({what}) in a backward formula cannot be recorded for double "
                        "backward; the op needs a backward written with out-of-place operations")


def _value(x):
    """The array behind ``x``: for comparisons and other constant work."""
    return x.t._data if type(x) is GraphArray else x


def _operand(x):
    """``x`` as an op operand: the Tensor of a GraphArray, an array wrapped as a
    constant Tensor, a Python or numpy scalar as a Python scalar."""
    if type(x) is GraphArray:
        return x.t
    if isinstance(x, np.generic):
        return x.item() if x.ndim == 0 else x
    if isinstance(x, (bool, int, float)):
        return x
    from ..tensor import _wrap
    return _wrap(x)


def _binary(name, a, b):
    ops = _ops()
    x, y = _operand(a), _operand(b)
    if name == "matmul":
        return GraphArray(ops.matmul(x, y))
    if not hasattr(x, "_data"):
        reflected = {"add": "add", "mul": "mul", "sub": "rsub", "div": "rdiv", "pow": "rpow"}[name]
        return GraphArray(getattr(ops, reflected)(y, x))
    return GraphArray(getattr(ops, name)(x, y))


def _dims(axis):
    if axis is None:
        return None
    return tuple(axis) if isinstance(axis, (tuple, list)) else axis


def _no_axes(axis):
    """numpy reduces over no axis at all for ``axis=()`` (torch's ``dim=()`` means every axis)."""
    return isinstance(axis, (tuple, list)) and len(axis) == 0


def _unwrap_index(index):
    if type(index) is tuple:
        return tuple(_value(i) for i in index)
    return _value(index)


def _graph_args(args):
    return any(type(a) is GraphArray for a in args) or any(
        type(a) in (list, tuple) and any(type(x) is GraphArray for x in a) for a in args)


class _GraphNamespace:
    """``ctx.xp`` in graph mode: each function records an op when one of its arguments
    is a GraphArray, and is the array module's own function otherwise."""

    def __init__(self, xp):
        self._xp = xp

    def __getattr__(self, name):
        fn = getattr(self._xp, name)
        graph_fn = _GRAPH_FUNCTIONS.get(name)
        if not callable(fn) or name in _CONSTANT_FUNCTIONS:
            return fn

        def call(*args, **kwargs):
            if not _graph_args(args) and not _graph_args(tuple(kwargs.values())):
                return fn(*args, **kwargs)
            if graph_fn is None:
                raise RuntimeError(f"xp.{name} has no differentiable form for double backward")
            return graph_fn(*args, **kwargs)
        return call


def _unary(opname):
    def fn(x, *args, **kwargs):
        if args or kwargs.get("out") is not None:
            raise _in_place(f"xp.{opname}(..., out=)")
        return GraphArray(getattr(_ops(), opname)(_operand(x)))
    return fn


def _where(cond, a, b):
    ops = _ops()
    x, y = _operand(a), _operand(b)
    if not hasattr(x, "_data") and not hasattr(y, "_data"):
        raise RuntimeError("xp.where: at least one branch must be a GraphArray here")
    # the condition is a constant (a comparison's result): on the branches' device
    cond = ops.common.as_tensor(_value(cond), x if hasattr(x, "_data") else y)
    return GraphArray(ops.where(cond, x, y))


def _clip(x, lo=None, hi=None):
    return GraphArray(_ops().clamp(_operand(x), _value(lo), _value(hi)))


def _pair(opname):
    def fn(a, b):
        return GraphArray(getattr(_ops(), opname)(*_tensor_pair(a, b)))
    return fn


def _tensor_pair(a, b):
    x, y = _operand(a), _operand(b)
    from ..ops.common import as_tensor
    like = x if hasattr(x, "_data") else y
    return as_tensor(x, like), as_tensor(y, like)


def _expand_dims(x, axis):
    out = x.t
    ndim = x.ndim + (len(axis) if isinstance(axis, (tuple, list)) else 1)
    for a in sorted(a % ndim for a in (axis if isinstance(axis, (tuple, list)) else (axis,))):
        out = _ops().unsqueeze(out, a)
    return GraphArray(out)


def _broadcast_to(x, shape):
    return GraphArray(_ops().expand(_operand(x), tuple(shape)))


def _moveaxis(x, source, destination):
    return GraphArray(_ops().movedim(x.t, source, destination))


def _flip(x, axis=None):
    axes = tuple(range(x.ndim)) if axis is None else (axis if isinstance(axis, (tuple, list)) else (axis,))
    return GraphArray(_ops().flip(x.t, axes))


def _join(opname):
    def fn(arrays, axis=0):
        ops = _ops()
        tensors = [_operand(a) for a in arrays]
        like = next(t for t in tensors if hasattr(t, "_data"))
        tensors = [ops.common.as_tensor(t, like) for t in tensors]
        return GraphArray(getattr(ops, opname)(tensors, axis))
    return fn


def _einsum(equation, *operands):
    from ..ops.common import as_tensor
    tensors = [_operand(o) for o in operands]
    like = next(t for t in tensors if hasattr(t, "_data"))
    return GraphArray(_ops().einsum(equation, *(as_tensor(t, like) for t in tensors)))


def _identity(x, dtype=None, **kwargs):
    return x.astype(dtype) if dtype is not None else x


def _zeros_like(x, dtype=None):
    return backend.array_module(x.t._data).zeros_like(x.t._data, dtype=dtype)


_GRAPH_FUNCTIONS = {
    **{name: _unary(name) for name in ("exp", "log", "log1p", "log2", "log10", "sqrt", "sin", "cos", "tanh",
                                       "abs", "sign", "square", "reciprocal", "negative")},
    "where": _where, "clip": _clip, "maximum": _pair("maximum"), "minimum": _pair("minimum"),
    "matmul": _pair("matmul"), "multiply": _pair("mul"), "add": _pair("add"), "subtract": _pair("sub"),
    "divide": _pair("div"), "expand_dims": _expand_dims, "broadcast_to": _broadcast_to,
    "moveaxis": _moveaxis, "swapaxes": lambda x, a, b: x.swapaxes(a, b),
    "transpose": lambda x, axes=None: x.transpose(axes) if axes is not None else x.T,
    "reshape": lambda x, shape: x.reshape(shape), "flip": _flip, "concatenate": _join("cat"),
    "stack": _join("stack"), "einsum": _einsum, "asarray": _identity, "array": _identity,
    "ascontiguousarray": _identity, "zeros_like": _zeros_like,
}
_CONSTANT_FUNCTIONS = frozenset({"zeros", "ones", "empty", "arange", "full", "errstate", "dtype", "float32",
                                 "float64", "finfo", "iinfo", "result_type"})

_NAMESPACES = {}


def graph_namespace(xp):
    """The graph-mode stand-in for array module ``xp`` (one per module)."""
    ns = _NAMESPACES.get(xp)
    if ns is None:
        ns = _NAMESPACES[xp] = _GraphNamespace(xp)
    return ns

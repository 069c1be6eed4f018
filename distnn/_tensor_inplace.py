"""The in-place methods of ``Tensor`` (``add_``, ``mul_``, ``fill_``, ``copy_``,
``__setitem__``, ``t_``, ...), kept apart from the rest of the class.

Without autograd recording they write straight into the array. When a graph
is recorded they compute the out-of-place op on a snapshot and rebase the
tensor's history onto it, as PyTorch does. Either way they bump the version
counter shared with views, so backward refuses values it saved earlier.
"""

import numpy as np

from . import backend, ops
from .autograd import grad_mode
from .autograd.views import modify_view, refresh_view
from .ops.elementwise import refuse_bool_subtraction
from .ops.shape import TInPlace
from .ops.triangular import _check_matrix
from .random import sample_like
from .tensor import Tensor


class InPlaceMethods:
    """Attached to ``Tensor`` by ``_tensor_methods.py``."""

    def __setitem__(self, index, value):
        self._modify(lambda: ops.index_put(self, index, value),
                     lambda d: ops.assign_index(d, index, value), value)

    # ``p -= lr * g`` runs once per parameter per step: straight to the ufunc, as add_ & co.
    # would with alpha=1.
    def __iadd__(self, other):
        return self._modify_ufunc("add", other)

    def __imul__(self, other):
        return self._modify_ufunc("multiply", other)

    def __itruediv__(self, other):
        return self._modify_ufunc("true_divide", other)

    def add_(self, other, alpha=1):
        if alpha != 1:
            other = other * alpha
        return self._modify_ufunc("add", other)

    def sub_(self, other, alpha=1):
        if alpha != 1:
            refuse_bool_subtraction(self, other)  # before the scaling turns a bool into a number
            other = other * alpha
        # Another tensor of this one's dtype (``p -= lr * g``) needs no look: numpy refuses two
        # bools itself. Any other operand may be a bool that the ufunc would quietly cast.
        elif other.__class__ is not Tensor or other._data.dtype is not self._data.dtype:
            refuse_bool_subtraction(self, other)
        try:
            return self._modify_ufunc("subtract", other)
        except RuntimeError:  # numpy's refusal of two bools, worded as PyTorch's
            refuse_bool_subtraction(self, other)
            raise

    __isub__ = sub_  # ``p -= lr * g``: straight to sub_'s ufunc, with alpha=1

    def mul_(self, other):
        return self._modify_ufunc("multiply", other)

    def div_(self, other):
        return self._modify_ufunc("true_divide", other)

    def pow_(self, other):
        return self._modify_ufunc("power", other)

    def clamp_(self, min=None, max=None):  # noqa: A002  (PyTorch's names)
        return self._modify(lambda: ops.clamp(self, min, max),
                            lambda d: _clip_inplace(d, min, max), None)

    clip_ = clamp_

    def zero_(self):
        return self.fill_(0)

    def fill_(self, value):
        v = value._data if isinstance(value, Tensor) else value
        return self._modify(lambda: ops.full_like_of(self, value),
                            lambda d: d.fill(v) if not hasattr(v, "shape") else d.__setitem__(Ellipsis, v),
                            value)

    def copy_(self, src, non_blocking=False):
        if not isinstance(src, Tensor):
            raise TypeError(f"Expect: copy_ from a Tensor, Actual: {type(src).__name__}")
        return self._modify(lambda: ops.copy_from(self, src),
                            lambda d: d.__setitem__(Ellipsis, backend.move_to(src._data, self.device)),
                            src)

    def masked_fill_(self, mask, value):
        return self._modify(lambda: ops.masked_fill(self, mask, value),
                            lambda d: ops.assign_masked(d, mask, value), value)

    def addcmul_(self, t1, t2, value=1):
        return self.add_(t1 * t2 * value if value != 1 else t1 * t2)

    def addcdiv_(self, t1, t2, value=1):
        return self.add_(t1 / t2 * value if value != 1 else t1 / t2)

    def lerp_(self, end, weight):
        return self.add_((end - self) * weight)

    def sqrt_(self):
        return self._modify_unary("sqrt")

    def exp_(self):
        return self._modify_unary("exp")

    def neg_(self):
        return self._modify_unary("negative")

    def abs_(self):
        return self._modify_unary("abs")

    def relu_(self):
        return self.clamp_(min=0)

    def sign_(self):
        return self._modify_unary("sign")

    def tril_(self, diagonal=0):
        _check_matrix(self, "tril")
        return self._modify(lambda: ops.tril(self, diagonal),
                            lambda d: d.__setitem__(Ellipsis, backend.array_module(d).tril(d, diagonal)), None)

    def triu_(self, diagonal=0):
        _check_matrix(self, "triu")
        return self._modify(lambda: ops.triu(self, diagonal),
                            lambda d: d.__setitem__(Ellipsis, backend.array_module(d).triu(d, diagonal)), None)

    def t_(self):
        """Transpose a matrix in place: the tensor becomes its own transposed view (its
        shape changes, its data stays where it is) and, recorded, takes ``t()``'s node.

        Views taken of it before keep their data, but their history is replayed from it
        in its old layout: one used in a recorded graph after a later in-place op on
        this tensor gets a wrong history (PyTorch replays it by strides)."""
        n = self._data.ndim
        if n > 2:
            raise RuntimeError(f"t_() expects a tensor with <= 2 dimensions, but self is {n}D")
        enabled = grad_mode._state.enabled
        if enabled and self.requires_grad:
            if self.grad_fn is None:
                raise RuntimeError("a leaf Variable that requires grad is being used in an in-place operation.")
            if self._base is not None and self._base.requires_grad and self._base.grad_fn is None:
                raise RuntimeError("a view of a leaf Variable that requires grad is being used in an in-place "
                                   "operation.")
        out = TInPlace.apply(self, 0, 1 if n == 2 else 0)
        self._data = out._data
        if out.requires_grad:
            self.grad_fn, self._output_nr = out.grad_fn, 0
        if self._base is not None and enabled:  # replaying the view from its base now ends in the transpose
            self._view_replay, self._view_fn = out._view_replay, out._view_fn
        self._vc[0] += 1
        return self

    def uniform_(self, a=0.0, b=1.0, generator=None):
        return self._overwrite(sample_like(self, "uniform", a, b, generator))

    def normal_(self, mean=0.0, std=1.0, generator=None):
        return self._overwrite(sample_like(self, "normal", mean, std, generator))

    def bernoulli_(self, p=0.5, generator=None):
        return self._overwrite(sample_like(self, "uniform", 0.0, 1.0, generator) < p)

    def _overwrite(self, array):
        return self._modify(None, lambda d: d.__setitem__(Ellipsis, array), None)

    def _modify_ufunc(self, name, other):
        is_tensor = isinstance(other, Tensor)
        o = other._data if is_tensor else other
        if not grad_mode._state.enabled or not (self.requires_grad or (is_tensor and other.requires_grad)):
            _ufunc_inplace(self._data, name, o)  # what _modify does unrecorded, without its closures
            self._vc[0] += 1
            return self
        return self._modify(lambda: getattr(ops, _UFUNC_OPS[name])(self, other),
                            lambda d: _ufunc_inplace(d, name, o), other)

    def _modify_unary(self, name):
        return self._modify(lambda: getattr(ops, _UNARY_OPS[name])(self),
                            lambda d: getattr(backend.array_module(d), name)(d, out=d), None)

    def _modify(self, out_of_place, in_place, other):
        """Apply an in-place op: directly on the array when no graph is recorded,
        otherwise through ``out_of_place`` with this tensor's history rebased onto it."""
        record = grad_mode._state.enabled and (
            self.requires_grad or (isinstance(other, Tensor) and other.requires_grad))
        if not record:
            in_place(self._data)
        else:
            if self.requires_grad and self.grad_fn is None:
                raise RuntimeError("a leaf Variable that requires grad is being used in an in-place operation.")
            if out_of_place is None:
                raise RuntimeError("this in-place operation is not differentiable; wrap it in no_grad()")
            if self._base is not None:
                refresh_view(self)
            result = _rebase_source(self, out_of_place)
            if self._base is not None:
                modify_view(self, result)  # the base's history takes the new values too
            else:
                self._data[...] = result._data
                self.grad_fn, self._output_nr, self.requires_grad = result.grad_fn, result._output_nr, True
        self._vc[0] += 1
        return self


def _rebase_source(t, out_of_place):
    """Run ``out_of_place`` on a snapshot of ``t`` so the saved value survives the overwrite."""
    # The snapshot gets a private version counter: the op may save it, and the
    # bump that follows this in-place write must not invalidate that copy.
    original, counter = t._data, t._vc
    t._data, t._vc = t._data.copy(), [0]
    try:
        return out_of_place()
    finally:
        t._data, t._vc = original, counter


_UFUNC_OPS = {"add": "add", "subtract": "sub", "multiply": "mul", "true_divide": "div", "power": "pow"}
_UNARY_OPS = {"sqrt": "sqrt", "exp": "exp", "negative": "neg", "abs": "abs", "sign": "sign"}


def _ufunc_inplace(d, name, other):
    try:
        getattr(np if type(d) is np.ndarray else backend.array_module(d), name)(d, other, out=d)
    except TypeError as exc:  # numpy's UFuncTypeError: an int tensor given a float, say
        other_dtype = getattr(other, "dtype", type(other).__name__)
        raise RuntimeError(f"result type of {name} with {other_dtype} can't be cast to the "
                           f"desired output type {d.dtype}") from exc


def _clip_inplace(d, lo, hi):
    lo = lo._data if isinstance(lo, Tensor) else lo
    hi = hi._data if isinstance(hi, Tensor) else hi
    if lo is not None:
        backend.array_module(d).maximum(d, lo, out=d)
    if hi is not None:
        backend.array_module(d).minimum(d, hi, out=d)

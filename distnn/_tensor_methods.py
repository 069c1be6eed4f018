"""Every ``Tensor`` method that needs autograd or ops, attached in this one place.

``tensor.py`` holds the data and metadata only, so the layers import downwards:
tensor <- autograd <- ops <- this module. Here ``Tensor`` gains the operators
below, each ``ops`` function listed in ``ops.TENSOR_METHODS`` (``x.sum(1)`` is
``ops.sum(x, 1)``: one code path), and the in-place, autograd and conversion
methods of the ``_tensor_*`` modules. ``distnn/__init__.py`` imports this
module before anything else can make a tensor.
"""

import collections

from . import ops
from ._tensor_autograd import AutogradMethods
from ._tensor_convert import ConversionMethods
from ._tensor_inplace import InPlaceMethods
from ._tensor_shared import SharedMemoryMethods
from .tensor import Tensor


class OperatorMethods:
    """Python's operators on tensors, each one op."""

    def __add__(self, other):
        return ops.add(self, other)

    def __radd__(self, other):
        return ops.add(self, other)

    def __sub__(self, other):
        return ops.sub(self, other)

    def __rsub__(self, other):
        return ops.rsub(self, other)

    def __mul__(self, other):
        return ops.mul(self, other)

    def __rmul__(self, other):
        return ops.mul(self, other)

    def __truediv__(self, other):
        return ops.div(self, other)

    def __rtruediv__(self, other):
        return ops.rdiv(self, other)

    def __floordiv__(self, other):
        return ops.floor_divide(self, other)

    def __mod__(self, other):
        return ops.remainder(self, other)

    def __pow__(self, other):
        return ops.pow(self, other)

    def __rpow__(self, other):
        return ops.rpow(self, other)

    def __matmul__(self, other):
        return ops.matmul(self, other)

    def __rmatmul__(self, other):
        return ops.matmul(other, self)

    def __neg__(self):
        return ops.neg(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return ops.abs(self)

    def __eq__(self, other):
        return ops.eq(self, other)

    def __ne__(self, other):
        return ops.ne(self, other)

    def __lt__(self, other):
        return ops.lt(self, other)

    def __le__(self, other):
        return ops.le(self, other)

    def __gt__(self, other):
        return ops.gt(self, other)

    def __ge__(self, other):
        return ops.ge(self, other)

    def __and__(self, other):
        return ops.logical_and(self, other) if self._data.dtype.kind == "b" else \
            ops.bitwise_and(self, other)

    def __or__(self, other):
        return ops.logical_or(self, other) if self._data.dtype.kind == "b" else \
            ops.bitwise_or(self, other)

    def __xor__(self, other):
        return ops.logical_xor(self, other)

    def __invert__(self):
        return ops.logical_not(self) if self._data.dtype.kind == "b" else ops.bitwise_not(self)

    def __getitem__(self, index):
        return ops.getitem(self, index)

    @property
    def T(self):
        return ops.permute(self, tuple(reversed(range(self._data.ndim))))

    @property
    def mT(self):
        return ops.transpose(self, -2, -1)


# What a class body holds besides its methods; __hash__ too, as defining __eq__
# sets it to None in a class (Tensor keeps object's identity hash).
_NOT_METHODS = frozenset({"__module__", "__qualname__", "__doc__", "__dict__", "__weakref__", "__hash__",
                          "__firstlineno__", "__static_attributes__"})


def _attach():
    sources = (OperatorMethods, InPlaceMethods, AutogradMethods, ConversionMethods, SharedMemoryMethods)
    methods = [(name, value) for source in sources for name, value in vars(source).items()
               if name not in _NOT_METHODS]
    methods += [(name, getattr(ops, name)) for name in ops.TENSOR_METHODS]
    counts = collections.Counter(name for name, _ in methods)
    twice = sorted(name for name, n in counts.items() if n > 1 or name in vars(Tensor))
    if twice:  # one would silently replace the other
        raise RuntimeError(f"Tensor methods defined in two places: {twice}")
    for name, value in methods:
        setattr(Tensor, name, value)


_attach()

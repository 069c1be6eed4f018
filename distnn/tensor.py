"""``Tensor``: one xp array (numpy or cupy) plus its autograd state.

Arithmetic, reductions and shape methods are the functions of ``distnn.ops``
attached as methods at the end of this file, so ``x.sum(1)`` and
``distnn.sum(x, 1)`` are one code path. In-place methods (``add_``,
``__setitem__``, ...) come from ``_tensor_inplace.py``, the autograd methods
from ``_tensor_autograd.py`` and ``to``/``float``/``new_*`` from ``_tensor_convert.py``.
"""

import numpy as np

from . import _tensor_autograd, _tensor_convert, _tensor_inplace, backend
from . import dtypes as _dt
from ._dims import normalize_dim
from ._tensor_autograd import AutogradMethods
from ._tensor_convert import ConversionMethods, _to_array
from ._tensor_inplace import InPlaceMethods


class Size(tuple):
    """A shape, printed as PyTorch prints it: ``torch.Size([1, 10])``."""

    def __repr__(self):
        return f"torch.Size({list(self)})"

    __str__ = __repr__

    def numel(self):
        n = 1
        for d in self:
            n *= d
        return n

    def __getitem__(self, item):
        out = tuple.__getitem__(self, item)
        return Size(out) if isinstance(item, slice) else out


_TYPE_NAMES = {"float32": "FloatTensor", "float64": "DoubleTensor", "float16": "HalfTensor",
               "int64": "LongTensor", "int32": "IntTensor", "int16": "ShortTensor",
               "int8": "CharTensor", "uint8": "ByteTensor", "bool": "BoolTensor"}


class Tensor(InPlaceMethods, AutogradMethods, ConversionMethods):
    """A multi-dimensional array that records the operations applied to it."""

    # Defaults live on the class: making a tensor (once per op) then sets only
    # what differs, which is most of the per-op cost Python adds.
    requires_grad = False
    grad = None
    grad_fn = None
    _output_nr = 0
    _base = None
    _view_fn = None  # for a view: its root's grad_fn when its own was made (autograd/views.py)
    _view_replay = None
    _accumulator = None
    _backward_hooks = None
    _post_accumulate_hooks = None
    _retains_grad = False

    def __init__(self, *args, dtype=None, device=None, requires_grad=False):
        """Legacy constructor: ``Tensor(2, 3)`` (zeros of that size) or ``Tensor(data)``."""
        if args and all(isinstance(a, int) for a in args):
            data = backend.xp_for(device).zeros(args, dtype=_dt.to_np(dtype) or _dt.DEFAULT_FLOAT)
        elif len(args) == 1:
            data = _to_array(args[0], dtype or _dt.float32, device)
        elif not args:
            data = backend.xp_for(device).zeros((0,), dtype=_dt.DEFAULT_FLOAT)
        else:
            raise TypeError(f"Expect: Tensor(*sizes) or Tensor(data), Actual: {args!r}")
        _init(self, data)
        if requires_grad:
            self.requires_grad_(True)

    # --- metadata ------------------------------------------------------------
    @property
    def shape(self):
        return Size(self._data.shape)

    def size(self, dim=None):
        if dim is None:
            return Size(self._data.shape)
        return self._data.shape[normalize_dim(dim, self._data.ndim)]

    @property
    def dtype(self):
        return _dt.from_numpy_dtype(self._data.dtype)

    @property
    def device(self):
        return backend.device_of(self._data)

    @property
    def is_cuda(self):
        return self.device.type == "cuda"

    @property
    def ndim(self):
        return self._data.ndim

    def dim(self):
        return self._data.ndim

    def numel(self):
        return int(self._data.size)

    nelement = numel

    def element_size(self):
        return self._data.itemsize

    def stride(self, dim=None):
        strides = tuple(s // self._data.itemsize for s in self._data.strides)
        return strides if dim is None else strides[normalize_dim(dim, self._data.ndim)]

    def is_contiguous(self):
        return bool(self._data.flags.c_contiguous)

    def is_floating_point(self):
        return self._data.dtype.kind == "f"

    @property
    def is_leaf(self):
        return self.grad_fn is None

    @property
    def _version(self):
        return self._vc[0]

    def type(self, dtype=None):
        if dtype is None:
            prefix = "torch.cuda." if self.is_cuda else "torch."
            return prefix + _TYPE_NAMES[self._data.dtype.name]
        return self.to(dtype)

    def data_ptr(self):
        return self._data.__array_interface__["data"][0] if type(self._data) is np.ndarray \
            else self._data.data.ptr

    # --- data access -----------------------------------------------------------
    @property
    def data(self):
        """The same storage, detached from autograd and from the version counter."""
        return _wrap(self._data)

    @data.setter
    def data(self, value):
        if not isinstance(value, Tensor):
            raise TypeError(f"Expect: a Tensor assigned to .data, Actual: {type(value).__name__}")
        self._data = value._data

    def item(self):
        if self._data.size != 1:
            raise RuntimeError(f"a Tensor with {self._data.size} elements cannot be converted to Scalar")
        return self._data.reshape(()).item()

    def tolist(self):
        return backend.to_numpy(self._data).tolist()

    def numpy(self, force=False):
        if self.requires_grad and not force:
            raise RuntimeError("Can't call numpy() on Tensor that requires grad. "
                               "Use tensor.detach().numpy() instead.")
        if type(self._data) is not np.ndarray and not force:
            raise TypeError(f"can't convert {self.device} device type tensor to numpy. "
                            "Use Tensor.cpu() to copy the tensor to host memory first.")
        return backend.to_numpy(self._data)

    def __array__(self, dtype=None, copy=None):
        arr = backend.to_numpy(self._data)
        return arr if dtype is None else arr.astype(dtype)

    def __len__(self):
        if self._data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    def __iter__(self):
        if self._data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self._data.shape[0]))

    def __bool__(self):
        if self._data.size != 1:
            raise RuntimeError(f"Boolean value of Tensor with {self._data.size} values is ambiguous")
        return bool(self._data.reshape(()).item())

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if self._data.dtype.kind not in "iub" or self._data.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    def __format__(self, spec):
        if self._data.ndim == 0 and spec:
            return format(self.item(), spec)
        return format(repr(self), spec)

    __hash__ = object.__hash__

    def __repr__(self):
        from ._tensor_str import tensor_repr
        return tensor_repr(self)

    def __deepcopy__(self, memo):
        if id(self) in memo:
            return memo[id(self)]
        out = _wrap(self._data.copy(), self.requires_grad)
        if self.grad is not None:
            out.grad = self.grad.__deepcopy__(memo)
        memo[id(self)] = out
        return out

    def __reduce_ex__(self, protocol):
        # Lets DataLoader worker processes hand batches back (multiprocessing only;
        # nothing in distnn sends or stores tensors with pickle).
        return (_rebuild, (backend.to_numpy(self._data), self.requires_grad))

    # --- operators -------------------------------------------------------------------
    def __add__(self, other):
        return _ops.add(self, other)

    def __radd__(self, other):
        return _ops.add(self, other)

    def __sub__(self, other):
        return _ops.sub(self, other)

    def __rsub__(self, other):
        return _ops.rsub(self, other)

    def __mul__(self, other):
        return _ops.mul(self, other)

    def __rmul__(self, other):
        return _ops.mul(self, other)

    def __truediv__(self, other):
        return _ops.div(self, other)

    def __rtruediv__(self, other):
        return _ops.rdiv(self, other)

    def __floordiv__(self, other):
        return _ops.floor_divide(self, other)

    def __mod__(self, other):
        return _ops.remainder(self, other)

    def __pow__(self, other):
        return _ops.pow(self, other)

    def __rpow__(self, other):
        return _ops.rpow(self, other)

    def __matmul__(self, other):
        return _ops.matmul(self, other)

    def __rmatmul__(self, other):
        return _ops.matmul(other, self)

    def __neg__(self):
        return _ops.neg(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return _ops.abs(self)

    def __eq__(self, other):
        return _ops.eq(self, other)

    def __ne__(self, other):
        return _ops.ne(self, other)

    def __lt__(self, other):
        return _ops.lt(self, other)

    def __le__(self, other):
        return _ops.le(self, other)

    def __gt__(self, other):
        return _ops.gt(self, other)

    def __ge__(self, other):
        return _ops.ge(self, other)

    def __and__(self, other):
        return _ops.logical_and(self, other) if self._data.dtype.kind == "b" else \
            _ops.bitwise_and(self, other)

    def __or__(self, other):
        return _ops.logical_or(self, other) if self._data.dtype.kind == "b" else \
            _ops.bitwise_or(self, other)

    def __xor__(self, other):
        return _ops.logical_xor(self, other)

    def __invert__(self):
        return _ops.logical_not(self) if self._data.dtype.kind == "b" else _ops.bitwise_not(self)

    def __getitem__(self, index):
        return _ops.getitem(self, index)

    @property
    def T(self):
        return _ops.permute(self, tuple(reversed(range(self._data.ndim))))

    @property
    def mT(self):
        return _ops.transpose(self, -2, -1)


def _init(t, data):
    t._data = data
    t._vc = [0]


def _wrap(data, requires_grad=False, grad_fn=None, output_nr=0):
    """Make a Tensor around an existing array without copying (the hot path of every op)."""
    t = _new_tensor(Tensor)
    t._data = data
    t._vc = [0]
    if requires_grad:
        t.requires_grad = True
        if grad_fn is not None:
            t.grad_fn = grad_fn
            if output_nr:
                t._output_nr = output_nr
    return t


_new_tensor = object.__new__


def _rebuild(array, requires_grad):
    t = _wrap(array)
    t.requires_grad = requires_grad
    return t


from . import ops as _ops  # noqa: E402  (ops import Tensor from this module)
from . import autograd as _autograd  # noqa: E402  (still loading when this module is; used at call time)

for _name in _ops.TENSOR_METHODS:
    setattr(Tensor, _name, getattr(_ops, _name))
_tensor_inplace.Tensor, _tensor_inplace._ops = Tensor, _ops
_tensor_autograd._wrap, _tensor_autograd._autograd = _wrap, _autograd
_tensor_convert.Tensor, _tensor_convert._ops, _tensor_convert._wrap = Tensor, _ops, _wrap

"""``Tensor``: one xp array (numpy or cupy) plus its autograd state, and ``_wrap``,
which every op uses to make one around its result.

The bottom of the package: this module imports no other part of distnn but the
backend, dtypes and dim helpers, so autograd and ops can build on it. The
methods that need them (arithmetic, reductions, in-place, autograd, ``to``) are
attached in one place above both, ``_tensor_methods.py``.
"""

import numpy as np

from . import backend
from . import dtypes as _dt
from ._dims import normalize_dim
from ._tensor_str import tensor_repr


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


class Tensor:
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
        if not force and backend.is_gpu_array(self._data):
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
        # Lets DataLoader workers and distnn.multiprocessing hand tensors between processes
        # (nothing in distnn stores tensors with pickle). Data in shared memory travels as
        # a reference to it (its block says how: _tensor_shared.py), any other as a copy.
        owner = _memory_owner(self._data)
        if hasattr(owner, "reduce_tensor"):
            return owner.reduce_tensor(self)
        return (_rebuild, (backend.to_numpy(self._data), self.requires_grad))


def _typename(obj):
    """What ``torch.typename`` prints: ``torch.FloatTensor`` for a tensor, else the qualified class."""
    if isinstance(obj, Tensor):
        return obj.type()
    cls = type(obj)
    return cls.__qualname__ if cls.__module__ in ("", "builtins") else f"{cls.__module__}.{cls.__qualname__}"


def _memory_owner(array):
    """What owns ``array``'s memory when it is not a numpy array (None for numpy-owned memory)."""
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array.base


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


def _shape_from_args(size):
    """Accept ``f(2, 3)``, ``f((2, 3))`` and ``f(torch.Size([2, 3]))``."""
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = size[0]
    return tuple(int(s) for s in size)


def _to_array(data, dtype, device):
    """Copy Python data / arrays / tensors into a new array of ``dtype`` (None: inferred)."""
    xp = backend.xp_for(device)
    if isinstance(data, Tensor):
        data = data._data
    if isinstance(data, (list, tuple)) and any(isinstance(x, Tensor) for x in _flatten(data)):
        data = _nested_tensors_to_numpy(data)
    np_dtype = _dt.to_np(dtype)
    if np_dtype is None:
        if hasattr(data, "dtype") and not isinstance(data, np.generic):
            np_dtype = data.dtype
            if np_dtype not in _dt._BY_NP:
                raise TypeError(f"Expect: a supported dtype, Actual: {np_dtype}")
        else:
            np_dtype = _infer_dtype(data)
    return xp.array(backend.to_numpy(data) if xp is np else data, dtype=np_dtype)


def _infer_dtype(data):
    probe = np.asarray(data)
    if probe.dtype.kind == "f":
        return _dt.DEFAULT_FLOAT
    if probe.dtype.kind in "iu":
        return np.dtype(np.int64)
    if probe.dtype.kind == "b":
        return np.dtype(np.bool_)
    raise TypeError(f"Expect: numbers, bools or nested lists of them, Actual: {probe.dtype} data")


def _flatten(data):
    for x in data:
        if isinstance(x, (list, tuple)):
            yield from _flatten(x)
        else:
            yield x


def _nested_tensors_to_numpy(data):
    if isinstance(data, Tensor):
        return backend.to_numpy(data._data)
    if isinstance(data, (list, tuple)):
        return np.array([_nested_tensors_to_numpy(x) for x in data])
    return data

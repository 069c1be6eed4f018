"""Tensor factories: ``tensor``, ``zeros``/``ones``/``full``/``empty`` (+ ``_like``),
``arange``, ``linspace``, ``eye``, random draws, and the legacy typed
constructors (``FloatTensor``, ``LongTensor``, ...) the old tutorials use."""

import numpy as np

from . import backend
from . import dtypes as _dt
from . import random as _random
from .tensor import Tensor, _shape_from_args, _to_array, _wrap

__all__ = ["tensor", "as_tensor", "from_numpy", "zeros", "ones", "full", "empty", "zeros_like",
           "ones_like", "full_like", "empty_like", "rand_like", "randn_like", "arange", "linspace",
           "eye", "rand", "randn", "randint", "randperm", "normal", "FloatTensor", "DoubleTensor",
           "HalfTensor", "LongTensor", "IntTensor", "ShortTensor", "ByteTensor", "BoolTensor"]


def _finish(data, requires_grad):
    t = _wrap(data)
    if requires_grad:
        t.requires_grad_(True)
    return t


def tensor(data, dtype=None, device=None, requires_grad=False):
    """A new tensor holding a copy of ``data`` (lists, numbers, arrays, tensors)."""
    if isinstance(data, Tensor) and device is None:
        device = data.device
    return _finish(_to_array(data, dtype, device), requires_grad)


def as_tensor(data, dtype=None, device=None):
    """Like ``tensor`` but shares memory when ``data`` already fits."""
    if isinstance(data, Tensor):
        return data.to(dtype=dtype, device=device) if (dtype or device) else data
    if isinstance(data, np.ndarray) and device in (None, "cpu") and data.dtype in _dt._BY_NP \
            and (dtype is None or _dt.to_np(dtype) == data.dtype):
        return _wrap(data)
    return tensor(data, dtype=dtype, device=device)


def from_numpy(array):
    """A tensor sharing ``array``'s memory and dtype (float64 stays float64)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"Expect: a numpy.ndarray, Actual: {type(array).__name__}")
    _dt.from_numpy_dtype(array.dtype)
    return _wrap(array)


def _filled(size, value, dtype, device, requires_grad, default=None):
    shape = _shape_from_args(size)
    np_dtype = _dt.to_np(dtype) or default or _dt.DEFAULT_FLOAT
    return _finish(backend.xp_for(device).full(shape, value, dtype=np_dtype), requires_grad)


def zeros(*size, dtype=None, device=None, requires_grad=False):
    return _filled(size, 0, dtype, device, requires_grad)


def ones(*size, dtype=None, device=None, requires_grad=False):
    return _filled(size, 1, dtype, device, requires_grad)


def empty(*size, dtype=None, device=None, requires_grad=False):
    return _filled(size, 0, dtype, device, requires_grad)


def full(size, fill_value, dtype=None, device=None, requires_grad=False):
    default = np.dtype(np.int64) if isinstance(fill_value, int) and not isinstance(fill_value, bool) \
        else np.dtype(np.bool_) if isinstance(fill_value, bool) else None
    return _filled((size,), fill_value, dtype, device, requires_grad, default)


def _like(input, value, dtype, device, requires_grad):
    return _filled((input.shape,), value, dtype or input.dtype, device or input.device, requires_grad)


def zeros_like(input, dtype=None, device=None, requires_grad=False):
    return _like(input, 0, dtype, device, requires_grad)


def ones_like(input, dtype=None, device=None, requires_grad=False):
    return _like(input, 1, dtype, device, requires_grad)


def empty_like(input, dtype=None, device=None, requires_grad=False):
    return _like(input, 0, dtype, device, requires_grad)


def full_like(input, fill_value, dtype=None, device=None, requires_grad=False):
    return _like(input, fill_value, dtype, device, requires_grad)


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad=False):
    if end is None:
        start, end = 0, start
    values = (start, end, step)
    if dtype is None:
        dtype = _dt.int64 if all(isinstance(v, int) for v in values) else _dt.float32
    arr = np.arange(start, end, step, dtype=np.float64 if _dt.to_np(dtype).kind == "f" else None)
    return _finish(backend.move_to(arr.astype(_dt.to_np(dtype)), device), requires_grad)


def linspace(start, end, steps, dtype=None, device=None, requires_grad=False):
    arr = np.linspace(start, end, int(steps)).astype(_dt.to_np(dtype) or _dt.DEFAULT_FLOAT)
    return _finish(backend.move_to(arr, device), requires_grad)


def eye(n, m=None, dtype=None, device=None, requires_grad=False):
    arr = backend.xp_for(device).eye(n, m, dtype=_dt.to_np(dtype) or _dt.DEFAULT_FLOAT)
    return _finish(arr, requires_grad)


def rand(*size, generator=None, dtype=None, device=None, requires_grad=False):
    arr = _random.sample("uniform", _shape_from_args(size), _dt.to_np(dtype) or _dt.DEFAULT_FLOAT,
                         device, generator)
    return _finish(arr, requires_grad)


def randn(*size, generator=None, dtype=None, device=None, requires_grad=False):
    arr = _random.sample("normal", _shape_from_args(size), _dt.to_np(dtype) or _dt.DEFAULT_FLOAT,
                         device, generator)
    return _finish(arr, requires_grad)


def rand_like(input, dtype=None, device=None, requires_grad=False):
    return rand(*input.shape, dtype=dtype or input.dtype, device=device or input.device,
                requires_grad=requires_grad)


def randn_like(input, dtype=None, device=None, requires_grad=False):
    return randn(*input.shape, dtype=dtype or input.dtype, device=device or input.device,
                 requires_grad=requires_grad)


def normal(mean, std, size, generator=None, dtype=None, device=None, requires_grad=False):
    arr = _random.sample("normal", _shape_from_args((size,)), _dt.to_np(dtype) or _dt.DEFAULT_FLOAT,
                         device, generator, mean, std)
    return _finish(arr, requires_grad)


def randint(low, high=None, size=None, generator=None, dtype=None, device=None):
    if size is None and isinstance(high, (tuple, list)):  # randint(high, size), as torch
        low, high, size = 0, low, high
    if high is None:
        low, high = 0, low
    if size is None:
        raise TypeError("randint() missing required argument 'size'")
    arr = _random.rng(generator).integers(low, high, size=_shape_from_args((size,)))
    return _wrap(backend.move_to(arr.astype(_dt.to_np(dtype) or np.int64), device))


def randperm(n, generator=None, dtype=None, device=None):
    arr = _random.rng(generator).permutation(int(n))
    return _wrap(backend.move_to(arr.astype(_dt.to_np(dtype) or np.int64), device))


def _legacy(dtype):
    def constructor(*args, device=None):
        if args and all(isinstance(a, int) for a in args):
            return zeros(*args, dtype=dtype, device=device)
        if len(args) == 1 and isinstance(args[0], Tensor):
            return args[0].to(dtype)
        if len(args) == 1:
            return tensor(args[0], dtype=dtype, device=device)
        return zeros(0, dtype=dtype, device=device)
    constructor.__name__ = constructor.__qualname__ = \
        {"float32": "FloatTensor", "float64": "DoubleTensor", "float16": "HalfTensor",
         "int64": "LongTensor", "int32": "IntTensor", "int16": "ShortTensor", "uint8": "ByteTensor",
         "bool": "BoolTensor"}[dtype.name]
    constructor.__doc__ = f"Legacy constructor: ``{constructor.__name__}(*sizes)`` or ``(data)``."
    return constructor


FloatTensor = _legacy(_dt.float32)
DoubleTensor = _legacy(_dt.float64)
HalfTensor = _legacy(_dt.float16)
LongTensor = _legacy(_dt.int64)
IntTensor = _legacy(_dt.int32)
ShortTensor = _legacy(_dt.int16)
ByteTensor = _legacy(_dt.uint8)
BoolTensor = _legacy(_dt.bool_)

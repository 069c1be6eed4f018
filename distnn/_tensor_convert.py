"""Making arrays and tensors of a given dtype and device: ``Tensor.to`` and its
shorthands (``float``, ``cuda``, ...), ``new_*``, and Python data -> array."""

import numpy as np

from . import backend
from . import dtypes as _dt


class ConversionMethods:
    """Mixed into ``Tensor``; ``Tensor``, ``_ops`` and ``_wrap`` are bound by tensor.py once defined."""

    def to(self, *args, dtype=None, device=None, non_blocking=False, copy=False):
        for a in args:
            if isinstance(a, Tensor):
                dtype, device = a.dtype, a.device
            elif isinstance(a, (_dt.dtype, np.dtype)) or a in (float, int, bool):
                dtype = a
            elif a is not None:
                device = a
        out = self
        if device is not None and backend.as_device(device) != self.device:
            out = _ops.to_device(out, backend.as_device(device))
        if dtype is not None and _dt.to_np(dtype) != self._data.dtype:
            out = _ops.to_dtype(out, _dt.to_np(dtype))
        if copy and out is self:
            out = _ops.clone(self)
        return out

    def cpu(self):
        return self.to("cpu")

    def cuda(self, device=None):
        return self.to(backend.Device("cuda", device if isinstance(device, int) else None)
                       if not isinstance(device, (str, backend.Device)) else device)

    def float(self):
        return self.to(_dt.float32)

    def double(self):
        return self.to(_dt.float64)

    def half(self):
        return self.to(_dt.float16)

    def long(self):
        return self.to(_dt.int64)

    def int(self):
        return self.to(_dt.int32)

    def short(self):
        return self.to(_dt.int16)

    def byte(self):
        return self.to(_dt.uint8)

    def bool(self):
        return self.to(_dt.bool_)

    def type_as(self, other):
        return self.to(other.dtype)

    def new_tensor(self, data, dtype=None, device=None, requires_grad=False):
        from .creation import tensor
        return tensor(data, dtype=dtype or self.dtype, device=device or self.device,
                      requires_grad=requires_grad)

    def new_zeros(self, *size, dtype=None, device=None):
        return self._new_filled(size, 0, dtype, device)

    def new_ones(self, *size, dtype=None, device=None):
        return self._new_filled(size, 1, dtype, device)

    def new_empty(self, *size, dtype=None, device=None):
        return self._new_filled(size, 0, dtype, device)

    def new_full(self, size, fill_value, dtype=None, device=None):
        return self._new_filled((size,), fill_value, dtype, device)

    def _new_filled(self, size, value, dtype, device):
        shape = _shape_from_args(size)
        xp = backend.xp_for(device) if device is not None else backend.array_module(self._data)
        return _wrap(xp.full(shape, value, dtype=_dt.to_np(dtype) or self._data.dtype))


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


_ops = None  # distnn.ops, bound by tensor.py after it is imported
Tensor = None  # distnn.tensor.Tensor, bound likewise
_wrap = None  # distnn.tensor._wrap, bound likewise

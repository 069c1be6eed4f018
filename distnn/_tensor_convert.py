"""Making arrays and tensors of a given dtype and device: ``Tensor.to`` and its
shorthands (``float``, ``cuda``, ...), ``new_*``, and Python data -> array."""

import numpy as np

from . import backend, ops
from . import dtypes as _dt
from .creation import tensor
from .tensor import Tensor, _shape_from_args, _wrap


class ConversionMethods:
    """Attached to ``Tensor`` by ``_tensor_methods.py``."""

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
            out = ops.to_device(out, backend.as_device(device))
        if dtype is not None and _dt.to_np(dtype) != self._data.dtype:
            out = ops.to_dtype(out, _dt.to_np(dtype))
        if copy and out is self:
            out = ops.clone(self)
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

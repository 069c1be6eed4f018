"""``HostBuffer``: a tensor or array as the flat, contiguous host array that the
collectives read and write; ``commit`` writes the result back in place."""

import numpy as np

from .. import backend
from ..tensor import Tensor
from . import wire
from .wire import WIRE_DTYPES


class HostBuffer:
    """A tensor or array as a flat, contiguous host array; ``commit`` writes results back.
    ``staged``: a GPU array is copied out asynchronously (``backend.stage_to_host``), and
    ``flat`` may be read only after ``landed()``."""

    def __init__(self, obj, name="tensor", staged=False):
        if isinstance(obj, Tensor):
            self._tensor, array = obj, obj._data
        elif isinstance(obj, np.ndarray) or backend.is_gpu_array(obj):
            self._tensor, array = None, obj  # a GPU array travels through a host copy
        else:
            raise TypeError(f"Expect: {name} to be a distnn Tensor or a NumPy or CuPy array, "
                            f"Actual: {type(obj).__name__}")
        if wire.dtype_name(array.dtype) is None:
            raise TypeError(f"Expect: {name} dtype among {sorted(WIRE_DTYPES)}, Actual: {array.dtype}")
        self._array, self._wait = array, None
        self.shape, self.dtype = tuple(array.shape), array.dtype
        self._staged = staged and backend.is_gpu_array(array) and not backend.capturing()
        if self._staged:
            self.flat, self._wait = backend.stage_to_host(array)
            return
        host = backend.to_numpy(array)
        self._direct = host is array and array.flags.c_contiguous and array.flags.writeable
        self.flat = array.reshape(-1) if self._direct else np.ascontiguousarray(host).reshape(-1).copy()

    def landed(self):
        """Wait until a staged copy is in ``flat`` (at once otherwise)."""
        if self._wait is not None:
            self._wait()
            self._wait = None

    def commit(self):
        if self._staged:
            self.landed()
            backend.unstage_from_host(self._array, self.flat)
        elif not self._direct:
            self._array[...] = backend.move_to(self.flat.reshape(self.shape), backend.device_of(self._array))
        if self._tensor is not None:
            self._tensor._vc[0] += 1  # modified in place, like any in-place op

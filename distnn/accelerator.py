"""``distnn.accelerator``: PyTorch's device-generic ``torch.accelerator`` API, served by
the one accelerator distnn has, CUDA through CuPy (``distnn.cuda`` / backend.py).

PyTorch's "accelerator" is the device type its build was compiled for; distnn's is
CUDA when CuPy is installed and sees a GPU, else there is none, so
``current_accelerator()`` is ``device(type='cuda', index=<current>)`` or None and
``check_available`` changes nothing. distnn's devices always carry an index, so
the returned device prints as ``cuda:0`` where PyTorch's prints ``cuda``.
Streams, graphs and memory statistics are not part of distnn.
"""

import warnings

from . import backend

__all__ = ["current_accelerator", "current_device_idx", "current_device_index", "device_count", "device_index",
           "is_available", "set_device_idx", "set_device_index", "synchronize"]

_NONE_AVAILABLE = "Cannot access accelerator device when none is available."


def is_available():
    """True when CuPy is installed and sees at least one GPU."""
    return backend.cuda_is_available()


def current_accelerator(check_available=False):
    """``distnn.device("cuda")`` when a GPU is available, else None."""
    return backend.Device("cuda") if backend.cuda_is_available() else None


def device_count():
    """How many GPUs CuPy sees (0 without CuPy or a GPU)."""
    return backend.cuda_device_count()


def _require_accelerator():
    if not backend.cuda_is_available():
        raise RuntimeError(_NONE_AVAILABLE)


def _device_index(device, optional):
    """The GPU index ``device`` (an int, a string, a device or None) names, as PyTorch reads it."""
    if isinstance(device, int):
        return device
    if device is not None:
        if not backend.cuda_is_available():
            raise RuntimeError("Accelerator expected")
        device = backend.as_device(device)
        if device.type != "cuda":
            raise ValueError(f"{device.type} doesn't match the current accelerator {current_accelerator()}.")
        return device.index
    if not optional:
        raise ValueError(f"Expected a torch.device with a specified index or an integer, but got:{device}")
    return current_device_index()


def current_device_index():
    """The index of the GPU a bare ``"cuda"`` means (``distnn.cuda.current_device()``)."""
    _require_accelerator()
    return backend.cuda_current_device()


def set_device_index(device, /):
    """Make GPU ``device`` (an int, ``"cuda:1"`` or a device) the current one; a negative index
    does nothing, as in PyTorch."""
    index = _device_index(device, optional=False)
    if index >= 0:
        _require_accelerator()
        backend.cuda_set_device(index)


def synchronize(device=None, /):
    """Wait until every kernel queued on ``device`` (default: the current GPU) has finished."""
    index = _device_index(device, optional=True)
    _require_accelerator()
    backend.cuda_synchronize(index)


def current_device_idx():
    """Deprecated alias of ``current_device_index``."""
    warnings.warn("Use `current_device_index` instead.", FutureWarning, stacklevel=2)
    return current_device_index()


def set_device_idx(device, /):
    """Deprecated alias of ``set_device_index``."""
    warnings.warn("Use `set_device_index` instead.", FutureWarning, stacklevel=2)
    set_device_index(device)


class device_index:
    """Context manager: GPU ``device`` (an int) is the current one inside the block, the
    previous one again after it; ``None`` changes nothing."""

    def __init__(self, device, /):
        self.idx = device
        self.prev_idx = -1

    def __enter__(self):
        if self.idx is not None:
            self.prev_idx = current_device_index()
            set_device_index(self.idx)

    def __exit__(self, *exc_info):
        if self.idx is not None:
            set_device_index(self.prev_idx)

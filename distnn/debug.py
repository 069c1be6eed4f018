"""Debug mode: whether ops check the *values* of GPU arrays (targets and indices in
range, probabilities in [0, 1]), which the host can only do by waiting for the GPU.

On the CPU an op checks its data as it runs and raises a clear error at once. On a
GPU the same check reads a value back to the host: the stream stalls, and a CUDA
graph capture fails. So ops skip such checks on GPU arrays, as PyTorch leaves them
to device-side asserts, unless debug mode is on: ``DISTNN_DEBUG=1`` in the
environment, or ``set_enabled(True)``. Checks on shapes and dtypes (host metadata)
always run.
"""

import os
from contextlib import contextmanager

from .backend import is_gpu_array

__all__ = ["enabled", "set_enabled", "debug_mode", "checks_values"]

_enabled = os.environ.get("DISTNN_DEBUG", "0") not in ("", "0")


def enabled():
    """Whether GPU arrays get the value checks that CPU arrays always get."""
    return _enabled


def set_enabled(flag):
    global _enabled
    _enabled = bool(flag)


@contextmanager
def debug_mode(flag=True):
    """Debug mode on (or off) inside the block, as it was after."""
    previous = _enabled
    set_enabled(flag)
    try:
        yield
    finally:
        set_enabled(previous)


def checks_values(array):
    """Whether an op should check ``array``'s values: always on the host, on a GPU only
    in debug mode (the check would wait for the GPU)."""
    return _enabled or not is_gpu_array(array)

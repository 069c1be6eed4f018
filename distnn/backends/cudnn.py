"""``distnn.backends.cudnn``: PyTorch's cuDNN switches. distnn never calls cuDNN (its
convolutions are im2col + GEMM through CuPy), so ``is_available()`` is False and
``version()`` None. The flags take PyTorch's defaults and read back what was set;
each setting is true of distnn as stated, none changes a kernel:

- ``enabled``: whether cuDNN may be used; distnn uses it in neither case.
- ``benchmark``: permission to time candidate algorithms and pick the fastest;
  distnn has one algorithm per op, so there is nothing to benchmark.
- ``deterministic``: whether convolutions must use deterministic algorithms;
  distnn's always are (their backward overlap-adds slices in a fixed order). As in
  PyTorch it covers nothing else: on the GPU, backward passes that scatter-add into
  repeated indices (embedding, advanced indexing, scatter_add, max-pooling) use
  CuPy's atomic adds, whose float sums may differ in the last bits between runs.
- ``allow_tf32``: permission to run float32 convolutions in TF32; distnn's run
  through CuPy's matmul, in TF32 only when the environment sets ``CUPY_TF32=1``,
  where setting this False is refused (it would be untrue).
"""

import sys
import types

from ._flags import bool_flag, refuse_tf32_off, temporarily

__all__ = ["flags", "is_acceptable", "is_available", "version"]

_state = {"enabled": True, "benchmark": False, "deterministic": False, "allow_tf32": True}


def is_available():
    """False: distnn does not use cuDNN."""
    return False


def version():
    """None, as PyTorch says when cuDNN is not there."""
    return None


def is_acceptable(tensor):
    """False: no tensor is ever handed to cuDNN."""
    return False


def set_flags(_enabled=None, _benchmark=None, _deterministic=None, _allow_tf32=None):
    """Set the given flags (None leaves one as it is); returns the previous four."""
    module = sys.modules[__name__]
    previous = (module.enabled, module.benchmark, module.deterministic, module.allow_tf32)
    for name, value in zip(("enabled", "benchmark", "deterministic", "allow_tf32"),
                           (_enabled, _benchmark, _deterministic, _allow_tf32)):
        if value is not None:
            setattr(module, name, value)
    return previous


def flags(enabled=False, benchmark=False, deterministic=False, allow_tf32=True):
    """All four flags set to these values inside the block (PyTorch's defaults here
    included), and back to what they were after it."""
    return temporarily(set_flags, enabled, benchmark, deterministic, allow_tf32)


class CudnnModule(types.ModuleType):
    """This module's type, so that its flags are properties that check what is set."""

    enabled = bool_flag(_state, "enabled", "set_enabled_cudnn")
    benchmark = bool_flag(_state, "benchmark", "set_benchmark_cudnn")
    deterministic = bool_flag(_state, "deterministic", "set_deterministic_cudnn")
    allow_tf32 = bool_flag(_state, "allow_tf32", "set_allow_tf32_cudnn", refuse_tf32_off)


sys.modules[__name__].__class__ = CudnnModule

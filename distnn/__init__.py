"""distnn: PyTorch-shaped tensors, autograd and nn on NumPy (CPU) or CuPy (GPU),
trained data-parallel across processes with a ZeroMQ all-reduce.

``import distnn as torch`` is meant to work for the common API.
"""

from . import threads  # first: it loads numpy, whose OpenBLAS reads its idle spin setting then
from . import backend as _backend
from . import dtypes as _dtypes
from .autograd.grad_mode import enable_grad, inference_mode, is_grad_enabled, no_grad, set_grad_enabled
from .backend import Device as device
from .dtypes import (bool_ as bool, double, dtype, float, float16, float32, float64, half, int,  # noqa: A004
                     int8, int16, int32, int64, long, short, uint8)
from .tensor import Size, Tensor
from .creation import *  # noqa: F401,F403
from .random import Generator, get_rng_state, initial_seed, manual_seed, seed, set_rng_state
from .ops import *  # noqa: F401,F403
from . import _tensor_methods  # noqa: F401  (attaches Tensor's methods: before anything makes a tensor)
from . import autograd, ops
from . import nn, optim, utils
from . import cuda  # noqa: F401  (torch.cuda: device queries, streams, CUDA graphs)
from . import multiprocessing  # noqa: F401  (registers how shared tensors travel between processes)
from .serialization import load, save
from .threads import get_num_threads, set_num_threads
from . import accelerator, backends, onnx, serialization  # noqa: F401  (torch.accelerator, torch.backends, ...)
from . import xpu  # noqa: F401  (torch.xpu: no XPU backend, is_available() is False)
from . import futures  # noqa: F401  (torch.futures)

__version__ = "0.1.0"

_backend.tune_host_allocator()
del _dtypes


def is_tensor(obj):
    return isinstance(obj, Tensor)


def numel(input):
    return input.numel()


def get_default_dtype():
    return float32


def __getattr__(name):
    # torch.distributed is there after a bare ``import torch``; ours loads ZeroMQ, so it loads on first use.
    if name == "distributed":
        import importlib
        return importlib.import_module(f"{__name__}.distributed")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

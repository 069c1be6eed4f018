"""CUDA kernels compiled from source through CuPy (``RawKernel``), for the GPU op
modules (conv_cuda, pool_cuda, fused_cuda): each module's source is built once per
set of type names on first use and launched as a grid-stride loop over its output.

Every kernel reads its inputs in a fixed order (no atomics), so a GPU op gives the
same bits on every run.
"""

import numpy as np

from ..backend import _import_cupy

THREADS = 256
MAX_BLOCKS = 8192  # 2M threads, several waves of a whole GPU; the loops cover the rest
# 32-bit indices are cheaper (64-bit division is emulated) and safe while every index,
# and one grid stride past the last, stays below 2**31.
INT32_LIMIT = 2 ** 31 - THREADS * MAX_BLOCKS

C_TYPES = {np.dtype(t): c for t, c in [
    (np.float32, "float"), (np.float64, "double"), (np.int8, "signed char"), (np.uint8, "unsigned char"),
    (np.int16, "short"), (np.int32, "int"), (np.int64, "long long")]}
FLOAT_TYPES = (np.dtype(np.float32), np.dtype(np.float64))

_PREAMBLE = r"""
#define GRID_STRIDE_LOOP(i, total) \
    for (I i = (I)blockIdx.x * (I)blockDim.x + (I)threadIdx.x; i < (total); \
         i += (I)blockDim.x * (I)gridDim.x)
"""


def index_type(*arrays):
    """int32 while every array's indices fit, else int64."""
    return np.int32 if max(a.size for a in arrays) < INT32_LIMIT else np.int64


class Source:
    """One CUDA source whose kernels are built per (kernel name, type names) on first use;
    ``types`` pairs each typedef the source reads (``T``, ``I``...) with a numpy dtype;
    ``options`` go to NVRTC."""

    def __init__(self, text, options=()):
        self.text, self.options = text, tuple(options)
        self.kernels = {}

    def kernel(self, name, types):
        key = (name, types)
        built = self.kernels.get(key)
        if built is None:
            head = "".join(f"typedef {C_TYPES[np.dtype(dtype)]} {alias};\n" for alias, dtype in types)
            built = self.kernels[key] = _import_cupy().RawKernel(head + _PREAMBLE + self.text, name,
                                                                 options=self.options)
        return built

    def launch(self, name, types, total, args):
        """Run kernel ``name`` over ``total`` elements on the current stream."""
        if total:
            self.kernel(name, types)((min(-(-total // THREADS), MAX_BLOCKS),), (THREADS,), args)

    def launch_blocks(self, name, types, blocks, args):
        """Run kernel ``name`` as ``blocks`` blocks of THREADS threads (one block per row)."""
        if blocks:
            self.kernel(name, types)((min(blocks, MAX_BLOCKS * 8),), (THREADS,), args)

"""CUDA kernels compiled from source through CuPy (``RawKernel``), for the GPU op
modules (conv_cuda, pool_cuda, fused_cuda, norm_cuda, rnn_cuda) and the optimizers'
steps: each module's source is built once per set of type names on first use and
launched as a grid-stride loop over its output, or as a block per row.

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

# What the float kernels share (fused_cuda, norm_cuda, rnn_cuda, the optimizers): math by
# T's precision, and a block's reductions in a fixed tree (a block per row).
FLOAT_PREAMBLE = r"""
__device__ __forceinline__ float exp_(float v) { return expf(v); }
__device__ __forceinline__ double exp_(double v) { return exp(v); }
__device__ __forceinline__ float log_(float v) { return logf(v); }
__device__ __forceinline__ double log_(double v) { return log(v); }

// NaN wins, as numpy's max: a NaN anywhere in a row makes its max NaN.
__device__ __forceinline__ T nan_max(T a, T b) { return (b > a || b != b) ? b : a; }

// Reductions of one value per thread of the block, in a fixed tree; every thread gets the result.
__device__ __forceinline__ T block_sum(T v, T* buf) {
    buf[threadIdx.x] = v;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) buf[threadIdx.x] += buf[threadIdx.x + s];
        __syncthreads();
    }
    T r = buf[0];
    __syncthreads();
    return r;
}

__device__ __forceinline__ T block_max(T v, T* buf) {
    buf[threadIdx.x] = v;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) buf[threadIdx.x] = nan_max(buf[threadIdx.x], buf[threadIdx.x + s]);
        __syncthreads();
    }
    T r = buf[0];
    __syncthreads();
    return r;
}

#define ROWS_LOOP(r, rows) for (I r = blockIdx.x; r < (rows); r += gridDim.x)
#define COLS_LOOP(c, cols) for (I c = threadIdx.x; c < (cols); c += blockDim.x)

__device__ __forceinline__ T abs_(T v) { return v < (T)0 ? -v : v; }
__device__ __forceinline__ float tanh_(float v) { return tanhf(v); }
__device__ __forceinline__ double tanh_(double v) { return tanh(v); }

// recurrent.py's sigmoid: exp(min(x, 0)) / (exp(-|x|) + 1), without overflow (NaN stays NaN).
__device__ __forceinline__ T sigmoid_(T x) { return exp_(x > (T)0 ? (T)0 : x) / (exp_(-abs_(x)) + (T)1); }

__device__ __forceinline__ float sqrt_(float v) { return sqrtf(v); }
__device__ __forceinline__ double sqrt_(double v) { return sqrt(v); }
"""


def takes(xp, *arrays):
    """Whether the float kernels serve these arrays: CuPy, float32 or float64, one dtype."""
    first = arrays[0]
    return xp.__name__ != "numpy" and first.dtype in FLOAT_TYPES and all(a.dtype == first.dtype for a in arrays)


def types(dtype, index):
    """The type names of a float kernel: ``T`` the values', ``I`` the indices'."""
    return ("T", dtype), ("I", index)


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

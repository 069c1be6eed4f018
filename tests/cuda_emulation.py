"""distnn's CUDA kernel sources run on the CPU, for tests on machines without a GPU:
each source is compiled by g++ with one thread standing for the whole grid (block and
grid of one thread, so every grid-stride and per-row loop walks all of its range and
a block reduction is that thread's own sum). It checks a kernel's index arithmetic,
bounds and formulas against the CPU path; races and the reduction trees of real
blocks are for the GPU tests.

``emulated(monkeypatch)`` patches ``cuda_source.Source`` to launch this way and returns
an ``xp`` that the GPU modules take for CuPy but that makes numpy arrays."""

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile

import numpy as np

from distnn.ops import cuda_source

HAVE_COMPILER = shutil.which("g++") is not None

_SHIM = """#include <cstddef>
#include <cmath>
struct Dim3 { unsigned x; };
static const Dim3 blockIdx = {0}, threadIdx = {0}, blockDim = {1}, gridDim = {1};
#define __global__
#define __device__ inline
#define __forceinline__
#define __shared__ static
#define __syncthreads()
"""

_built = {}  # source text hash -> loaded library


def _library(text):
    key = hashlib.sha256(text.encode()).hexdigest()
    if key not in _built:
        with tempfile.TemporaryDirectory(prefix="distnn-emulated-") as folder:
            source, library = os.path.join(folder, "k.cpp"), os.path.join(folder, "k.so")
            with open(source, "w") as f:
                f.write(text)
            subprocess.run(["g++", "-O1", "-shared", "-fPIC", "-o", library, source], check=True,
                           capture_output=True)
            _built[key] = ctypes.CDLL(library)  # stays loaded after its file is gone
    return _built[key]


def _argument(value):
    if isinstance(value, np.ndarray):
        assert value.flags.c_contiguous, "kernels read C-contiguous arrays"
        return ctypes.c_void_p(value.ctypes.data)
    value = np.asarray(value)
    return np.ctypeslib.as_ctypes_type(value.dtype)(value.item())


def _run(source, name, types, args):
    head = "".join(f"typedef {cuda_source.C_TYPES[np.dtype(dtype)]} {alias};\n" for alias, dtype in types)
    kernel = getattr(_library(_SHIM + head + cuda_source._PREAMBLE + source.text), name)
    kernel(*[_argument(a) for a in args])


class _NumpyAsGpu:
    """numpy under CuPy's module name, so the GPU modules take its arrays."""
    __name__ = "cupy"

    def __getattr__(self, name):
        return getattr(np, name)


def emulated(monkeypatch):
    monkeypatch.setattr(cuda_source.Source, "launch",
                        lambda self, name, types, total, args: total and _run(self, name, types, args))
    monkeypatch.setattr(cuda_source.Source, "launch_blocks",
                        lambda self, name, types, blocks, args: blocks and _run(self, name, types, args))
    return _NumpyAsGpu()

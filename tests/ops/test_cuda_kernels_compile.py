"""Every CUDA source of distnn compiles with NVRTC, the compiler CuPy's RawKernel uses,
for Hopper (compute_90), in every type combination the GPU modules launch. CI has no
GPU, so this is where a kernel that does not compile is caught before a GPU run: one
compiled with g++ for test_cuda_kernels_emulated.py can still fail here (NVRTC has no
C++ library, and overloads resolve differently). The test extra installs NVRTC
(nvidia-cuda-nvrtc); without it the test skips."""

import ctypes
import glob
import itertools
import os

import numpy as np
import pytest

from distnn.ops import (conv_cuda, cuda_source, embedding_cuda, fused_cuda, norm_cuda, pool_cuda, random_cuda,
                        rnn_cuda)
from distnn.optim import fused_cuda as optim_cuda


def _nvrtc():
    try:
        import nvidia
    except ImportError:
        return None
    for folder in nvidia.__path__:
        for path in sorted(glob.glob(os.path.join(folder, "*", "lib", "libnvrtc.so.*"))):
            return ctypes.CDLL(path)
    return None


NVRTC = _nvrtc()
pytestmark = pytest.mark.skipif(NVRTC is None, reason="needs NVRTC (pip install nvidia-cuda-nvrtc)")

FLOATS = [np.float32, np.float64]
INDICES = [np.int32, np.int64]
FLOAT_MODULES = (conv_cuda, embedding_cuda, fused_cuda, norm_cuda, random_cuda, rnn_cuda, optim_cuda)
SOURCES = ([(module, (("T", t), ("I", i))) for module in FLOAT_MODULES
            for t, i in itertools.product(FLOATS, INDICES)]
           + [(pool_cuda, (("T", t), ("P", p), ("I", i)))
              for t, p, i in itertools.product(list(cuda_source.C_TYPES), [np.int8, np.int32], INDICES)])


def _compile(text, options):
    program = ctypes.c_void_p()
    assert NVRTC.nvrtcCreateProgram(ctypes.byref(program), text.encode(), b"distnn.cu", 0, None, None) == 0
    try:
        encoded = [o.encode() for o in options]
        status = NVRTC.nvrtcCompileProgram(program, len(encoded), (ctypes.c_char_p * len(encoded))(*encoded))
        size = ctypes.c_size_t()
        NVRTC.nvrtcGetProgramLogSize(program, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        NVRTC.nvrtcGetProgramLog(program, log)
        return status, log.value.decode(errors="replace")
    finally:
        NVRTC.nvrtcDestroyProgram(ctypes.byref(program))


@pytest.mark.parametrize("module,types", SOURCES,
                         ids=[f"{m.__name__.split('.', 1)[1]}-" + "-".join(np.dtype(d).name for _, d in t)
                              for m, t in SOURCES])
def test_source_compiles_with_nvrtc(module, types):
    head = "".join(f"typedef {cuda_source.C_TYPES[np.dtype(dtype)]} {alias};\n" for alias, dtype in types)
    status, log = _compile(head + cuda_source._PREAMBLE + module._SOURCE.text,
                           ["--gpu-architecture=compute_90"] + list(module._SOURCE.options))
    assert status == 0, log


def test_a_broken_source_is_caught():
    status, log = _compile("typedef float T;\nextern \"C\" __global__ void f(T* x) { x[0] = tanh_(x[1]); }",
                           ["--gpu-architecture=compute_90"])
    assert status != 0 and "tanh_" in log

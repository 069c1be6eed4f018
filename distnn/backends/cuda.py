"""``distnn.backends.cuda``: PyTorch's CUDA switches. ``is_built()`` says whether CuPy,
distnn's CUDA, is installed (without importing it). ``matmul.allow_tf32`` is cuBLAS's
permission to run float32 matmuls in TF32. distnn's GPU matmuls run in CuPy's default
precision: float32 math, or TF32 when the environment sets ``CUPY_TF32=1``. The flag
starts False, as in PyTorch (True under ``CUPY_TF32=1``), reads back what was set and
changes no kernel: True is a permission, true whether or not CuPy uses TF32; False is
refused under ``CUPY_TF32=1``, where it would be untrue.
"""

import importlib.util

from ._flags import bool_flag, cupy_uses_tf32, refuse_tf32_off

__all__ = ["is_built", "matmul", "cuBLASModule"]


def is_built():
    """True when CuPy is installed (whether a GPU is present is ``distnn.cuda.is_available()``)."""
    return importlib.util.find_spec("cupy") is not None


_matmul_state = {"allow_tf32": cupy_uses_tf32()}


class cuBLASModule:
    """``torch.backends.cuda.matmul``: an unknown attribute is an error, as in PyTorch."""

    allow_tf32 = bool_flag(_matmul_state, "allow_tf32", "set_allow_tf32_cublas", refuse_tf32_off)

    def __getattr__(self, name):
        raise AttributeError("Unknown attribute " + name)

    def __setattr__(self, name, value):
        if not isinstance(getattr(type(self), name, None), property):
            raise AttributeError("Unknown attribute " + name)
        object.__setattr__(self, name, value)


matmul = cuBLASModule()

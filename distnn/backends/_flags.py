"""A boolean switch of a ``torch.backends`` module: a property that stores what is set
and reads it back, refusing non-bools with PyTorch's message."""

import os
from contextlib import contextmanager


def bool_flag(state, name, setter_name, check=None):
    """A property over ``state[name]``; ``setter_name`` is the C++ setter PyTorch's error
    names; ``check(value)``, if given, raises for a value distnn cannot honour."""

    def get(self):
        return state[name]

    def set_(self, value):
        if type(value) is not bool:
            raise RuntimeError(f"{setter_name} expects a bool, but got {type(value).__name__}")
        if check is not None:
            check(value)
        state[name] = value

    return property(get, set_)


def cupy_uses_tf32():
    """Whether CuPy runs float32 matmuls in TF32: only when ``CUPY_TF32`` is set above 0."""
    try:
        return int(os.environ.get("CUPY_TF32", "0")) > 0
    except ValueError:
        return False


def refuse_tf32_off(value):
    if not value and cupy_uses_tf32():
        raise RuntimeError("TF32 cannot be turned off in this process: CUPY_TF32 is set in the environment, "
                           "so CuPy runs float32 matmuls in TF32; unset CUPY_TF32 before starting Python")


@contextmanager
def temporarily(set_flags, *values):
    """``set_flags(*values)`` inside the block, and the previous values back after it."""
    previous = set_flags(*values)
    try:
        yield
    finally:
        set_flags(*previous)

"""``distnn.backends.mps``: Apple's Metal (MPS) device. distnn has none: its devices
are the CPU (NumPy) and CUDA GPUs (CuPy), so both queries are False."""

__all__ = ["is_available", "is_built"]


def is_available():
    """False: distnn has no MPS device."""
    return False


def is_built():
    """False: distnn has no MPS support to build."""
    return False

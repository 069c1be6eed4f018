"""``distnn.xpu``: PyTorch's ``torch.xpu`` (Intel GPUs), as far as programs query it.
distnn has no XPU backend: its devices are the CPU (NumPy) and CUDA GPUs (CuPy), so
there is never an XPU to find."""

__all__ = ["is_available", "device_count"]


def is_available():
    """False: distnn has no XPU backend."""
    return False


def device_count():
    """0: distnn has no XPU backend."""
    return 0

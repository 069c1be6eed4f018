"""``distnn.backends.mkldnn``: PyTorch's oneDNN (formerly MKL-DNN) switch.
distnn runs float32 CPU convolutions, LSTM layers and training batch norm through
oneDNN when its shared library is installed (``ops/onednn.py``, ``onednn_rnn.py``,
``onednn_norm.py``), as PyTorch does its convolutions and LSTMs:

- ``is_available()``: whether the library loaded;
- ``enabled``: whether those ops may use it (True by default); False sends them
  to distnn's own numpy paths (im2col + GEMM, ...), as ``torch.backends.mkldnn.enabled
  = False`` sends PyTorch's to its slower native ones.
"""

import sys
import types

from ._flags import bool_flag, temporarily

__all__ = ["flags", "is_available", "set_flags"]

_state = {"enabled": True}


def is_available():
    """Whether oneDNN's library is loaded (or loads now)."""
    from ..ops import onednn
    return onednn.library() is not None


def set_flags(_enabled=None):
    """Set ``enabled`` (None leaves it); returns the previous value, in a 1-tuple as PyTorch's."""
    module = sys.modules[__name__]
    previous = (module.enabled,)
    if _enabled is not None:
        module.enabled = _enabled
    return previous


def flags(enabled=False):
    """``enabled`` set inside the block, and back to what it was after it."""
    return temporarily(set_flags, enabled)


class MkldnnModule(types.ModuleType):
    """This module's type, so that ``enabled`` is a property that checks what is set."""

    enabled = bool_flag(_state, "enabled", "set_enabled_mkldnn")


sys.modules[__name__].__class__ = MkldnnModule

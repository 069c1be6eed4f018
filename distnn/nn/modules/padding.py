"""Padding layers over ``F.pad``: ``ConstantPad``, ``ZeroPad``, ``ReflectionPad``,
``ReplicationPad`` and ``CircularPad``, each 1d/2d/3d, with PyTorch's ``padding``
tuples ``(left, right[, top, bottom[, front, back]])``, input checks and reprs."""

from .. import functional as F
from .conv import _ntuple
from .module import Module

__all__ = ["ConstantPad1d", "ConstantPad2d", "ConstantPad3d", "ZeroPad1d", "ZeroPad2d", "ZeroPad3d",
           "ReflectionPad1d", "ReflectionPad2d", "ReflectionPad3d", "ReplicationPad1d", "ReplicationPad2d",
           "ReplicationPad3d", "CircularPad1d", "CircularPad2d", "CircularPad3d"]


class _ConstantPadNd(Module):
    def __init__(self, value):
        super().__init__()
        self.value = value

    def forward(self, input):
        return F.pad(input, self.padding, "constant", self.value)

    def extra_repr(self):
        return f"padding={self.padding}, value={self.value}"


class ConstantPad1d(_ConstantPadNd):
    """Pads the last dim with ``value``; a negative amount crops."""

    def __init__(self, padding, value):
        super().__init__(value)
        self.padding = _ntuple(2)(padding)


class ConstantPad2d(_ConstantPadNd):
    """Pads the last two dims with ``value``; a negative amount crops."""

    def __init__(self, padding, value):
        super().__init__(value)
        self.padding = _ntuple(4)(padding)


class ConstantPad3d(_ConstantPadNd):
    """Pads the last three dims with ``value``; a negative amount crops."""

    def __init__(self, padding, value):
        super().__init__(value)
        self.padding = _ntuple(6)(padding)


class ZeroPad1d(ConstantPad1d):
    """Pads the last dim with zeros."""

    def __init__(self, padding):
        super().__init__(padding, 0.0)

    def extra_repr(self):
        return f"{self.padding}"


class ZeroPad2d(ConstantPad2d):
    """Pads the last two dims with zeros."""

    def __init__(self, padding):
        super().__init__(padding, 0.0)

    def extra_repr(self):
        return f"{self.padding}"


class ZeroPad3d(ConstantPad3d):
    """Pads the last three dims with zeros."""

    def __init__(self, padding):
        super().__init__(padding, 0.0)

    def extra_repr(self):
        return f"{self.padding}"


class _IndexPadNd(Module):
    """Reflect / replicate / circular padding of the last ``_dims`` dims (1, 2 or 3), for
    an input of ``_dims + 1`` (unbatched) or ``_dims + 2`` dims."""

    mode = None
    _dims = None

    def __init__(self, padding):
        super().__init__()
        self.padding = _ntuple(2 * self._dims)(padding)

    def forward(self, input):
        self._check_input_dim(input)
        return F.pad(input, self.padding, self.mode)

    def _check_input_dim(self, input):
        # PyTorch's F.pad raises this for non-constant modes (after its checks of the padding's
        # length, which ours makes too); distnn's F.pad pads any number of leading dims.
        n, odd = divmod(len(self.padding), 2)
        if not odd and n <= input.dim() and input.dim() not in (n + 1, n + 2):
            raise NotImplementedError(
                f"Padding size {len(self.padding)} is not supported for {input.dim()}D input tensor.\n"
                "Supported combinations for non-constant padding:\n"
                "  - 2D or 3D input: padding size = 2 (pads last dimension)\n"
                "  - 3D or 4D input: padding size = 4 (pads last 2 dimensions)\n"
                "  - 4D or 5D input: padding size = 6 (pads last 3 dimensions)")

    def extra_repr(self):
        return f"{self.padding}"


class ReflectionPad1d(_IndexPadNd):
    """Pads the last dim with its reflection (the edge not repeated)."""

    mode = "reflect"
    _dims = 1


class ReflectionPad2d(_IndexPadNd):
    """Pads the last two dims with their reflection (the edge not repeated)."""

    mode = "reflect"
    _dims = 2


class ReflectionPad3d(_IndexPadNd):
    """Pads the last three dims with their reflection (the edge not repeated)."""

    mode = "reflect"
    _dims = 3


class ReplicationPad1d(_IndexPadNd):
    """Pads the last dim by repeating its edge values."""

    mode = "replicate"
    _dims = 1


class ReplicationPad2d(_IndexPadNd):
    """Pads the last two dims by repeating their edge values."""

    mode = "replicate"
    _dims = 2


class ReplicationPad3d(_IndexPadNd):
    """Pads the last three dims by repeating their edge values."""

    mode = "replicate"
    _dims = 3


class _CircularPadNd(_IndexPadNd):
    """Circular padding checks the input's dims in the layer, with ValueError, as PyTorch."""

    mode = "circular"

    def _check_input_dim(self, input):
        if input.dim() not in (self._dims + 1, self._dims + 2):
            raise ValueError(f"expected {self._dims + 1}D or {self._dims + 2}D input (got {input.dim()}D input)")


class CircularPad1d(_CircularPadNd):
    """Pads the last dim by wrapping around."""

    _dims = 1


class CircularPad2d(_CircularPadNd):
    """Pads the last two dims by wrapping around."""

    _dims = 2


class CircularPad3d(_CircularPadNd):
    """Pads the last three dims by wrapping around."""

    _dims = 3

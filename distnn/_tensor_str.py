"""``repr(tensor)`` in PyTorch's format: ``tensor([1., 2.], grad_fn=<AddBackward0>)``."""

import numpy as np

from . import backend

_DEFAULT_DTYPES = ("float32", "int64", "bool")
_PRECISION = 4
_THRESHOLD = 1000
_EDGEITEMS = 3
_LINEWIDTH = 80


def _float_formatter(values):
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return lambda v: f"{v}"
    if np.all(finite == np.round(finite)):
        if finite.size and np.abs(finite).max() >= 1e8:
            return lambda v: f"{v:.{_PRECISION}e}"
        return lambda v: f"{v:.0f}." if np.isfinite(v) else f"{v}"
    nonzero = np.abs(finite[finite != 0])
    if nonzero.size and (nonzero.max() / nonzero.min() > 1000.0 or nonzero.max() > 1e8
                         or nonzero.min() < 1e-4):
        return lambda v: f"{v:.{_PRECISION}e}"
    return lambda v: f"{v:.{_PRECISION}f}"


def _edge_values(arr):
    """The values repr will show (all, or the summarised corners of a big tensor)."""
    if arr.size <= _THRESHOLD:
        return arr.ravel()
    index = tuple(np.r_[0:min(_EDGEITEMS, n), max(n - _EDGEITEMS, 0):n] if n > 2 * _EDGEITEMS
                  else slice(None) for n in arr.shape)
    return arr[np.ix_(*[np.arange(n)[i] for n, i in zip(arr.shape, index)])].ravel()


def format_array(arr, prefix="tensor("):
    if arr.dtype.kind == "f":
        shown = _edge_values(arr).astype(np.float64)
        fmt = _float_formatter(shown)
        width = max((len(fmt(v)) for v in shown), default=0)
        kinds = {"float_kind": lambda v: fmt(v).rjust(width)}
    elif arr.dtype.kind == "b":
        kinds = {"bool": lambda v: ("True" if v else "False").rjust(5 if arr.size > 1 and not arr.all()
                                                                  and arr.any() else 0)}
    else:
        shown = _edge_values(arr)
        width = max((len(str(v)) for v in shown), default=0)
        kinds = {"int_kind": lambda v: str(v).rjust(width)}
    if arr.ndim == 0:
        return next(iter(kinds.values()))(arr.item()).strip()
    return np.array2string(arr, separator=", ", prefix=prefix, formatter=kinds,
                           threshold=_THRESHOLD, edgeitems=_EDGEITEMS, max_line_width=_LINEWIDTH)


def tensor_repr(t):
    arr = backend.to_numpy(t._data)
    suffixes = []
    if arr.size == 0:
        body = "[]"
        if arr.shape != (0,):
            suffixes.append(f"size={tuple(arr.shape)}")
    else:
        body = format_array(arr)
    if t.device.type != "cpu":
        suffixes.append(f"device='{t.device}'")
    # An empty tensor shows every non-float32 dtype: with no values, nothing else tells.
    if arr.dtype.name not in _DEFAULT_DTYPES or (arr.size == 0 and arr.dtype.name != "float32"):
        suffixes.append(f"dtype=torch.{arr.dtype.name}")
    if t.grad_fn is not None:
        suffixes.append(f"grad_fn=<{t.grad_fn.name()}>")
    elif t.requires_grad:
        suffixes.append("requires_grad=True")
    text = body + "".join(", " + s for s in suffixes)
    return f"tensor({text})"

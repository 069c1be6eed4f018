"""Pooling: max and average pooling over sliding windows (1-D and 2-D) and adaptive
average/max pooling.

A window position is a strided slice of the (padded) input, so a pass is one
vectorised array op per kernel offset. Selections are arithmetic on masks, not
``where``/masked copies: numpy's masked ops branch per element and ran ~10x
slower on the random masks max pooling produces. The backward selects each
offset's gradients by bits (``selection.masked``), so an inf or NaN output
gradient reaches only the input its window picked, as in PyTorch. Max pooling routes the
gradient to the first maximum of each window (the last NaN, if any), as
PyTorch's kernels do. Windows that tile the input (the MNIST ConvNet's 2x2) are
first copied apart into one contiguous plane per kernel offset: numpy's
elementwise ops ran ~4x slower on the strided views.
"""

from collections import namedtuple

from ..autograd.function import Op
from ..autograd.graph_xp import recording
from ..threads import get_num_threads, map_chunks
from . import pool_cuda
from .linear_map import linear_map
from .selection import masked
from .common import no_grad_result
from .shape import squeeze, unsqueeze

__all__ = ["max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d", "adaptive_avg_pool1d",
           "adaptive_avg_pool2d", "adaptive_max_pool1d", "adaptive_max_pool2d"]

TENSOR_METHODS = ()

PoolGeometry = namedtuple("PoolGeometry", "kernel stride padding dilation out_hw canvas_hw")


# --- window helpers -----------------------------------------------------------------

def _is_tiling(geo, in_hw):
    """Windows that tile the input exactly (kernel == stride, no padding): the MNIST case."""
    return (geo.kernel == geo.stride and geo.padding == (0, 0) and geo.dilation == (1, 1)
            and all(o * k == i for o, k, i in zip(geo.out_hw, geo.kernel, in_hw)))


def _canvas(xp, x, geo, fill):
    """``x`` placed in an array big enough for every window (padding set to ``fill``)."""
    if geo.canvas_hw is None:
        return x
    n, c, h, w = x.shape
    pt, pl = geo.padding
    canvas = xp.full((n, c) + geo.canvas_hw, fill, dtype=x.dtype)
    canvas[:, :, pt:pt + h, pl:pl + w] = x
    return canvas


def _window_slices(geo):
    """(offset number, (row slice, column slice)) of each kernel offset, row-major."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = geo.kernel, geo.stride, geo.dilation, geo.out_hw
    for i in range(kh):
        for j in range(kw):
            rows = slice(i * dh, i * dh + sh * (oh - 1) + 1, sh)
            cols = slice(j * dw, j * dw + sw * (ow - 1) + 1, sw)
            yield i * kw + j, (Ellipsis, rows, cols)


def _index_dtype(xp, count):
    return xp.int8 if count <= 127 else xp.int32


def _running_max(xp, views, count):
    """Elementwise max over ``views`` and the number of the view holding it.

    Ties keep the earlier view and NaN wins over numbers (a later NaN over an
    earlier one), matching PyTorch's ``val > max || isnan(val)`` scan. The max
    of a window holding a NaN is NaN, so the NaN rule's extra passes run only
    when the result shows one; on a GPU always, since asking would wait for it.
    """
    views = list(views)
    if xp.__name__ != "numpy" and views[0].dtype.kind == "f":
        return _scan(xp, views, count, check_nan=True)
    best, where = _scan(xp, views, count, check_nan=False)
    if best.dtype.kind == "f" and xp.isnan(best).any():
        best, where = _scan(xp, views, count, check_nan=True)
    return best, where


def _scan(xp, views, count, check_nan):
    best, where = views[0], None
    for number, v in enumerate(views[1:], 1):
        take = v > best
        if check_nan:
            take |= xp.isnan(v)
        best = xp.maximum(best, v, out=xp.empty(v.shape, v.dtype) if number == 1 else best)
        chosen = xp.multiply(take, number, dtype=_index_dtype(xp, count))
        # numbers only grow, so "take ? number : where" is a max
        where = chosen if where is None else xp.maximum(where, chosen, out=where)
    if where is None:
        return best.copy(), xp.zeros(best.shape, _index_dtype(xp, count))
    return best, where


def _tile_planes(xp, x, kernel, out_w):
    """(N, C, H, W) cut by tiling windows -> a (KH, KW, N*C*OH, OW) contiguous copy whose
    plane (i, j) holds the element at offset (i, j) of every window."""
    kh, kw = kernel
    return xp.ascontiguousarray(x.reshape(-1, kh, out_w, kw).transpose(1, 3, 0, 2))


def _flat_indices(xp, i, j, geo, in_w):
    """PyTorch's returned indices (row * W + col in the unpadded input) from window offsets."""
    (sh, sw), (pt, pl), (dh, dw), (oh, ow) = geo.stride, geo.padding, geo.dilation, geo.out_hw
    rows = (xp.arange(oh) * sh - pt)[:, None] + i.astype(xp.int64) * dh
    cols = xp.arange(ow) * sw - pl + j.astype(xp.int64) * dw
    return rows * in_w + cols


# --- max pooling --------------------------------------------------------------------

class MaxPool2DWithIndices(Op):
    """Max over sliding windows of (N, C, H, W) or (C, H, W) input."""

    @staticmethod
    def forward(ctx, x, geometry, return_indices=False):
        xp = ctx.xp
        ctx.geometry, ctx.unbatched = geometry, x.ndim == 3
        if ctx.unbatched:
            x = x[None]
        ctx.in_shape = x.shape
        n, c, h, w = x.shape
        (kh, kw), (oh, ow) = geometry.kernel, geometry.out_hw
        ctx.tiling = _is_tiling(geometry, (h, w))
        if pool_cuda.takes(xp, x):
            y, pick = pool_cuda.max_pool(xp, x, geometry, _index_dtype(xp, kh * kw))
        elif ctx.tiling:
            planes = _tile_planes(xp, x, (kh, kw), ow)
            y, pick = _running_max(xp, (planes[i, j] for i in range(kh) for j in range(kw)), kh * kw)
            y, pick = y.reshape(n, c, oh, ow), pick.reshape(n, c, oh, ow)
        else:
            y, pick = _by_sample_chunks(xp, lambda part: _window_max(xp, part, geometry), x,
                                        ((c, oh, ow), (c, oh, ow)), (x.dtype, _index_dtype(xp, kh * kw)))
        ctx.save_for_backward(pick)
        if not return_indices:
            return y[0] if ctx.unbatched else y
        pick = pick.astype(xp.int64)
        idx = _flat_indices(xp, pick // kw, pick % kw, geometry, w)
        return (y[0], idx[0]) if ctx.unbatched else (y, idx)

    double_backward = True

    @staticmethod
    def backward(ctx, g, _g_indices=None):
        if ctx.unbatched:
            g = g[None]
        (pick,) = ctx.saved_tensors
        gx = linear_map(ctx.xp, g, _to_maxima, _from_maxima, (pick, ctx.geometry, ctx.in_shape, ctx.tiling))
        return gx[0] if ctx.unbatched else gx


def _to_maxima(xp, g, pick, geo, in_shape, tiling):
    """Max pooling's backward: each output's gradient to the input element it picked."""
    if pool_cuda.takes(xp, g):
        return pool_cuda.to_maxima(xp, g, pick, geo, in_shape)
    n, c, h, w = in_shape
    (kh, kw), ow = geo.kernel, geo.out_hw[1]
    if tiling:
        # every input element belongs to exactly one window: each offset is written once
        gx = xp.empty((n, c, h, w), g.dtype)
        windows = gx.reshape(-1, kh, ow, kw)
        g_rows, pick_rows = g.reshape(-1, ow), pick.reshape(-1, ow)
        for i in range(kh):
            for j in range(kw):
                masked(g_rows, pick_rows == i * kw + j, out=windows[:, i, :, j])
        return gx
    canvas = xp.zeros((n, c) + (geo.canvas_hw or (h, w)), g.dtype)
    threads = get_num_threads()
    if xp.__name__ == "numpy" and threads > 1 and canvas.nbytes >= 2 * _CHUNK_BYTES and n > 1:
        # a part of the samples per intra-op thread: ResNet-18's stem pool (16, 64, 32, 32)
        # 2.8 -> 1.65 ms at 2 threads (1 MiB chunks cost more numpy calls than their cache
        # saved, 3.2 ms at 1 thread against 2.8 whole)
        per = -(-n // threads)
        map_chunks(xp, lambda part: _scatter_to_maxima(xp, canvas[part], g[part], pick[part], geo),
                   [slice(i, i + per) for i in range(0, n, per)])
    else:
        _scatter_to_maxima(xp, canvas, g, pick, geo)
    pt, pl = geo.padding
    return canvas[:, :, pt:pt + h, pl:pl + w]


def _window_max(xp, x, geo):
    lowest = -float("inf") if x.dtype.kind == "f" else xp.iinfo(x.dtype).min
    canvas = _canvas(xp, x, geo, lowest)
    return _running_max(xp, (canvas[s] for _, s in _window_slices(geo)), geo.kernel[0] * geo.kernel[1])


def _scatter_to_maxima(xp, canvas, g, pick, geo):
    """Add each output's gradient into the (zeroed, padded) ``canvas`` at the input it
    picked, an offset at a time."""
    for number, s in _window_slices(geo):
        canvas[s] += masked(g, pick == number)


# a chunk of samples per task: its canvas and its passes stay in a core's cache
_CHUNK_BYTES = 1 << 20


def _by_sample_chunks(xp, fn, x, shapes, dtypes, *per_sample):
    """``fn(x, *per_sample)``, which returns arrays of ``shapes`` per sample,
    by chunks of samples spread over the intra-op threads (``map_chunks``) for a
    C-contiguous numpy ``x``, each chunk written into the results; whole otherwise.
    Each sample's result is the same either way."""
    n = x.shape[0]
    if (xp.__name__ != "numpy" or type(x) is not xp.ndarray or not x.flags.c_contiguous
            or x.nbytes < 2 * _CHUNK_BYTES or n < 2):
        return fn(x, *per_sample)
    outs = [xp.empty((n,) + shape, dtype) for shape, dtype in zip(shapes, dtypes)]
    per = max(1, _CHUNK_BYTES // max(1, x[0].nbytes))

    def chunk(part):
        for out, result in zip(outs, fn(x[part], *(a[part] for a in per_sample))):
            out[part] = result

    map_chunks(xp, chunk, [slice(i, i + per) for i in range(0, n, per)])
    return outs


def _from_maxima(xp, x, pick, geo, in_shape, tiling):
    """The adjoint of ``_to_maxima``: each output takes the input element its window picked."""
    if pool_cuda.takes(xp, x):
        return pool_cuda.from_maxima(xp, x, pick, geo)
    canvas = _canvas(xp, x, geo, 0)
    out = None
    for number, s in _window_slices(geo):
        part = masked(canvas[s], pick == number)
        out = part if out is None else out + part
    return out


# --- average pooling ----------------------------------------------------------------

class AvgPool2D(Op):
    """Mean over sliding windows of (N, C, H, W) or (C, H, W) input."""

    @staticmethod
    def forward(ctx, x, geometry, divisor):
        xp = ctx.xp
        ctx.geometry, ctx.unbatched = geometry, x.ndim == 3
        if ctx.unbatched:
            x = x[None]
        ctx.in_shape = x.shape
        ctx.divisor = divisor if isinstance(divisor, (int, float)) else xp.asarray(divisor, dtype=x.dtype)
        total = _window_means(xp, x, geometry, x.shape, ctx.divisor)
        return total[0] if ctx.unbatched else total

    double_backward = True

    @staticmethod
    def backward(ctx, g):
        if ctx.unbatched:
            g = g[None]
        gx = linear_map(ctx.xp, g, _spread_over_windows, _window_means, (ctx.geometry, ctx.in_shape, ctx.divisor))
        return gx[0] if ctx.unbatched else gx


def _window_means(xp, x, geo, in_shape, divisor):
    canvas = _canvas(xp, x, geo, 0)
    total = None
    for _, s in _window_slices(geo):
        total = canvas[s].copy() if total is None else xp.add(total, canvas[s], out=total)
    total /= divisor
    return total


def _spread_over_windows(xp, g, geo, in_shape, divisor):
    """Average pooling's backward: each output's gradient shared by its window."""
    n, c, h, w = in_shape
    share = g / divisor
    canvas = xp.zeros((n, c) + (geo.canvas_hw or (h, w)), g.dtype)
    for _, s in _window_slices(geo):
        canvas[s] += share
    pt, pl = geo.padding
    return canvas[:, :, pt:pt + h, pl:pl + w]


def _avg_divisor(geo, in_hw, count_include_pad, divisor_override):
    """PyTorch's divide factor: a number, or an (OH, OW) nested list when it varies."""
    if divisor_override is not None:
        return divisor_override
    per_dim = []
    for size, k, s, p, o in zip(in_hw, geo.kernel, geo.stride, geo.padding, geo.out_hw):
        counts = []
        for i in range(o):
            start = i * s - p
            end = min(start + k, size + p)  # a window may hang over the padding in ceil_mode
            counts.append(end - start if count_include_pad else min(end, size) - max(start, 0))
        per_dim.append(counts)
    rows, cols = per_dim
    if len(set(rows)) <= 1 and len(set(cols)) <= 1:
        return rows[0] * cols[0] if rows and cols else 1
    return [[r * q for q in cols] for r in rows]


# --- adaptive pooling ---------------------------------------------------------------

def _adaptive_bounds(in_size, out_size):
    """PyTorch's window [start, end) for each output: floor(i*in/out), ceil((i+1)*in/out)."""
    return [((i * in_size) // out_size, -(-((i + 1) * in_size) // out_size)) for i in range(out_size)]


def _averaging_matrix(xp, in_size, out_size, dtype):
    """(out, in) matrix whose row i averages input window i, so pooling is two GEMMs."""
    m = xp.zeros((out_size, in_size), dtype)
    for i, (start, end) in enumerate(_adaptive_bounds(in_size, out_size)):
        m[i, start:end] = 1.0 / (end - start)
    return m


class AdaptiveAvgPool2D(Op):
    double_backward = True

    @staticmethod
    def forward(ctx, x, output_size):
        xp = ctx.xp
        h, w = x.shape[-2:]
        ctx.rows = _averaging_matrix(xp, h, output_size[0], x.dtype)
        ctx.cols = _averaging_matrix(xp, w, output_size[1], x.dtype)
        return _adaptive_means(xp, x, ctx.rows, ctx.cols)

    @staticmethod
    def backward(ctx, g):
        return linear_map(ctx.xp, g, _adaptive_spread, _adaptive_means, (ctx.rows, ctx.cols))


def _adaptive_means(xp, x, rows, cols):
    return _row_col_product(xp, x, rows, cols.T)


def _adaptive_spread(xp, g, rows, cols):
    if rows.shape[0] == 1 and cols.shape[0] == 1 and not recording(g):
        # global pooling (every CNN's head): each gradient spread over its whole plane,
        # the same two products as the GEMMs, without their transposed copy (1.3 -> 0.2
        # ms for a small ResNet's (32, 64, 16, 16))
        scaled = g * cols[0, 0]
        scaled *= rows[0, 0]
        out = xp.empty(g.shape[:-2] + (rows.shape[1], cols.shape[1]), g.dtype)
        out[...] = scaled
        return out
    return _row_col_product(xp, g, rows.T, cols)


def _row_col_product(xp, a, left, right):
    """``left @ a @ right`` over the last two axes as two single GEMMs (a batched
    matmul would make one tiny GEMM per plane: 5x slower for a global pool)."""
    t = xp.matmul(a.reshape(-1, a.shape[-1]), right).reshape(a.shape[:-1] + (right.shape[1],))
    return xp.ascontiguousarray(xp.tensordot(t, left, axes=([-2], [1])).swapaxes(-1, -2))


class AdaptiveMaxPool2D(Op):
    double_backward = True

    @staticmethod
    def forward(ctx, x, output_size):
        xp = ctx.xp
        ctx.in_shape = x.shape
        h, w = x.shape[-2:]
        row_windows = _window_table(xp, h, output_size[0])  # (OH, widest window) input rows
        col_windows = _window_table(xp, w, output_size[1])
        kh, kw = row_windows.shape[1], col_windows.shape[1]
        views = (x[..., row_windows[:, a, None], col_windows[None, :, b]] for a in range(kh) for b in range(kw))
        y, pick = _running_max(xp, views, kh * kw)
        pick = pick.astype(xp.int64)
        out_rows = xp.arange(output_size[0])[:, None]
        out_cols = xp.arange(output_size[1])
        idx = row_windows[out_rows, pick // kw] * w + col_windows[out_cols, pick % kw]
        ctx.save_for_backward(idx)
        return y, idx

    @staticmethod
    def backward(ctx, g, _g_indices=None):
        (idx,) = ctx.saved_tensors
        return linear_map(ctx.xp, g, _to_adaptive_maxima, _from_adaptive_maxima, (idx, ctx.in_shape))


def _flat_positions(xp, idx, in_shape):
    """Each output's input element, as an index into the flattened input."""
    plane = in_shape[-1] * in_shape[-2]
    planes = idx.size // max(idx.shape[-1] * idx.shape[-2], 1)
    return (idx.reshape(planes, -1) + (xp.arange(planes) * plane)[:, None]).reshape(-1)


def _to_adaptive_maxima(xp, g, idx, in_shape):
    # windows overlap, so one input may be the max of several outputs: a scatter-add.
    # bincount sums in float64; the engine casts the gradient back to the input's dtype.
    size = 1
    for n in in_shape:
        size *= n
    positions = _flat_positions(xp, idx, in_shape)
    if xp.__name__ != "numpy":  # CuPy's bincount reads its largest index back to size its result
        grad = xp.zeros(size, g.dtype)
        xp.add.at(grad, positions, g.reshape(-1))
        return grad.reshape(in_shape)
    return xp.bincount(positions, weights=g.reshape(-1), minlength=size).reshape(in_shape)


def _from_adaptive_maxima(xp, x, idx, in_shape):
    return x.reshape(-1)[_flat_positions(xp, idx, in_shape)].reshape(idx.shape)


def _window_table(xp, in_size, out_size):
    """(out, widest window) input positions of each adaptive window; short windows
    repeat their last position, which can never displace an earlier maximum."""
    bounds = _adaptive_bounds(in_size, out_size)
    width = max((end - start for start, end in bounds), default=1)
    table = [[min(start + t, end - 1) for t in range(width)] for start, end in bounds]
    return xp.asarray(table, dtype=xp.int64).reshape(out_size, width)


# --- argument checks (PyTorch's messages) -------------------------------------------

def _pair(value, name, what, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, (tuple, list)):
        if len(value) == 0 and allow_none:
            return None
        if len(value) == 1:
            return (int(value[0]),) * 2
        if len(value) == 2:
            return (int(value[0]), int(value[1]))
        raise RuntimeError(f"{name}: {what}")
    return (int(value),) * 2


def _pool_out_size(size, k, s, p, d, ceil_mode):
    out = (size + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:  # the last window must start inside the input
        out -= 1
    return out


def _pool_geometry(name, shape, kernel_size, stride, padding, dilation, ceil_mode):
    if len(shape) not in (3, 4) or 0 in shape[-3:]:
        raise RuntimeError("Expected 3D or 4D (batch mode) tensor with optional 0 dim batch size for input, "
                           f"but got:{list(shape)}")
    kernel = _pair(kernel_size, name, "kernel_size must either be a single int, or a tuple of two ints")
    stride = _pair(stride, name, "stride must either be omitted, a single int, or a tuple of two ints",
                   allow_none=True) or kernel
    padding = _pair(padding, name, "padding must either be a single int, or a tuple of two ints")
    dilation = _pair(dilation, name, "dilation must be either a single int, or a tuple of two ints")
    if min(kernel) <= 0:
        raise RuntimeError(f"kernel size should be greater than zero, but got kH: {kernel[0]} kW: {kernel[1]}")
    if min(stride) <= 0:
        raise RuntimeError(f"stride should be greater than zero, but got dH: {stride[0]} dW: {stride[1]}")
    if min(dilation) <= 0:
        raise RuntimeError(f"dilation should be greater than zero, but got dilationH: {dilation[0]} "
                           f"dilationW: {dilation[1]}")
    for p, k, d in zip(padding, kernel, dilation):
        if p < 0:
            raise RuntimeError(f"pad must be non-negative, but got pad: {p}")
        if p > ((k - 1) * d + 1) // 2:
            raise RuntimeError(f"pad should be at most half of effective kernel size, but got pad={p}, "
                               f"kernel_size={k} and dilation={d}")
    in_hw = tuple(shape[-2:])
    out_hw = tuple(_pool_out_size(i, k, s, p, d, ceil_mode)
                   for i, k, s, p, d in zip(in_hw, kernel, stride, padding, dilation))
    if min(out_hw) < 1:
        raise RuntimeError(f"Given input size: ({shape[-3]}x{in_hw[0]}x{in_hw[1]}). Calculated output size: "
                           f"({shape[-3]}x{out_hw[0]}x{out_hw[1]}). Output size is too small")
    reach = tuple((o - 1) * s + d * (k - 1) + 1 for o, s, d, k in zip(out_hw, stride, dilation, kernel))
    needs_canvas = any(padding) or any(r > i for r, i in zip(reach, in_hw))
    canvas_hw = tuple(max(r, p + i) for r, p, i in zip(reach, padding, in_hw)) if needs_canvas else None
    return PoolGeometry(kernel, stride, padding, dilation, out_hw, canvas_hw)


def _adaptive_size(name, input, output_size):
    if input.dim() not in (3, 4):
        raise RuntimeError(f"{name}(): Expected 3D or 4D tensor, but got {list(input.shape)}")
    size = output_size if isinstance(output_size, (tuple, list)) else (output_size, output_size)
    if len(size) != 2:
        raise RuntimeError(f"{name}: output_size must be 2, but got {len(size)}")
    size = tuple(int(input.shape[-2 + i]) if s is None else int(s) for i, s in enumerate(size))
    if min(size) < 0:
        raise RuntimeError(f"{name}: elements of output_size must be greater than or equal to 0 "
                           f"but received {list(size)}")
    return size


def _check_1d(name, input):
    if input.dim() not in (2, 3):
        raise RuntimeError(f"{name}: Expected 2D or 3D (batch mode) tensor with optional 0 dim batch size "
                           f"for input, but got:{list(input.shape)}")


def _check_floating(name, input):
    if not input.is_floating_point():
        raise RuntimeError(f"{name}: Expect: a floating point input, Actual: {input.dtype}")


def _one(value):
    return value[0] if isinstance(value, (tuple, list)) and len(value) == 1 else value


def _stride_1d(stride):
    return None if stride is None or stride == () or stride == [] else (1, _one(stride))


def _squeezed(out, return_indices):
    """Drop the height-1 axis a 1-D pool ran with (grad_fn SqueezeBackward1, as PyTorch)."""
    return (squeeze(out[0], -2), squeeze(out[1], -2)) if return_indices else squeeze(out, -2)


# --- functional API -----------------------------------------------------------------

def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Max pooling; with ``return_indices`` also the flat (row * W + col) index of each max."""
    geo = _pool_geometry("max_pool2d", tuple(input.shape), kernel_size, stride, padding, dilation, ceil_mode)
    if not return_indices:
        return MaxPool2DWithIndices.apply(input, geometry=geo)
    out, indices = MaxPool2DWithIndices.apply(input, geometry=geo, return_indices=True)
    return out, no_grad_result(indices._data)


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    _check_1d("max_pool1d", input)
    out = max_pool2d(unsqueeze(input, -2), (1, _one(kernel_size)), _stride_1d(stride), (0, _one(padding)),
                     (1, _one(dilation)), ceil_mode, return_indices)
    return _squeezed(out, return_indices)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    geo = _pool_geometry("avg_pool2d", tuple(input.shape), kernel_size, stride, padding, 1, ceil_mode)
    _check_floating("avg_pool2d", input)
    if divisor_override is not None and divisor_override == 0:
        raise RuntimeError("divisor must be not zero")
    divisor = _avg_divisor(geo, tuple(input.shape[-2:]), count_include_pad, divisor_override)
    return AvgPool2D.apply(input, geometry=geo, divisor=divisor)


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    if input.dim() not in (2, 3):
        raise RuntimeError(f"Expected 2 to 3 dimensions, but got {input.dim()}-dimensional tensor for "
                           "argument #1 'self' (while checking arguments for avg_pool1d)")
    out = avg_pool2d(unsqueeze(input, -2), (1, _one(kernel_size)), _stride_1d(stride), (0, _one(padding)),
                     ceil_mode, count_include_pad)
    return _squeezed(out, False)


def adaptive_avg_pool2d(input, output_size):
    """Average over PyTorch's adaptive windows (overlapping when sizes do not divide)."""
    size = _adaptive_size("adaptive_avg_pool2d", input, output_size)
    _check_floating("adaptive_avg_pool2d", input)
    return AdaptiveAvgPool2D.apply(input, output_size=size)


def adaptive_avg_pool1d(input, output_size):
    _check_1d("adaptive_avg_pool1d", input)
    return _squeezed(adaptive_avg_pool2d(unsqueeze(input, -2), (1, _one(output_size))), False)


def adaptive_max_pool2d(input, output_size, return_indices=False):
    size = _adaptive_size("adaptive_max_pool2d", input, output_size)
    if 0 in size or 0 in tuple(input.shape[-2:]):
        raise RuntimeError(f"adaptive_max_pool2d(): Expected input to have non-zero size for non-batch "
                           f"dimensions, but input has sizes {list(input.shape)} with output_size {list(size)}")
    out, indices = AdaptiveMaxPool2D.apply(input, output_size=size)
    return (out, no_grad_result(indices._data)) if return_indices else out


def adaptive_max_pool1d(input, output_size, return_indices=False):
    _check_1d("adaptive_max_pool1d", input)
    out = adaptive_max_pool2d(unsqueeze(input, -2), (1, _one(output_size)), return_indices)
    return _squeezed(out, return_indices)

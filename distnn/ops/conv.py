"""Convolutions: ``conv1d``, ``conv2d``, ``conv_transpose1d``, ``conv_transpose2d``,
one ``Convolution`` op (``ConvolutionBackward0``). CuPy convolutions run in
``conv_cuda.py``. Float32 convolutions on numpy run through oneDNN where it is
installed and enabled (``onednn.py``); the rest are built from im2col by strided
copies, one GEMM per batch chunk, and col2im by strided adds (kernel rows, then
columns); the working layouts and scratch buffers live in ``im2col.py``, the
paths that skip im2col in ``conv_direct.py`` and ``conv_grid.py``.
"""

from collections import namedtuple
from functools import lru_cache

from ..autograd.function import Op
from ..autograd.graph_xp import GraphArray, recording
from ..threads import map_chunks
from ..tensor import _wrap
from . import conv_cuda, conv_direct, conv_grid, onednn
from .im2col import batch_chunks, chunk_sum, layout_for, scratch_array, weight_gemm
from .shape import squeeze, unsqueeze

__all__ = ["conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d"]

TENSOR_METHODS = ()

# A convolution's arguments, normalised to two spatial dims.
# padding is ((top, bottom), (left, right)): 'same' with an even kernel is asymmetric.
Geometry = namedtuple("Geometry", "stride padding dilation groups transposed output_padding")


# --- the op -------------------------------------------------------------------------

class Convolution(Op):
    """Convolution or transposed convolution over (N, C, H, W) or (N, C, L) input.

    Bilinear in (x, w), so its input and weight gradients are the ops
    ``ConvolutionInputGrad`` and ``ConvolutionWeightGrad`` when backward is recorded,
    and the three differentiate into each other to any order."""

    double_backward = True

    @staticmethod
    def forward(ctx, x, w, b, geometry):
        ctx.geometry = geometry
        ctx.save_for_backward(x, w)
        return _convolve(ctx.xp, x, w, b, geometry)

    @staticmethod
    def backward(ctx, g):
        xp, geo = ctx.xp, ctx.geometry
        x, w = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        if recording(g):
            return (_input_grad(xp, g, w, geo, x.shape) if need_x else None,
                    _weight_grad(xp, x, g, geo, w.shape) if need_w else None,
                    g.sum(axis=(0,) + tuple(range(2, g.ndim))) if need_b else None)
        return _gradients(xp, x, w, g, geo, need_x, need_w, need_b)


class ConvolutionInputGrad(Op):
    """A convolution's input gradient as a function of (grad_output, weight)."""

    double_backward = True

    @staticmethod
    def forward(ctx, g, w, geometry, x_shape):
        ctx.geometry = geometry
        ctx.save_for_backward(g, w)
        return _input_grad(ctx.xp, g, w, geometry, x_shape)

    @staticmethod
    def backward(ctx, u):
        g, w = ctx.saved_tensors
        need_g, need_w = ctx.needs_input_grad[:2]
        return (_recorded_convolution(ctx.xp, u, w, ctx.geometry) if need_g else None,
                _weight_grad(ctx.xp, u, g, ctx.geometry, w.shape) if need_w else None, None, None)


class ConvolutionWeightGrad(Op):
    """A convolution's weight gradient as a function of (input, grad_output)."""

    double_backward = True

    @staticmethod
    def forward(ctx, x, g, geometry, w_shape):
        ctx.geometry = geometry
        ctx.save_for_backward(x, g)
        return _weight_grad(ctx.xp, x, g, geometry, w_shape)

    @staticmethod
    def backward(ctx, v):
        x, g = ctx.saved_tensors
        need_x, need_g = ctx.needs_input_grad[:2]
        return (_input_grad(ctx.xp, g, v, ctx.geometry, x.shape) if need_x else None,
                _recorded_convolution(ctx.xp, x, v, ctx.geometry) if need_g else None, None, None)


def _recorded_convolution(xp, x, w, geo):
    """The convolution of ``x`` by ``w`` (no bias), recorded when either is a GraphArray."""
    if recording(x) or recording(w):
        return GraphArray(Convolution.apply(_tensor(x), _tensor(w), None, geometry=geo))
    return _convolve(xp, x, w, None, geo)


def _input_grad(xp, g, w, geo, x_shape):
    if recording(g) or recording(w):
        return GraphArray(ConvolutionInputGrad.apply(_tensor(g), _tensor(w), geo, x_shape))
    return _gradients(xp, xp.empty(x_shape, g.dtype), w, g, geo, True, False, False)[0]


def _weight_grad(xp, x, g, geo, w_shape):
    if recording(x) or recording(g):
        return GraphArray(ConvolutionWeightGrad.apply(_tensor(x), _tensor(g), geo, w_shape))
    return _gradients(xp, x, xp.empty(w_shape, x.dtype), g, geo, False, True, False)[1]


def _tensor(a):
    return a.t if recording(a) else _wrap(a)


def _convolve(xp, x, w, b, geo):
    one_d = x.ndim == 3
    if one_d:  # a 1-D convolution is a 2-D one over a height of 1
        x, w = x[:, :, None, :], w[:, :, None, :]
    y = conv_cuda.convolve(xp, x, w, b, geo)  # None on the CPU
    if y is None and not geo.transposed:
        crop = _crop_to_reads(x.shape, w.shape, geo)
        if crop is not None:
            x, w, geo = x[crop.x], _cropped_weight(xp, w, crop.w), crop.geometry
    if y is None:
        y = onednn.convolve(xp, x, w, b, geo)  # None where oneDNN does not take it (float64, ...)
    if y is None and geo.transposed:
        y = _transposed_forward(xp, x, w, b, geo)
    elif y is None:
        y = _conv_forward(xp, x, w, b, geo)
    return y[:, :, 0, :] if one_d else y


def _gradients(xp, x, w, g, geo, need_x, need_w, need_b):
    """(input, weight, bias) gradients; ``x`` (``w``) is read only for its shape when
    just the weight (input) gradient is asked for."""
    one_d = x.ndim == 3
    if one_d:
        x, w, g = x[:, :, None, :], w[:, :, None, :], g[:, :, None, :]
    fast = conv_cuda.gradients(xp, x, w, g, geo, need_x, need_w, need_b)
    crop = None if fast is not None or geo.transposed else _crop_to_reads(x.shape, w.shape, geo)
    if crop is not None:
        gx, gw, g_bias = _plain_gradients(xp, x[crop.x], _cropped_weight(xp, w, crop.w), g, crop.geometry,
                                          need_x, need_w, need_b)
        gx, gw = _uncrop(xp, gx, x.shape, crop.x), _uncropped_weight(xp, gw, w.shape, crop.w)
    elif fast is not None:
        gx, gw, g_bias = fast
    elif geo.transposed:
        gx, gw, g_bias = onednn.gradients(xp, x, w, g, geo, need_x, need_w, need_b) or \
            _transposed_backward(xp, x, w, g, geo, need_x, need_w, need_b)
    else:
        gx, gw, g_bias = _plain_gradients(xp, x, w, g, geo, need_x, need_w, need_b)
    if one_d:
        gx = gx[:, :, 0, :] if gx is not None else None
        gw = gw[:, :, 0, :] if gw is not None else None
    return gx, gw, g_bias


def _plain_gradients(xp, x, w, g, geo, need_x, need_w, need_b):
    """A (not transposed) convolution's gradients on the CPU: oneDNN's, else our own."""
    return onednn.gradients(xp, x, w, g, geo, need_x, need_w, need_b) or \
        _conv_backward(xp, x, w, g, geo, need_x, need_w, need_b)


def _add_into(xp, total, part):
    return part if total is None else xp.add(total, part, out=total)


def _add_bias(xp, rows, bias):
    """Add the bias to a (C, cols) GEMM result while it is contiguous and in cache: 3x
    cheaper than broadcasting it over the NCHW output."""
    if bias is not None:
        xp.add(rows, bias[:, None], out=rows)


def _conv_forward(xp, x, w, b, geo):
    if conv_direct.is_pointwise(x.shape, w.shape, geo):
        return conv_direct.pointwise_forward(xp, x, w, b, geo)
    if conv_grid.applies(x.shape, w.shape, geo):  # before the band: faster on depthwise kernels
        return conv_grid.forward(xp, x, w, b, geo)
    if conv_direct.is_depthwise(x.shape, w.shape, geo):
        return conv_direct.depthwise_forward(xp, x, w, b, geo)
    n, c, h, wd = x.shape
    oc, cg, kh, kw = w.shape
    g = geo.groups
    (pt, pb), (pl, pr) = geo.padding
    oh, ow = _conv_out_hw((pt + h + pb, pl + wd + pr), (kh, kw), geo)
    layout = layout_for(c, oc, kw)
    w3 = w.reshape(g, oc // g, cg * kh * kw)
    y = xp.empty((n, oc, oh, ow), x.dtype)

    def convolve(part):
        xl = layout.enter(xp, x[part], geo.padding, "src")
        col = layout.unfold(xp, xl, (kh, kw), geo.stride, geo.dilation, (oh, ow), "col")
        out = scratch_array(xp, "gemm", (g, oc // g, col.shape[-1]), x.dtype)
        xp.matmul(w3, col.reshape(g, cg * kh * kw, -1), out=out)
        _add_bias(xp, out.reshape(oc, -1), b)
        layout.leave(y[part], layout.grid(out, oc, (oh, ow)))

    map_chunks(xp, convolve, batch_chunks(n, c * kh * kw * oh * ow * x.itemsize))
    return y


def _conv_backward(xp, x, w, grad, geo, need_x, need_w, need_b):
    if conv_direct.is_pointwise(x.shape, w.shape, geo):
        return conv_direct.pointwise_backward(xp, x, w, grad, geo, need_x, need_w, need_b)
    if conv_grid.applies(x.shape, w.shape, geo):
        return conv_grid.backward(xp, x, w, grad, geo, need_x, need_w, need_b)
    if conv_direct.is_depthwise(x.shape, w.shape, geo):
        return conv_direct.depthwise_backward(xp, x, w, grad, geo, need_x, need_w, need_b)
    n, c, h, wd = x.shape
    oc, cg, kh, kw = w.shape
    g = geo.groups
    (pt, pb), (pl, pr) = geo.padding
    oh, ow = grad.shape[2:]
    layout = layout_for(c, oc, kw)
    w3 = w.reshape(g, oc // g, cg * kh * kw)
    gx = xp.empty(x.shape, x.dtype) if need_x else None

    def gradients(part):
        """This chunk's (weight, bias) gradient terms; its input gradient goes into gx."""
        gt = layout.enter(xp, grad[part], ((0, 0), (0, 0)), "gemm").reshape(g, oc // g, -1)
        gw_part = g_bias_part = None
        if need_b:
            g_bias_part = conv_direct.row_sums(xp, gt.reshape(oc, -1))
        if need_w:  # recomputing im2col beat keeping it from forward (KH*KW copies of x)
            xl = layout.enter(xp, x[part], geo.padding, "src")
            col = layout.unfold(xp, xl, (kh, kw), geo.stride, geo.dilation, (oh, ow), "col")
            gw_part = weight_gemm(xp, col.reshape(g, cg * kh * kw, -1), gt)
        if need_x:
            gcol = scratch_array(xp, "col", (g, cg * kh * kw, gt.shape[-1]), x.dtype)
            xp.matmul(w3.transpose(0, 2, 1), gt, out=gcol)
            dxl = layout.fold(xp, gcol, c, (kh, kw), (oh, ow), (pt + h + pb, pl + wd + pr),
                              geo.stride, geo.dilation, "dst")
            layout.leave(gx[part], dxl, (pt, pl))
        return gw_part, g_bias_part

    parts = map_chunks(xp, gradients, batch_chunks(n, c * kh * kw * oh * ow * x.itemsize))
    gw, g_bias = chunk_sum(p[0] for p in parts), chunk_sum(p[1] for p in parts)
    return gx, (gw.reshape(w.shape) if gw is not None else None), g_bias


def _transposed_forward(xp, x, w, b, geo):
    """The gradient of a convolution with respect to its input: GEMM, then col2im."""
    n, cin, h, wd = x.shape
    _, ocg, kh, kw = w.shape
    g = geo.groups
    (p_h, _), (p_w, _) = geo.padding
    full_hw = _transposed_full_hw((h, wd), (kh, kw), geo)
    layout = layout_for(g * ocg, cin, kw)
    w3t = w.reshape(g, cin // g, ocg * kh * kw).transpose(0, 2, 1)
    y = xp.empty((n, g * ocg, full_hw[0] - 2 * p_h, full_hw[1] - 2 * p_w), x.dtype)
    for part in batch_chunks(n, g * ocg * kh * kw * h * wd * x.itemsize):
        xl = layout.enter(xp, x[part], ((0, 0), (0, 0)), "src").reshape(g, cin // g, -1)
        col = scratch_array(xp, "col", (g, ocg * kh * kw, xl.shape[-1]), x.dtype)
        xp.matmul(w3t, xl, out=col)
        yl = layout.fold(xp, col, g * ocg, (kh, kw), (h, wd), full_hw, geo.stride, geo.dilation, "dst")
        _add_bias(xp, yl.reshape(g * ocg, -1), b)
        layout.leave(y[part], yl, (p_h, p_w))
    return y


def _transposed_backward(xp, x, w, grad, geo, need_x, need_w, need_b):
    """A transposed convolution's gradients are an ordinary convolution of ``grad``."""
    n, cin, h, wd = x.shape
    _, ocg, kh, kw = w.shape
    g = geo.groups
    layout = layout_for(g * ocg, cin, kw)
    w3 = w.reshape(g, cin // g, ocg * kh * kw)
    gx = xp.empty(x.shape, x.dtype) if need_x else None
    gw = g_bias = None
    for part in batch_chunks(n, g * ocg * kh * kw * h * wd * x.itemsize):
        gl = layout.enter(xp, grad[part], geo.padding, "dst")
        if need_b:  # the zero borders add nothing
            g_bias = _add_into(xp, g_bias, conv_direct.row_sums(xp, gl.reshape(g * ocg, -1)))
        if not (need_x or need_w):
            continue
        col = layout.unfold(xp, gl, (kh, kw), geo.stride, geo.dilation, (h, wd), "col")
        col = col.reshape(g, ocg * kh * kw, -1)
        if need_x:
            out = scratch_array(xp, "gemm", (g, cin // g, col.shape[-1]), x.dtype)
            xp.matmul(w3, col, out=out)
            layout.leave(gx[part], layout.grid(out, cin, (h, wd)))
        if need_w:
            xl = layout.enter(xp, x[part], ((0, 0), (0, 0)), "src").reshape(g, cin // g, -1)
            gw = _add_into(xp, gw, xp.matmul(xl, col.transpose(0, 2, 1)))
    return gx, (gw.reshape(w.shape) if gw is not None else None), g_bias


Crop = namedtuple("Crop", "x w geometry")


@lru_cache(maxsize=1024)  # asked on every call of a layer, forward and backward, with the same shapes
def _crop_to_reads(x_shape, w_shape, geo):
    """The smaller convolution that computes the same output when some kernel taps
    only ever read padding (a 3x3 kernel over a 1x1 map: 8 of its 9 taps) or some
    input rows are never read: index ``x`` and ``w`` by ``Crop.x`` / ``Crop.w``
    and convolve with ``Crop.geometry``. The dropped products are all zero, so the
    result is the same; their weight and input gradients are zero. A dim with one
    output gets stride 1, and one kernel tap dilation 1 (oneDNN then runs ResNet-18's
    layers on a 1x1 map as 1x1 convolutions, its JIT kernel for those). None when
    there is nothing to drop or change."""
    x_index, w_index, pads, strides, dilations = [slice(None)] * 2, [slice(None)] * 2, [], [], []
    changed = False
    for size, k, s, d, (before, after) in zip(x_shape[2:], w_shape[2:], geo.stride, geo.dilation, geo.padding):
        out = (before + size + after - d * (k - 1) - 1) // s + 1
        # tap t reads padded positions t*d + s*o, o < out; it is live if one of them is real
        live = [t for t in range(k) if t * d + s * (out - 1) >= before and t * d < before + size]
        if not live:  # every window is padding only: left to the plain path
            return None
        k0, k1 = live[0], live[-1] + 1
        lo, hi = k0 * d, (k1 - 1) * d + s * (out - 1)  # the padded positions the live taps read
        first, stop = max(lo - before, 0), min(hi - before + 1, size)
        stride, dilation = (1 if out == 1 else s), (1 if k1 - k0 == 1 else d)
        changed |= k1 - k0 < k or first > 0 or stop < size or (stride, dilation) != (s, d)
        x_index.append(slice(first, stop))
        w_index.append(slice(k0, k1))
        pads.append((max(before - lo, 0), max(hi - before + 1 - size, 0)))
        strides.append(stride)
        dilations.append(dilation)
    if not changed:
        return None
    return Crop(tuple(x_index), tuple(w_index),
                geo._replace(padding=tuple(pads), stride=tuple(strides), dilation=tuple(dilations)))


def _kept_taps(w_shape, index):
    """The flat kernel positions (i * KW + j) a crop's ``index`` keeps, in order;
    None when it keeps every tap."""
    kh, kw = w_shape[2:]
    rows, cols = range(kh)[index[2]], range(kw)[index[3]]
    if len(rows) * len(cols) == kh * kw:
        return None
    return [i * kw + j for i in rows for j in cols]


def _cropped_weight(xp, w, index):
    """``w[index]``, C-contiguous: the kept taps taken from ``w`` as (OC*C, KH*KW).
    Copying the 4-D slice runs 1-2 elements at a time: 1.8 against 0.4 ms for
    ResNet-18's (512, 256, 3, 3) stride-2 kernel cropped to 2x2, which had cost more
    than its GEMM, and every reshape of the slice downstream copied it again."""
    taps = _kept_taps(w.shape, index)
    if taps is None:
        return w[index]
    if len(taps) == 1:  # a plain 2-D strided copy: 0.11 against take's 0.36 ms for (512, 512, 3, 3)
        return xp.ascontiguousarray(w[index])
    oc, c, kh, kw = w.shape
    kept = xp.take(w.reshape(oc * c, kh * kw), xp.asarray(taps), axis=1)
    return kept.reshape(oc, c, len(range(kh)[index[2]]), -1)


def _uncropped_weight(xp, part, w_shape, index):
    """The inverse of ``_cropped_weight``: ``part`` at its taps in zeros of ``w_shape``."""
    taps = _kept_taps(w_shape, index)
    if part is None or taps is None:
        return _uncrop(xp, part, w_shape, index)
    oc, c, kh, kw = w_shape
    out = xp.zeros(w_shape, part.dtype)
    out.reshape(oc * c, kh * kw)[:, taps] = part.reshape(oc * c, -1)
    return out


def _uncrop(xp, part, shape, index):
    """``part`` placed at ``index`` in zeros of ``shape`` (``part`` itself when it is
    all of it)."""
    if part is None or part.shape == tuple(shape):
        return part
    out = xp.zeros(shape, part.dtype)
    out[index] = part
    return out


def _conv_out_hw(padded_hw, kernel, geo):
    return tuple((p - d * (k - 1) - 1) // s + 1
                 for p, k, s, d in zip(padded_hw, kernel, geo.stride, geo.dilation))


def _transposed_full_hw(in_hw, kernel, geo):
    """Output size of a transposed convolution before its padding is cropped."""
    return tuple((i - 1) * s + d * (k - 1) + 1 + op
                 for i, k, s, d, op in zip(in_hw, kernel, geo.stride, geo.dilation, geo.output_padding))


# --- argument checks (PyTorch's messages) -------------------------------------------

def _tuple(value, name, nd):
    if isinstance(value, (tuple, list)):
        if len(value) == nd:
            return tuple(int(v) for v in value)
        if len(value) != 1:
            raise RuntimeError(f"expected {name} to be a single integer value or a list of {nd} values to "
                               f"match the convolution dimensions, but got {name}={list(value)}")
        value = value[0]
    return (int(value),) * nd


def _padding(padding, kernel, stride, dilation, nd):
    """Per-dim (before, after) padding from an int, a tuple, 'valid' or 'same'."""
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * nd
        if padding != "same":
            raise RuntimeError(f"Invalid padding string: '{padding}'")
        if any(s != 1 for s in stride):
            raise RuntimeError("padding='same' is not supported for strided convolutions")
        # PyTorch puts the odd extra row/column of an even kernel at the end
        return tuple((d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2) for k, d in zip(kernel, dilation))
    return tuple((p, p) for p in _tuple(padding, "padding", nd))


def _dims(sizes):
    return "(" + " x ".join(str(s) for s in sizes) + ")"


def _check_and_normalise(name, x, w, b, stride, padding, dilation, groups, transposed, output_padding, nd):
    """Validate like PyTorch and return the op's Geometry (always over two spatial dims)."""
    xs, ws = tuple(x.shape), tuple(w.shape)
    if x.dim() != nd + 2:
        raise RuntimeError(f"Expected {nd + 1}D (unbatched) or {nd + 2}D (batched) input to {name}, "
                           f"but got input of size: {list(xs)}")
    if w.dim() != nd + 2:
        raise RuntimeError(f"Expected {nd + 2}-dimensional weight for {nd + 2}-dimensional input {list(xs)}, "
                           f"but got {w.dim()}-dimensional weight of size {list(ws)} instead")
    if x.dtype != w.dtype:
        raise RuntimeError(f"Input type ({x.dtype}) and weight type ({w.dtype}) should be the same")
    if b is not None and b.dtype != x.dtype:
        raise RuntimeError(f"Input type ({x.dtype}) and bias type ({b.dtype}) should be the same")
    if x.device != w.device or (b is not None and b.device != x.device):
        raise RuntimeError(f"Expected all tensors to be on the same device, but found input on {x.device}, "
                           f"weight on {w.device}" + (f", bias on {b.device}" if b is not None else ""))
    stride = _tuple(stride, "stride", nd)
    dilation = _tuple(dilation, "dilation", nd)
    kernel = ws[2:]
    if transposed and isinstance(padding, str):
        raise TypeError(f"{name}(): argument 'padding' must be tuple of ints, not str")
    pads = _padding(padding, kernel, stride, dilation, nd)
    output_padding = _tuple(output_padding, "output_padding", nd)
    if any(s <= 0 for s in stride):
        raise RuntimeError("non-positive stride is not supported")
    if any(p < 0 for pair in pads for p in pair):
        raise RuntimeError("negative padding is not supported")
    if any(d <= 0 for d in dilation):
        raise RuntimeError("non-positive dilation is not supported")
    if groups <= 0:
        raise RuntimeError("non-positive groups is not supported")
    if ws[0] % groups:
        raise RuntimeError(f"Given groups={groups}, expected weight to be divisible by {groups} at dimension 0, "
                           f"but got weight of size {list(ws)} instead")
    out_channels = ws[1] * groups if transposed else ws[0]
    expected_c = ws[0] if transposed else ws[1] * groups
    if xs[1] != expected_c:
        given = f"transposed=1, weight of size {list(ws)}" if transposed else \
            f"groups={groups}, weight of size {list(ws)}"
        raise RuntimeError(f"Given {given}, expected input{list(xs)} to have {expected_c} channels, "
                           f"but got {xs[1]} channels instead")
    if b is not None and (b.dim() != 1 or b.shape[0] != out_channels):
        raise RuntimeError(f"Given weight of size {list(ws)}, expected bias to be 1-dimensional with "
                           f"{out_channels} elements, but got bias of size {list(b.shape)} instead")
    if transposed:
        if any(op >= s and op >= d for op, s, d in zip(output_padding, stride, dilation)):
            raise RuntimeError(f"output padding must be smaller than either stride or dilation, but got "
                               f"output_padding={list(output_padding)}, stride={list(stride)}, "
                               f"dilation={list(dilation)}")
        out = [(i - 1) * s - 2 * p[0] + d * (k - 1) + op + 1
               for i, s, p, d, k, op in zip(xs[2:], stride, pads, dilation, kernel, output_padding)]
        if any(o <= 0 for o in out):
            raise RuntimeError(f"Given input size per channel: {_dims(xs[2:])}. Calculated output size per "
                               f"channel: {_dims(out)}. Output size is too small")
    else:
        padded = [i + p[0] + p[1] for i, p in zip(xs[2:], pads)]
        extent = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
        if any(p < e for p, e in zip(padded, extent)):
            raise RuntimeError(f"Calculated padded input size per channel: {_dims(padded)}. Kernel size: "
                               f"{_dims(extent)}. Kernel size can't be greater than actual input size")
    if nd == 1:  # the op computes a 1-D convolution as a 2-D one of height 1
        stride, dilation, pads, output_padding = (1,) + stride, (1,) + dilation, ((0, 0),) + pads, \
            (0,) + output_padding
    return Geometry(stride, pads, dilation, groups, transposed, output_padding)


def _convolution(name, nd, input, weight, bias, stride, padding, dilation, groups, transposed=False,
                 output_padding=0):
    unbatched = input.dim() == nd + 1
    if unbatched:  # PyTorch runs unbatched input as a batch of one (grad_fn SqueezeBackward1)
        input = unsqueeze(input, 0)
    geometry = _check_and_normalise(name, input, weight, bias, stride, padding, dilation, groups, transposed,
                                    output_padding, nd)
    out = Convolution.apply(input, weight, bias, geometry=geometry)
    return squeeze(out, 0) if unbatched else out


# --- functional API -----------------------------------------------------------------

def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """1-D convolution over (N, C, L) or unbatched (C, L) input; padding may be 'valid'/'same'."""
    return _convolution("conv1d", 1, input, weight, bias, stride, padding, dilation, groups)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution over (N, C, H, W) or unbatched (C, H, W) input; padding may be 'valid'/'same'."""
    return _convolution("conv2d", 2, input, weight, bias, stride, padding, dilation, groups)


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Transposed 1-D convolution; ``weight`` is (C_in, C_out / groups, K)."""
    return _convolution("conv_transpose1d", 1, input, weight, bias, stride, padding, dilation, groups,
                        transposed=True, output_padding=output_padding)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Transposed 2-D convolution; ``weight`` is (C_in, C_out / groups, KH, KW)."""
    return _convolution("conv_transpose2d", 2, input, weight, bias, stride, padding, dilation, groups,
                        transposed=True, output_padding=output_padding)

"""Convolutions that skip the full im2col. ``conv.py`` routes here:

- pointwise (1x1, unpadded, one group): a GEMM per sample straight on NCHW
  data, (OC, C) @ (C, H*W), with no working layout to enter or leave;
- depthwise (one input channel per group) on narrow maps, in practice only
  1x1 kernels and stride-1 ones padded past the kernel's reach (``conv_grid.py``
  takes every other depthwise kernel first): per channel, one GEMM
  of the input rows each output row reads, (N*OH, KH*Wp), by a banded matrix
  (KH*Wp, OW) holding the kernel on its diagonals. im2col there would copy the
  input KH*KW times for a GEMM of one row per channel; this copies it KH times.
  Zero band entries multiply inputs outside a window, so an inf in the input
  makes NaN (not inf) of the outputs in its row.
"""

import numpy as np  # host-side index arithmetic only

from ..threads import map_chunks
from .im2col import BatchSecond, _overlap_add, _span, _spans, batch_chunks, chunk_sum, scratch_array

# Below this many output positions per sample, the per-sample GEMMs are too small
# and one GEMM over the whole batch in a working layout (conv.py) is faster.
_MIN_POSITIONS = 32


def row_sums(xp, rows):
    """Sums along the last dim (bias gradients), as a GEMV against ones: 3x faster
    than ``sum(axis=-1)`` on numpy."""
    return xp.matmul(rows, xp.ones(rows.shape[-1], rows.dtype))


def bias_grad(xp, g):
    """The bias gradient of an NCHW output gradient."""
    return row_sums(xp, g.reshape(g.shape[0], g.shape[1], -1)).sum(axis=0)


def is_pointwise(x_shape, w_shape, geo):
    return (w_shape[2:] == (1, 1) and geo.groups == 1 and x_shape[0] > 0 and geo.padding == ((0, 0), (0, 0))
            and _positions(x_shape, geo) >= _MIN_POSITIONS)


def _positions(x_shape, geo):
    return -(-x_shape[2] // geo.stride[0]) * -(-x_shape[3] // geo.stride[1])


def _sampled(x, geo):
    """The input positions a strided 1x1 kernel reads."""
    sh, sw = geo.stride
    return x if sh == sw == 1 else x[:, :, ::sh, ::sw]


def pointwise_forward(xp, x, w, b, geo):
    xs = _sampled(x, geo)
    n, c, oh, ow = xs.shape
    w2 = w.reshape(w.shape[0], c)
    y = xp.empty((n, w.shape[0], oh * ow), x.dtype)

    def convolve(part):
        xp.matmul(w2, xs[part].reshape(-1, c, oh * ow), out=y[part])
        if b is not None:
            y[part] += b[:, None]

    map_chunks(xp, convolve, batch_chunks(n, (c + w.shape[0]) * oh * ow * x.itemsize))
    return y.reshape(n, -1, oh, ow)


def pointwise_backward(xp, x, w, g, geo, need_x, need_w, need_b):
    n, oc, oh, ow = g.shape
    c = w.shape[1]
    g3 = g.reshape(n, oc, oh * ow)
    x3 = _sampled(x, geo)
    gs = xp.empty((n, c, oh * ow), g.dtype) if need_x else None

    def gradients(part):
        """This chunk's weight gradient term; its input gradient goes into gs."""
        gw_part = None
        if need_w:
            x_chunk, g_chunk = x3[part].reshape(-1, c, oh * ow), g3[part]
            gw_part = xp.matmul(g_chunk[0], x_chunk[0].T)
            term = xp.empty_like(gw_part)
            for i in range(1, len(x_chunk)):
                gw_part += xp.matmul(g_chunk[i], x_chunk[i].T, out=term)
        if need_x:
            xp.matmul(w.reshape(oc, c).T, g3[part], out=gs[part])
        return gw_part

    parts = map_chunks(xp, gradients, batch_chunks(n, (c + oc) * oh * ow * g.itemsize))
    gx = gw = g_bias = None
    if need_b:
        g_bias = bias_grad(xp, g)
    if need_w:
        gw = chunk_sum(parts).reshape(w.shape)
    if need_x:
        gs = gs.reshape(n, c, oh, ow)
        if geo.stride == (1, 1):
            gx = gs
        else:
            gx = xp.zeros(x.shape, g.dtype)
            _sampled(gx, geo)[...] = gs
    return gx, gw, g_bias


# Widest output for the banded GEMM: its work grows with the padded width Wp
# (KH*Wp multiply-adds per output instead of KH*KW); at OW 16 it beat im2col 2.4x.
_MAX_BAND_WIDTH = 16


def is_depthwise(x_shape, w_shape, geo):
    return (geo.groups == x_shape[1] and geo.groups > 1 and w_shape[1] == 1 and x_shape[0] > 0
            and _out_hw(x_shape, w_shape, geo)[1] <= _MAX_BAND_WIDTH)


def _out_hw(x_shape, w_shape, geo):
    return tuple((p0 + size + p1 - d * (k - 1) - 1) // s + 1 for size, k, s, d, (p0, p1)
                 in zip(x_shape[2:], w_shape[2:], geo.stride, geo.dilation, geo.padding))


def _band_index(xp, kernel, out_w, geo):
    """Index arrays (kernel row, padded input column, output column) of the band
    entries, each (KH, KW, OW)."""
    i, j, o = np.meshgrid(range(kernel[0]), range(kernel[1]), range(out_w), indexing="ij")
    return xp.asarray(i), xp.asarray(o * geo.stride[1] + j * geo.dilation[1]), xp.asarray(o)


def _band(xp, w, padded_w, out_w, geo):
    """(C, KH*Wp, M*OW): channel c's banded matrix, M = output channels per input channel."""
    oc, _, kh, kw = w.shape
    c = geo.groups
    m = oc // c
    band = xp.zeros((c, kh, padded_w, m, out_w), w.dtype)
    i, col, o = _band_index(xp, (kh, kw), out_w, geo)
    band[:, i, col, :, o] = w.reshape(c, m, kh, kw).transpose(2, 3, 0, 1)[:, :, None]
    return band.reshape(c, kh * padded_w, m * out_w)


def _band_gradient(xp, d_band, w_shape, padded_w, out_w, geo):
    """The kernel's gradient: the band gradient summed along each diagonal."""
    oc, _, kh, kw = w_shape
    c = geo.groups
    d_band = d_band.reshape(c, kh, padded_w, oc // c, out_w)
    i, col, o = _band_index(xp, (kh, kw), out_w, geo)
    return d_band[:, i, col, :, o].sum(axis=2).transpose(2, 3, 0, 1).reshape(w_shape)


def _input_rows(xp, xl, kh, out_h, geo):
    """(C, N*OH, KH*Wp): for each output row, the KH padded input rows it reads."""
    c, n, _, padded_w = xl.shape
    rows = scratch_array(xp, "col", (c, n, out_h, kh, padded_w), xl.dtype)
    for i in range(kh):
        rows[:, :, :, i] = xl[:, :, _span(i * geo.dilation[0], geo.stride[0], out_h)]
    return rows.reshape(c, n * out_h, kh * padded_w)


def depthwise_forward(xp, x, w, b, geo):
    n, c = x.shape[:2]
    oc, _, kh, _ = w.shape
    oh, ow = _out_hw(x.shape, w.shape, geo)
    xl = BatchSecond.enter(xp, x, geo.padding, "src")
    out = xp.matmul(_input_rows(xp, xl, kh, oh, geo), _band(xp, w, xl.shape[3], ow, geo))
    y = out.reshape(c, n, oh, oc // c, ow).transpose(1, 0, 3, 2, 4).reshape(n, oc, oh, ow)
    if b is not None:
        y += b[:, None, None]
    return y


def depthwise_backward(xp, x, w, g, geo, need_x, need_w, need_b):
    n, c, h, wd = x.shape
    oc, _, kh, _ = w.shape
    m = oc // c
    oh, ow = g.shape[2:]
    (pt, pb), (pl, pr) = geo.padding
    padded_w = pl + wd + pr
    gx = gw = g_bias = None
    if need_b:
        g_bias = bias_grad(xp, g)
    if not (need_x or need_w):
        return gx, gw, g_bias
    gl = scratch_array(xp, "gemm", (c, n, oh, m, ow), g.dtype)
    gl[...] = g.reshape(n, c, m, oh, ow).transpose(1, 0, 3, 2, 4)
    gl = gl.reshape(c, n * oh, m * ow)
    if need_w:
        xl = BatchSecond.enter(xp, x, geo.padding, "src")
        rows = _input_rows(xp, xl, kh, oh, geo)
        gw = _band_gradient(xp, xp.matmul(rows.transpose(0, 2, 1), gl), w.shape, padded_w, ow, geo)
    if need_x:
        d_rows = xp.matmul(gl, _band(xp, w, padded_w, ow, geo).transpose(0, 2, 1))
        d_rows = d_rows.reshape(c, n, oh, kh, padded_w)
        dxl = scratch_array(xp, "dst", (c, n, pt + h + pb, padded_w), g.dtype)
        _overlap_add(dxl, 2, _spans(kh, geo.dilation[0], geo.stride[0], oh), lambda i: d_rows[:, :, :, i])
        gx = xp.empty(x.shape, g.dtype)
        BatchSecond.leave(gx, dxl, (pt, pl))
    return gx, gw, g_bias

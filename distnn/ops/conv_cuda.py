"""2-D convolutions of CuPy arrays, ordinary and transposed, forward and backward
(issue #17): the whole batch in one im2col kernel, one GEMM per product through
distnn's cuBLAS handle, and one gather-form col2im kernel. ``convolve`` and
``gradients`` answer None where they do not take the call (numpy arrays, dtypes
other than float32 and float64), as ``onednn.py``'s do.

The GEMMs work on per-channel rows whose columns run over the batch, then the
positions: col is (C*KH*KW, N*OH*OW), in groups (G, Cg*KH*KW, N*OH*OW), and a
GEMM result (G, OCg, N*OH*OW) is the (OC, N, OH*OW) array that one transposing
kernel turns into NCHW.
"""

import math

from .. import cublas
from . import fused_cuda
from .cuda_source import Source, index_type, takes

# Every kernel is a grid-stride loop, one element of its output per step, reading
# its inputs in a fixed order: no atomics, so the same bits on every run.
_SOURCE = Source(r"""
// col[c, kh, kw, n, oh, ow] = x[n, c, oh*sh - pt + kh*dh, ow*sw - pl + kw*dw], 0 in the padding.
extern "C" __global__ void distnn_im2col(
        const T* x, T* col, I N, I C, I H, I W, I KH, I KW, I OH, I OW,
        I sh, I sw, I pt, I pl, I dh, I dw, I total) {
    GRID_STRIDE_LOOP(i, total) {
        I ow = i % OW, r = i / OW;
        I oh = r % OH;
        r /= OH;
        I n = r % N;
        r /= N;
        I kw = r % KW;
        r /= KW;
        I kh = r % KH, c = r / KH;
        I ih = oh * sh - pt + kh * dh, iw = ow * sw - pl + kw * dw;
        col[i] = (ih >= 0 && ih < H && iw >= 0 && iw < W) ? x[((n * C + c) * H + ih) * W + iw] : (T)0;
    }
}

// dx[n, c, h, w] = the sum of the col entries (laid out as im2col's) that read
// x[n, c, h, w], kernel rows outer and columns inner, plus bias[c] if has_bias
// (without one, bias is any valid pointer: it is never read).
extern "C" __global__ void distnn_col2im(
        const T* col, const T* bias, T* dx, I N, I C, I H, I W, I KH, I KW, I OH, I OW,
        I sh, I sw, I pt, I pl, I dh, I dw, I has_bias, I total) {
    GRID_STRIDE_LOOP(i, total) {
        I w = i % W, r = i / W;
        I h = r % H;
        r /= H;
        I c = r % C, n = r / C;
        T sum = (T)0;
        for (I kh = 0; kh < KH; ++kh) {
            I th = h + pt - kh * dh;  // oh * sh for the window whose tap kh reads row h
            if (th < 0) break;        // th only falls as kh grows
            if (th % sh != 0 || th / sh >= OH) continue;
            I row = ((c * KH + kh) * KW * N + n) * OH + th / sh;  // col[c, kh, 0, n, oh, :]
            for (I kw = 0; kw < KW; ++kw) {
                I tw = w + pl - kw * dw;
                if (tw < 0) break;
                if (tw % sw != 0 || tw / sw >= OW) continue;
                sum += col[(row + kw * N * OH) * OW + tw / sw];
            }
        }
        dx[i] = has_bias ? sum + bias[c] : sum;
    }
}

// dst[b, a, l] = src[a, b, l] (+ bias[a] if has_bias; without one, bias is never read):
// between NCHW and the GEMMs' (C, N, H*W).
extern "C" __global__ void distnn_swap_leading(
        const T* src, const T* bias, T* dst, I A, I B, I L, I has_bias, I total) {
    GRID_STRIDE_LOOP(i, total) {
        I l = i % L, r = i / L;
        I a = r % A, b = r / A;
        T v = src[(a * B + b) * L + l];
        dst[i] = has_bias ? v + bias[a] : v;
    }
}
""")


def _launch(name, dtype, index, total, args):
    """Run kernel ``name`` over ``total`` elements on the current stream (the one
    place that launches, so a test can run the kernels another way)."""
    _SOURCE.launch(name, (("T", dtype), ("I", index)), total, args)


def _run(name, arrays, sizes, total):
    """Launch ``name`` on C-contiguous ``arrays`` and the integer ``sizes``, with indices
    as wide as the largest array needs."""
    index = index_type(*arrays)
    args = tuple(arrays) + tuple(index(s) for s in sizes) + (index(total),)
    _launch(name, arrays[0].dtype, index, total, args)


# --- the three kernels ---------------------------------------------------------------

def _im2col(xp, x, kernel, out_hw, geo):
    """The (C*KH*KW, N*OH*OW) windows of NCHW ``x`` under ``geo``'s stride, dilation
    and top/left padding (its bottom/right padding is implied by ``out_hw``)."""
    n, c, h, w = x.shape
    (kh, kw), (oh, ow) = kernel, out_hw
    (pt, _), (pl, _) = geo.padding
    col = xp.empty((c * kh * kw, n * oh * ow), x.dtype)
    _run("distnn_im2col", (x, col), (n, c, h, w, kh, kw, oh, ow) + geo.stride + (pt, pl) + geo.dilation,
         col.size)
    return col


def _col2im(xp, col, x_shape, kernel, out_hw, geo, bias=None):
    """The NCHW array of ``x_shape`` whose elements are the sums of the ``col`` entries
    (im2col's layout, ``out_hw`` windows) that read them, plus ``bias`` per channel."""
    n, c, h, w = x_shape
    (kh, kw), (oh, ow) = kernel, out_hw
    (pt, _), (pl, _) = geo.padding
    dx = xp.empty(x_shape, col.dtype)
    _run("distnn_col2im", (col, dx if bias is None else bias, dx),
         (n, c, h, w, kh, kw, oh, ow) + geo.stride + (pt, pl) + geo.dilation + (bias is not None,), dx.size)
    return dx


def _swap_leading(xp, src, bias=None):
    """(B, A, L) from (A, B, L) ``src``, plus ``bias[a]``: NCHW to (C, N, H*W) and back."""
    a, b, length = src.shape
    dst = xp.empty((b, a, length), src.dtype)
    _run("distnn_swap_leading", (src, dst if bias is None else bias, dst), (a, b, length, bias is not None),
         dst.size)
    return dst


# --- convolutions ----------------------------------------------------------------------

def convolve(xp, x, w, b, geo):
    """The convolution (transposed where ``geo`` says) of NCHW ``x`` by ``w``, plus ``b``;
    None where this module does not take it."""
    if not takes(xp, *(a for a in (x, w, b) if a is not None)):
        return None
    x, w = xp.ascontiguousarray(x), xp.ascontiguousarray(w)
    b = None if b is None else xp.ascontiguousarray(b)
    return (_transposed_forward if geo.transposed else _forward)(xp, x, w, b, geo)


def gradients(xp, x, w, g, geo, need_x, need_w, need_b):
    """(input, weight, bias) gradients, None for those not asked for; ``x`` (``w``) is
    read only for its shape when just the input (weight) gradient is asked for. None
    where this module does not take the call."""
    if not takes(xp, x, w, g):
        return None
    x = xp.ascontiguousarray(x) if need_w else x
    w = xp.ascontiguousarray(w) if need_x else w
    g = xp.ascontiguousarray(g)
    backward = _transposed_backward if geo.transposed else _backward
    gx, gw = backward(xp, x, w, g, geo, need_x, need_w) if need_x or need_w else (None, None)
    bias = fused_cuda.sum_outer_inner(xp, g.reshape(g.shape[:2] + (math.prod(g.shape[2:]),))) if need_b else None
    return gx, gw, bias


def _forward(xp, x, w, b, geo):
    """GEMM of the weight rows with im2col's columns, written into NCHW with the bias."""
    n, _, h, wd = x.shape
    oc, cg, kh, kw = w.shape
    groups = geo.groups
    out_hw = tuple((p0 + size + p1 - d * (k - 1) - 1) // s + 1 for size, k, s, d, (p0, p1)
                   in zip((h, wd), (kh, kw), geo.stride, geo.dilation, geo.padding))
    col = _grouped_col(xp, x, (kh, kw), out_hw, geo)
    rows = cublas.matmul(w.reshape(groups, oc // groups, cg * kh * kw), col)
    return _swap_leading(xp, rows.reshape(oc, n, out_hw[0] * out_hw[1]), b).reshape((n, oc) + out_hw)


def _backward(xp, x, w, grad, geo, need_x, need_w):
    """The weight gradient is the output gradient's rows times im2col's columns; the
    input gradient, col2im of the weight's columns times those rows."""
    n = x.shape[0]
    oc, cg, kh, kw = w.shape
    groups = geo.groups
    out_hw = grad.shape[2:]
    gt = _swap_leading(xp, grad.reshape(n, oc, out_hw[0] * out_hw[1]))
    gt = gt.reshape(groups, oc // groups, n * out_hw[0] * out_hw[1])
    gx = gw = None
    if need_w:  # im2col again rather than keeping forward's KH*KW copies of x alive
        gw = cublas.matmul(gt, _grouped_col(xp, x, (kh, kw), out_hw, geo).transpose(0, 2, 1)).reshape(w.shape)
    if need_x:
        gcol = cublas.matmul(w.reshape(groups, oc // groups, cg * kh * kw).transpose(0, 2, 1), gt)
        gx = _col2im(xp, gcol, x.shape, (kh, kw), out_hw, geo)
    return gx, gw


def _grouped_col(xp, x, kernel, out_hw, geo):
    """im2col's matrix as (G, Cg*KH*KW, N*OH*OW)."""
    col = _im2col(xp, x, kernel, out_hw, geo)
    return col.reshape(geo.groups, col.shape[0] // geo.groups, col.shape[1])


def _transposed_forward(xp, x, w, b, geo):
    """The input gradient of the ordinary convolution by ``w``, taken at ``x``: GEMM,
    then col2im into the output cropped by the padding, with the bias."""
    n, cin, h, wd = x.shape
    _, ocg, kh, kw = w.shape
    groups = geo.groups
    out_hw = tuple((size - 1) * s + d * (k - 1) + 1 + op - p0 - p1 for size, k, s, d, op, (p0, p1)
                   in zip((h, wd), (kh, kw), geo.stride, geo.dilation, geo.output_padding, geo.padding))
    xt = _swap_leading(xp, x.reshape(n, cin, h * wd)).reshape(groups, cin // groups, n * h * wd)
    col = cublas.matmul(w.reshape(groups, cin // groups, ocg * kh * kw).transpose(0, 2, 1), xt)
    return _col2im(xp, col, (n, groups * ocg) + out_hw, (kh, kw), (h, wd), geo, b)


def _transposed_backward(xp, x, w, grad, geo, need_x, need_w):
    """A transposed convolution's gradients are an ordinary convolution of ``grad``."""
    n, cin, h, wd = x.shape
    groups = geo.groups
    col = _grouped_col(xp, grad, w.shape[2:], (h, wd), geo)
    gx = gw = None
    if need_x:
        rows = cublas.matmul(w.reshape(groups, cin // groups, col.shape[1]), col)
        gx = _swap_leading(xp, rows.reshape(cin, n, h * wd)).reshape(x.shape)
    if need_w:
        xt = _swap_leading(xp, x.reshape(n, cin, h * wd)).reshape(groups, cin // groups, n * h * wd)
        gw = cublas.matmul(xt, col.transpose(0, 2, 1)).reshape(w.shape)
    return gx, gw

"""Max pooling of CuPy arrays in one kernel per pass (issue #17): the forward's window
maxima and picks, the backward's gradient to the picked elements, and that backward's
adjoint (double backward). On the CPU these are a handful of array passes per kernel
offset (pool.py); on a GPU each pass is a launch costing more host time than the
whole kernel takes, so the GPU does a window per thread.

``pick`` is the window offset (row * KW + column) of the element each output took:
the first maximum, a NaN over any number and a later NaN over an earlier one, as
pool.py's scan and PyTorch's ``val > max || isnan(val)``. Padding reads as the
lowest value (forward) or 0 (adjoint). The backward gathers per input element, in
offset order, so overlapping windows sum in a fixed order: the same bits every run.
"""

import numpy as np

from .cuda_source import C_TYPES, Source, index_type

_SOURCE = Source(r"""
// y[p, oh, ow] = max over the window's taps of x[p, oh*sh - pt + kh*dh, ow*sw - pl + kw*dw]
// (lowest in the padding), pick[...] = the tap number kh*KW + kw it took; p = n*C + c.
extern "C" __global__ void distnn_max_pool(
        const T* x, T* y, P* pick, T lowest, I H, I W, I KH, I KW, I OH, I OW,
        I sh, I sw, I pt, I pl, I dh, I dw, I total) {
    GRID_STRIDE_LOOP(i, total) {
        I ow = i % OW, r = i / OW;
        I oh = r % OH, p = r / OH;
        const T* plane = x + p * H * W;
        T best = lowest;
        I taken = 0;
        for (I kh = 0; kh < KH; ++kh) {
            I ih = oh * sh - pt + kh * dh;
            for (I kw = 0; kw < KW; ++kw) {
                I iw = ow * sw - pl + kw * dw;
                T v = (ih >= 0 && ih < H && iw >= 0 && iw < W) ? plane[ih * W + iw] : lowest;
                I number = kh * KW + kw;
                if (number == 0 || v > best || v != v) {
                    best = v;
                    taken = number;
                }
            }
        }
        y[i] = best;
        pick[i] = (P)taken;
    }
}

// dx[p, h, w] = the sum, over the windows whose picked tap is (p, h, w), of their g,
// tap rows outer and columns inner.
extern "C" __global__ void distnn_max_pool_backward(
        const T* g, const P* pick, T* dx, I H, I W, I KH, I KW, I OH, I OW,
        I sh, I sw, I pt, I pl, I dh, I dw, I total) {
    GRID_STRIDE_LOOP(i, total) {
        I w = i % W, r = i / W;
        I h = r % H, p = r / H;
        T sum = (T)0;
        for (I kh = 0; kh < KH; ++kh) {
            I th = h + pt - kh * dh;  // oh * sh for the window whose tap row kh reads row h
            if (th < 0) break;
            if (th % sh != 0 || th / sh >= OH) continue;
            I row = (p * OH + th / sh) * OW;
            for (I kw = 0; kw < KW; ++kw) {
                I tw = w + pl - kw * dw;
                if (tw < 0) break;
                if (tw % sw != 0 || tw / sw >= OW) continue;
                if ((I)pick[row + tw / sw] == kh * KW + kw) sum += g[row + tw / sw];
            }
        }
        dx[i] = sum;
    }
}

// y[p, oh, ow] = x at the tap pick[p, oh, ow] of that window (0 in the padding).
extern "C" __global__ void distnn_max_pool_gather(
        const T* x, const P* pick, T* y, I H, I W, I KH, I KW, I OH, I OW,
        I sh, I sw, I pt, I pl, I dh, I dw, I total) {
    GRID_STRIDE_LOOP(i, total) {
        I ow = i % OW, r = i / OW;
        I oh = r % OH, p = r / OH;
        I number = (I)pick[i];
        I ih = oh * sh - pt + (number / KW) * dh, iw = ow * sw - pl + (number % KW) * dw;
        y[i] = (ih >= 0 && ih < H && iw >= 0 && iw < W) ? x[(p * H + ih) * W + iw] : (T)0;
    }
}
""")


def _launch(name, dtype, pick_dtype, index, total, args):
    _SOURCE.launch(name, (("T", dtype), ("P", pick_dtype), ("I", index)), total, args)


def takes(xp, x):
    return xp.__name__ != "numpy" and x.dtype in C_TYPES


def _geometry_args(index, in_hw, geo):
    (kh, kw), (oh, ow), (pt, pl) = geo.kernel, geo.out_hw, geo.padding
    return tuple(index(s) for s in in_hw + (kh, kw, oh, ow) + geo.stride + (pt, pl) + geo.dilation)


def max_pool(xp, x, geo, pick_dtype):
    """(window maxima, picks) of NCHW ``x``, each (N, C, OH, OW)."""
    x = xp.ascontiguousarray(x)
    n, c, h, w = x.shape
    y = xp.empty((n, c) + geo.out_hw, x.dtype)
    pick = xp.empty(y.shape, pick_dtype)
    lowest = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
    index = index_type(x, y)
    _launch("distnn_max_pool", x.dtype, pick.dtype, index, y.size,
            (x, y, pick, x.dtype.type(lowest)) + _geometry_args(index, (h, w), geo) + (index(y.size),))
    return y, pick


def to_maxima(xp, g, pick, geo, in_shape):
    """Max pooling's backward: each output's gradient summed into the element it picked."""
    g, pick = xp.ascontiguousarray(g), xp.ascontiguousarray(pick)
    dx = xp.empty(in_shape, g.dtype)
    index = index_type(dx, g)
    _launch("distnn_max_pool_backward", g.dtype, pick.dtype, index, dx.size,
            (g, pick, dx) + _geometry_args(index, in_shape[2:], geo) + (index(dx.size),))
    return dx


def from_maxima(xp, x, pick, geo):
    """The adjoint of ``to_maxima``: each output takes the input element its window picked."""
    x, pick = xp.ascontiguousarray(x), xp.ascontiguousarray(pick)
    y = xp.empty(pick.shape, x.dtype)
    index = index_type(x, y)
    _launch("distnn_max_pool_gather", x.dtype, pick.dtype, index, y.size,
            (x, pick, y) + _geometry_args(index, x.shape[2:], geo) + (index(y.size),))
    return y

"""Batch norm (training) and layer norm on the GPU in one kernel each way (issue #17):
the statistics, the normalised values and the affine in one block per channel (or
row), and backward's sums and input gradient likewise, with the formulas of
normalization.py's array path. Called only on CuPy float32/float64 arrays outside
graph recording.
"""

from .cuda_source import FLOAT_PREAMBLE, THREADS, Source, index_type, takes, types

_SOURCE = Source(FLOAT_PREAMBLE + r"""
// Layer norm of each row: xhat = (x - mean) * invstd with invstd = 1 / sqrt(var + eps)
// (biased var), y = xhat * w + b (w, b per column; each optional, else never read);
// xhat and invstd (per row) are kept for backward.
extern "C" __global__ void distnn_layer_norm(
        const T* x, const T* w, const T* b, T* y, T* xhat, T* invstd, I rows, I cols, T eps,
        I has_w, I has_b) {
    __shared__ T buf[THREADS];
    ROWS_LOOP(r, rows) {
        const T* xr = x + r * cols;
        T s = (T)0;
        COLS_LOOP(c, cols) { s += xr[c]; }
        T mean = block_sum(s, buf) / (T)cols;
        T v = (T)0;
        COLS_LOOP(c, cols) {
            T d = xr[c] - mean;
            v += d * d;
        }
        T inv = (T)1 / sqrt_(block_sum(v, buf) / (T)cols + eps);
        COLS_LOOP(c, cols) {
            T xh = (xr[c] - mean) * inv;
            xhat[r * cols + c] = xh;
            T out = has_w ? xh * w[c] : xh;
            y[r * cols + c] = has_b ? out + b[c] : out;
        }
        if (threadIdx.x == 0) invstd[r] = inv;
    }
}

// Layer norm's input gradient per row: (gxhat - mean(gxhat) - xhat * mean(gxhat * xhat))
// * invstd, with gxhat = g * w (g without has_w).
extern "C" __global__ void distnn_layer_norm_backward(
        const T* g, const T* w, const T* xhat, const T* invstd, T* gi, I rows, I cols, I has_w) {
    __shared__ T buf[THREADS];
    ROWS_LOOP(r, rows) {
        T sg = (T)0, sgx = (T)0;
        COLS_LOOP(c, cols) {
            T gx = has_w ? g[r * cols + c] * w[c] : g[r * cols + c];
            sg += gx;
            sgx += gx * xhat[r * cols + c];
        }
        T mean_g = block_sum(sg, buf) / (T)cols, mean_gx = block_sum(sgx, buf) / (T)cols;
        COLS_LOOP(c, cols) {
            T gx = has_w ? g[r * cols + c] * w[c] : g[r * cols + c];
            gi[r * cols + c] = (gx - mean_g - xhat[r * cols + c] * mean_gx) * invstd[r];
        }
    }
}

// Layer norm's parameter gradients: gw[c] = the sum over rows of g * xhat, gb[c] = that
// of g, a block per column.
extern "C" __global__ void distnn_layer_norm_params(const T* g, const T* xhat, T* gw, T* gb, I rows, I cols) {
    __shared__ T buf[THREADS];
    ROWS_LOOP(c, cols) {
        T sw = (T)0, sb = (T)0;
        COLS_LOOP(r, rows) {
            sw += g[r * cols + c] * xhat[r * cols + c];
            sb += g[r * cols + c];
        }
        sw = block_sum(sw, buf);
        sb = block_sum(sb, buf);
        if (threadIdx.x == 0) {
            gw[c] = sw;
            gb[c] = sb;
        }
    }
}

// Training batch norm of an (N, C, L) array, a block per channel c: the mean and biased
// variance over n and l (two passes, as the CPU's formula), invstd = 1 / sqrt(var + eps),
// xhat = (x - mean) * invstd and y = xhat * w[c] + b[c] (each optional); mean, var and
// invstd per channel; with has_running, running_mean and running_var (whose update
// takes var * unbias) move by momentum as _update_running's in-place steps.
extern "C" __global__ void distnn_batch_norm(
        const T* x, const T* w, const T* b, T* y, T* xhat, T* mean_out, T* var_out, T* invstd_out,
        T* running_mean, T* running_var, I N, I C, I L, T eps, T momentum, T one_minus_momentum, T unbias,
        I has_w, I has_b, I has_running) {
    __shared__ T buf[THREADS];
    ROWS_LOOP(c, C) {
        I count = N * L;
        T s = (T)0;
        COLS_LOOP(k, count) { s += x[((k / L) * C + c) * L + k % L]; }
        T mean = block_sum(s, buf) / (T)count;
        T v = (T)0;
        COLS_LOOP(k, count) {
            T d = x[((k / L) * C + c) * L + k % L] - mean;
            v += d * d;
        }
        T var = block_sum(v, buf) / (T)count;
        T inv = (T)1 / sqrt_(var + eps);
        COLS_LOOP(k, count) {
            I at = ((k / L) * C + c) * L + k % L;
            T xh = (x[at] - mean) * inv;
            xhat[at] = xh;
            T out = has_w ? xh * w[c] : xh;
            y[at] = has_b ? out + b[c] : out;
        }
        if (threadIdx.x == 0) {
            mean_out[c] = mean;
            var_out[c] = var;
            invstd_out[c] = inv;
            if (has_running) {
                running_mean[c] = running_mean[c] * one_minus_momentum + momentum * mean;
                running_var[c] = running_var[c] * one_minus_momentum + momentum * (var * unbias);
            }
        }
    }
}

// Training batch norm's gradients, a block per channel: sum_g and sum_gx (g * xhat) over
// n and l are the bias's and weight's gradients; the input's is
// (g - sum_g / m - xhat * (sum_gx / m)) * scale[c], m = N * L, scale = invstd * w.
extern "C" __global__ void distnn_batch_norm_backward(
        const T* g, const T* xhat, const T* scale, T* gi, T* gw, T* gb, I N, I C, I L, I need_input) {
    __shared__ T buf[THREADS];
    ROWS_LOOP(c, C) {
        I count = N * L;
        T sg = (T)0, sgx = (T)0;
        COLS_LOOP(k, count) {
            I at = ((k / L) * C + c) * L + k % L;
            sg += g[at];
            sgx += g[at] * xhat[at];
        }
        sg = block_sum(sg, buf);
        sgx = block_sum(sgx, buf);
        if (threadIdx.x == 0) {
            gw[c] = sgx;
            gb[c] = sg;
        }
        if (need_input) {
            T mean_g = sg / (T)count, mean_gx = sgx / (T)count;
            COLS_LOOP(k, count) {
                I at = ((k / L) * C + c) * L + k % L;
                gi[at] = (g[at] - mean_g - xhat[at] * mean_gx) * scale[c];
            }
        }
    }
}
""".replace("THREADS", str(THREADS)))


def layer_norm(xp, x, weight, bias, eps):
    """(y, xhat, invstd) of layer norm over the columns of 2-D ``x``; ``weight`` and
    ``bias`` per column or None; invstd is (rows, 1)."""
    x = xp.ascontiguousarray(x)
    rows, cols = x.shape
    y, xhat, invstd = xp.empty_like(x), xp.empty_like(x), xp.empty((rows, 1), x.dtype)
    index = index_type(x)
    _SOURCE.launch_blocks("distnn_layer_norm", types(x.dtype, index), rows,
                          (x, x if weight is None else xp.ascontiguousarray(weight),
                           x if bias is None else xp.ascontiguousarray(bias), y, xhat, invstd, index(rows),
                           index(cols), x.dtype.type(eps), index(weight is not None), index(bias is not None)))
    return y, xhat, invstd


def layer_norm_backward(xp, g, xhat, invstd, weight, need_input, need_weight, need_bias):
    """(input, weight, bias) gradients of ``layer_norm`` (None for those not asked for)."""
    g, xhat, invstd = xp.ascontiguousarray(g), xp.ascontiguousarray(xhat), xp.ascontiguousarray(invstd)
    rows, cols = g.shape
    index = index_type(g)
    gi = gw = gb = None
    if need_input:
        gi = xp.empty_like(g)
        _SOURCE.launch_blocks("distnn_layer_norm_backward", types(g.dtype, index), rows,
                              (g, g if weight is None else xp.ascontiguousarray(weight), xhat, invstd, gi,
                               index(rows), index(cols), index(weight is not None)))
    if need_weight or need_bias:
        gw, gb = xp.empty(cols, g.dtype), xp.empty(cols, g.dtype)
        if rows:
            _SOURCE.launch_blocks("distnn_layer_norm_params", types(g.dtype, index), cols,
                                  (g, xhat, gw, gb, index(rows), index(cols)))
        else:
            gw.fill(0)
            gb.fill(0)
    return gi, gw if need_weight else None, gb if need_bias else None


def batch_norm(xp, x, weight, bias, eps, running_mean, running_var, momentum):
    """Training batch norm of NCHW-like ``x`` over every dim but 1, in one kernel:
    (y, xhat, mean, var, invstd), the statistics per channel (C,); ``running_mean`` and
    ``running_var`` (arrays, or None) updated in place."""
    x = xp.ascontiguousarray(x)
    n, c = x.shape[:2]
    length = x.size // max(n * c, 1)
    y, xhat = xp.empty_like(x), xp.empty_like(x)
    mean, var, invstd = (xp.empty(c, x.dtype) for _ in range(3))
    has_running = running_mean is not None
    count = n * length
    t, index = x.dtype.type, index_type(x)
    _SOURCE.launch_blocks("distnn_batch_norm", types(x.dtype, index), c, (
        x, x if weight is None else weight, x if bias is None else bias, y, xhat, mean, var, invstd,
        running_mean if has_running else mean, running_var if has_running else var,
        index(n), index(c), index(length), t(eps), t(momentum), t(1 - momentum),
        t(count / (count - 1) if count > 1 else float("inf")), index(weight is not None), index(bias is not None),
        index(has_running)))
    return y, xhat, mean, var, invstd


def takes_batch_norm(xp, x, weight, bias, running_mean, running_var):
    """Whether the kernel serves these: CuPy float32/float64 arrays of one dtype, not
    empty, the parameters and running statistics C-contiguous (written or read in place),
    both running statistics or neither."""
    params = [a for a in (weight, bias, running_mean, running_var) if a is not None]
    return (takes(xp, x, *params) and x.ndim >= 2 and x.size > 0
            and all(a.flags.c_contiguous for a in params) and (running_mean is None) == (running_var is None))


def batch_norm_backward(xp, g, xhat, scale, need_input):
    """(input gradient or None, sum of g * xhat, sum of g) per channel, in one kernel."""
    g, xhat, scale = xp.ascontiguousarray(g), xp.ascontiguousarray(xhat), xp.ascontiguousarray(scale)
    n, c = g.shape[:2]
    length = g.size // max(n * c, 1)
    gi = xp.empty_like(g) if need_input else None
    gw, gb = xp.empty(c, g.dtype), xp.empty(c, g.dtype)
    index = index_type(g)
    _SOURCE.launch_blocks("distnn_batch_norm_backward", types(g.dtype, index), c, (
        g, xhat, scale, g if gi is None else gi, gw, gb, index(n), index(c), index(length), index(need_input)))
    return gi, gw, gb

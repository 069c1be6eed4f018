"""Single-launch GPU forms of ops whose array formulas take several launches (issue
#17): a ReLU's gradient, softmax and log-softmax along the last axis (forward and
backward), NLL loss on (N, C) log-probabilities (forward and backward) and the sums
behind bias gradients. On a GPU each launch costs more host time than these small
kernels take, so an eager training step is bound by how many it makes (norm_cuda and
rnn_cuda do the same for the norms and the recurrent layers).

A row reduction is one block per row: each thread sums (or takes the max of) a fixed
stride of the row and a tree in shared memory combines them, so the result has the
same bits every run. The ops call these only on CuPy arrays of float32 or float64
outside graph recording (double backward uses the array formulas).
"""

from .cuda_source import FLOAT_PREAMBLE, THREADS, Source, index_type, takes, types

_SOURCE = Source(FLOAT_PREAMBLE + r"""
// gx = g where out != 0 (a ReLU's output there is positive or NaN), else +0.
extern "C" __global__ void distnn_relu_backward(const T* g, const T* out, T* gx, I total) {
    GRID_STRIDE_LOOP(i, total) { gx[i] = out[i] != (T)0 ? g[i] : (T)0; }
}

// The row's max, the same in every thread (a block per row; cols >= 1).
__device__ __forceinline__ T row_max(const T* xr, I cols, T* buf) {
    T m = xr[0];
    COLS_LOOP(c, cols) { m = nan_max(m, xr[c]); }
    return block_max(m, buf);
}

// y = (x - max) - log(sum(exp(x - max))) along each row.
extern "C" __global__ void distnn_log_softmax(const T* x, T* y, I rows, I cols) {
    __shared__ T buf[THREADS];
    ROWS_LOOP(r, rows) {
        const T* xr = x + r * cols;
        T m = row_max(xr, cols, buf), s = (T)0;
        COLS_LOOP(c, cols) { s += exp_(xr[c] - m); }
        T log_sum = log_(block_sum(s, buf));
        COLS_LOOP(c, cols) { y[r * cols + c] = (xr[c] - m) - log_sum; }
    }
}

// gx = g - exp(y) * sum(g) along each row (y the log-softmax output).
extern "C" __global__ void distnn_log_softmax_backward(const T* g, const T* y, T* gx, I rows, I cols) {
    __shared__ T buf[THREADS];
    ROWS_LOOP(r, rows) {
        T s = (T)0;
        COLS_LOOP(c, cols) { s += g[r * cols + c]; }
        s = block_sum(s, buf);
        COLS_LOOP(c, cols) { gx[r * cols + c] = g[r * cols + c] - exp_(y[r * cols + c]) * s; }
    }
}

// y = exp(x - max) / sum(exp(x - max)) along each row.
extern "C" __global__ void distnn_softmax(const T* x, T* y, I rows, I cols) {
    __shared__ T buf[THREADS];
    ROWS_LOOP(r, rows) {
        const T* xr = x + r * cols;
        T m = row_max(xr, cols, buf), s = (T)0;
        COLS_LOOP(c, cols) {
            T e = exp_(xr[c] - m);
            y[r * cols + c] = e;
            s += e;
        }
        s = block_sum(s, buf);
        COLS_LOOP(c, cols) { y[r * cols + c] /= s; }
    }
}

// gx = g * y - y * sum(g * y) along each row (y the softmax output).
extern "C" __global__ void distnn_softmax_backward(const T* g, const T* y, T* gx, I rows, I cols) {
    __shared__ T buf[THREADS];
    ROWS_LOOP(r, rows) {
        T s = (T)0;
        COLS_LOOP(c, cols) { s += g[r * cols + c] * y[r * cols + c]; }
        s = block_sum(s, buf);
        COLS_LOOP(c, cols) {
            T gy = g[r * cols + c] * y[r * cols + c];
            gx[r * cols + c] = gy - y[r * cols + c] * s;
        }
    }
}

// NLL on (rows, cols) log-probabilities, one block: loss = -sum of logp[r, t_r] over the
// rows whose target is not ignore (divided by their count with mean), inv = 1 / count.
// A counted target outside [0, cols) reads as nan (PyTorch's device-side assert).
extern "C" __global__ void distnn_nll(const T* logp, const long long* target, T* loss, T* inv, I rows, I cols,
                                      long long ignore, int mean, T nan) {
    __shared__ T buf[THREADS];
    T total = (T)0, count = (T)0;
    COLS_LOOP(r, rows) {
        long long t = target[r];
        if (t == ignore) continue;
        count += (T)1;
        total -= (t >= 0 && t < cols) ? logp[r * cols + t] : nan;
    }
    total = block_sum(total, buf);
    count = block_sum(count, buf);
    if (threadIdx.x == 0) {
        *loss = mean ? total / count : total;
        *inv = (T)1 / count;
    }
}

// NLL's gradient: gx[r, c] = w_r * (-g * inv) (without mean, -g) where c is row r's
// target, 0 elsewhere; w_r is 0 for an ignored row, whose target reads as class 0.
extern "C" __global__ void distnn_nll_backward(const T* g, const T* inv, const long long* target, T* gx,
                                               I cols, long long ignore, int mean, I total) {
    GRID_STRIDE_LOOP(i, total) {
        long long t = target[i / cols];
        bool valid = t != ignore;
        T coeff = mean ? -g[0] * inv[0] : -g[0];
        gx[i] = (i % cols == (valid ? t : 0)) ? (valid ? coeff : (T)0 * coeff) : (T)0;
    }
}

// out[b] = the sum over a and l of x[a, b, l]: a (A, B, L) array's sums per b (a bias's
// gradient: NCHW with L = H*W, or (N, F) with L = 1), a block per b.
extern "C" __global__ void distnn_sum_outer_inner(const T* x, T* out, I A, I B, I L) {
    __shared__ T buf[THREADS];
    ROWS_LOOP(b, B) {
        T s = (T)0;
        COLS_LOOP(j, A * L) { s += x[((j / L) * B + b) * L + j % L]; }
        s = block_sum(s, buf);
        if (threadIdx.x == 0) out[b] = s;
    }
}
""".replace("THREADS", str(THREADS)))


def relu_backward(xp, g, out):
    g, out = xp.ascontiguousarray(g), xp.ascontiguousarray(out)
    gx = xp.empty(g.shape, g.dtype)
    index = index_type(g)
    _SOURCE.launch("distnn_relu_backward", types(g.dtype, index), g.size, (g, out, gx, index(g.size)))
    return gx


def _row_kernel(xp, name, *arrays):
    """Kernel ``name`` over the rows of the last axis of ``arrays``, into a new array."""
    arrays = tuple(xp.ascontiguousarray(a) for a in arrays)
    first = arrays[0]
    out = xp.empty(first.shape, first.dtype)
    cols = first.shape[-1] if first.ndim else 1
    rows = first.size // cols if cols else 0
    index = index_type(first)
    _SOURCE.launch_blocks(name, types(first.dtype, index), rows, arrays + (out, index(rows), index(cols)))
    return out


def log_softmax(xp, x):
    return _row_kernel(xp, "distnn_log_softmax", x)


def log_softmax_backward(xp, g, y):
    return _row_kernel(xp, "distnn_log_softmax_backward", g, y)


def softmax(xp, x):
    return _row_kernel(xp, "distnn_softmax", x)


def softmax_backward(xp, g, y):
    return _row_kernel(xp, "distnn_softmax_backward", g, y)


def takes_nll(xp, logp, target, weight, reduction):
    """NLL's fused form serves (N, C) log-probabilities with int64 targets, no class
    weights, and a mean or sum."""
    return (takes(xp, logp) and logp.ndim == 2 and weight is None and reduction in ("mean", "sum")
            and target.dtype == "int64" and target.ndim == 1)


def nll(xp, logp, target, ignore_index, mean):
    """(loss, 1 / the number of counted targets), each a 0-d array."""
    logp, target = xp.ascontiguousarray(logp), xp.ascontiguousarray(target)
    loss, inv = xp.empty((), logp.dtype), xp.empty((), logp.dtype)
    rows, cols = logp.shape
    index = index_type(logp)
    _SOURCE.launch_blocks("distnn_nll", types(logp.dtype, index), 1,
                          (logp, target, loss, inv, index(rows), index(cols), xp.int64(ignore_index),
                           xp.int32(mean), logp.dtype.type("nan")))
    return loss, inv


def nll_backward(xp, g, inv, target, n_classes, ignore_index, mean):
    g = xp.ascontiguousarray(g, dtype=inv.dtype)
    gx = xp.empty((target.shape[0], n_classes), inv.dtype)
    index = index_type(gx)
    _SOURCE.launch("distnn_nll_backward", types(gx.dtype, index), gx.size,
                   (g, inv, target, gx, index(n_classes), xp.int64(ignore_index), xp.int32(mean), index(gx.size)))
    return gx


def sum_outer_inner(xp, x):
    """(B,) sums over the first and last axes of an (A, B, L) array."""
    x = xp.ascontiguousarray(x)
    a, b, length = x.shape
    out = xp.empty((b,), x.dtype)
    if a * length == 0:
        out.fill(0)
        return out
    index = index_type(x)
    _SOURCE.launch_blocks("distnn_sum_outer_inner", types(x.dtype, index), b,
                          (x, out, index(a), index(b), index(length)))
    return out

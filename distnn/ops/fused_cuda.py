"""Single-launch GPU forms of ops whose array formulas take several launches (issue
#17): a ReLU's gradient, softmax and log-softmax along the last axis (forward and
backward), NLL loss on (N, C) log-probabilities (forward and backward), the sums
behind bias gradients, layer norm (forward, input and parameter gradients), and an
LSTM's or GRU's step of gate and cell math (forward and backward, around its GEMM). On a GPU each launch costs more host time than these small
kernels take, so an eager training step is bound by how many it makes.

A row reduction is one block per row: each thread sums (or takes the max of) a fixed
stride of the row and a tree in shared memory combines them, so the result has the
same bits every run. The ops call these only on CuPy arrays of float32 or float64
outside graph recording (double backward uses the array formulas).
"""

from .cuda_source import FLOAT_TYPES, THREADS, Source, index_type

_SOURCE = Source(r"""
__device__ __forceinline__ float exp_(float v) { return expf(v); }
__device__ __forceinline__ double exp_(double v) { return exp(v); }
__device__ __forceinline__ float log_(float v) { return logf(v); }
__device__ __forceinline__ double log_(double v) { return log(v); }

// NaN wins, as numpy's max: a NaN anywhere in a row makes its max NaN.
__device__ __forceinline__ T nan_max(T a, T b) { return (b > a || b != b) ? b : a; }

// Reductions of one value per thread of the block, in a fixed tree; every thread gets the result.
__device__ __forceinline__ T block_sum(T v, T* buf) {
    buf[threadIdx.x] = v;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) buf[threadIdx.x] += buf[threadIdx.x + s];
        __syncthreads();
    }
    T r = buf[0];
    __syncthreads();
    return r;
}

__device__ __forceinline__ T block_max(T v, T* buf) {
    buf[threadIdx.x] = v;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) buf[threadIdx.x] = nan_max(buf[threadIdx.x], buf[threadIdx.x + s]);
        __syncthreads();
    }
    T r = buf[0];
    __syncthreads();
    return r;
}

#define ROWS_LOOP(r, rows) for (I r = blockIdx.x; r < (rows); r += gridDim.x)
#define COLS_LOOP(c, cols) for (I c = threadIdx.x; c < (cols); c += blockDim.x)

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

__device__ __forceinline__ T abs_(T v) { return v < (T)0 ? -v : v; }
__device__ __forceinline__ float tanh_(float v) { return tanhf(v); }
__device__ __forceinline__ double tanh_(double v) { return tanh(v); }

// recurrent.py's sigmoid: exp(min(x, 0)) / (exp(-|x|) + 1), without overflow (NaN stays NaN).
__device__ __forceinline__ T sigmoid_(T x) { return exp_(x > (T)0 ? (T)0 : x) / (exp_(-abs_(x)) + (T)1); }

// One LSTM step for each unit (b, j) of (B, H): the gate pre-activations z + b_hh + the
// step's input projection (xw's row b at xw_offset + b * xw_row), activated into acts
// (i, f, o by the sigmoid, g by tanh, side by side as (B, 4H)), then the cell state
// c = f * c_prev + i * g, its tanh tc and the output h = o * tc. Without has_bias,
// bias is never read.
extern "C" __global__ void distnn_lstm_step(
        const T* z, const T* bias, const T* xw, I xw_offset, I xw_row, T* acts, const T* c_prev,
        T* c, T* tc, T* h, I H, I has_bias, I total) {
    GRID_STRIDE_LOOP(i, total) {
        I b = i / H, j = i % H;
        T a[4];
        for (I k = 0; k < 4; ++k) {
            T pre = z[b * 4 * H + k * H + j];
            if (has_bias) pre += bias[k * H + j];
            pre += xw[xw_offset + b * xw_row + k * H + j];
            a[k] = k == 2 ? tanh_(pre) : sigmoid_(pre);
            acts[b * 4 * H + k * H + j] = a[k];
        }
        T cell = a[1] * c_prev[i];
        cell += a[0] * a[2];
        T t = tanh_(cell);
        c[i] = cell;
        tc[i] = t;
        h[i] = a[3] * t;
    }
}

// One LSTM step backward for each unit (b, j): dh (from the later step's GEMM) plus the
// step's output gradient (g_out's row b at g_offset + b * g_row), dc += dh * dc_per_dh,
// the gates' gradients factors * dc (i, f, g) and factors * dh (o), then dc *= f.
extern "C" __global__ void distnn_lstm_step_backward(
        const T* dh, const T* g_out, I g_offset, I g_row, T* dc, const T* dc_per_dh, const T* factors,
        const T* acts, T* d_gates, I H, I total) {
    GRID_STRIDE_LOOP(i, total) {
        I b = i / H, j = i % H;
        T h_grad = dh[i] + g_out[g_offset + b * g_row + j];
        T c_grad = dc[i] + h_grad * dc_per_dh[i];
        for (I k = 0; k < 3; ++k) d_gates[b * 4 * H + k * H + j] = factors[b * 4 * H + k * H + j] * c_grad;
        d_gates[b * 4 * H + 3 * H + j] = factors[b * 4 * H + 3 * H + j] * h_grad;
        dc[i] = c_grad * acts[b * 4 * H + H + j];
    }
}

// One GRU step for each unit (b, j) of (B, H), after its GEMM hg = h_prev @ w_hh.T: with
// hg's bias b_hh (has_bias) and the step's input projection x (xw's row b at x_offset +
// b * x_row), r and z = sigmoid(hg + x) of the first two thirds, h_n = hg's last third,
// n = tanh(x + h_n * r), h = (h_prev - n) * z + n; r, z, n and h_n kept for backward.
extern "C" __global__ void distnn_gru_step(
        const T* hg, const T* bias, const T* xw, I x_offset, I x_row, const T* h_prev, T* r_out, T* z_out,
        T* n_out, T* hn_out, T* h, I H, I has_bias, I total) {
    GRID_STRIDE_LOOP(i, total) {
        I b = i / H, j = i % H;
        const T* x = xw + x_offset + b * x_row;
        T gates[3];
        for (I k = 0; k < 3; ++k) {
            gates[k] = hg[b * 3 * H + k * H + j];
            if (has_bias) gates[k] += bias[k * H + j];
        }
        T r = sigmoid_(gates[0] + x[j]), z = sigmoid_(gates[1] + x[H + j]);
        T n = tanh_(x[2 * H + j] + gates[2] * r);
        r_out[i] = r;
        z_out[i] = z;
        n_out[i] = n;
        hn_out[i] = gates[2];
        h[i] = (h_prev[i] - n) * z + n;
    }
}

// One GRU step backward for each unit (b, j): dh (carried) plus the step's output
// gradient (g_out's row b at g_offset + b * g_row); the input projection's gradients
// (d_r, d_z, d_n) and the hidden GEMM's (d_r, d_z, d_n * r), side by side as (B, 3H);
// dh_next = dh * z, to which the caller adds d_hidden @ w_hh.
extern "C" __global__ void distnn_gru_step_backward(
        const T* dh, const T* g_out, I g_offset, I g_row, const T* h_prev, const T* r_in, const T* z_in,
        const T* n_in, const T* hn_in, T* d_input, T* d_hidden, T* dh_next, I H, I total) {
    GRID_STRIDE_LOOP(i, total) {
        I b = i / H, j = i % H;
        T h_grad = dh[i] + g_out[g_offset + b * g_row + j];
        T r = r_in[i], z = z_in[i], n = n_in[i];
        T d_n = h_grad * ((T)1 - z) * ((T)1 - n * n);
        T d_r = d_n * hn_in[i] * (r * ((T)1 - r));
        T d_z = h_grad * (h_prev[i] - n) * (z * ((T)1 - z));
        d_input[b * 3 * H + j] = d_hidden[b * 3 * H + j] = d_r;
        d_input[b * 3 * H + H + j] = d_hidden[b * 3 * H + H + j] = d_z;
        d_input[b * 3 * H + 2 * H + j] = d_n;
        d_hidden[b * 3 * H + 2 * H + j] = d_n * r;
        dh_next[i] = h_grad * z;
    }
}

__device__ __forceinline__ float sqrt_(float v) { return sqrtf(v); }
__device__ __forceinline__ double sqrt_(double v) { return sqrt(v); }

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


def takes(xp, *arrays):
    """Whether these kernels serve these arrays: CuPy, float32 or float64, one dtype."""
    first = arrays[0]
    return xp.__name__ != "numpy" and first.dtype in FLOAT_TYPES and all(a.dtype == first.dtype for a in arrays)


def _types(dtype, index):
    return ("T", dtype), ("I", index)


def relu_backward(xp, g, out):
    g, out = xp.ascontiguousarray(g), xp.ascontiguousarray(out)
    gx = xp.empty(g.shape, g.dtype)
    index = index_type(g)
    _SOURCE.launch("distnn_relu_backward", _types(g.dtype, index), g.size, (g, out, gx, index(g.size)))
    return gx


def _by_rows(xp, name, *arrays):
    """Kernel ``name`` over the rows of the last axis of ``arrays``, into a new array."""
    arrays = tuple(xp.ascontiguousarray(a) for a in arrays)
    first = arrays[0]
    out = xp.empty(first.shape, first.dtype)
    cols = first.shape[-1] if first.ndim else 1
    rows = first.size // cols if cols else 0
    index = index_type(first)
    _SOURCE.launch_blocks(name, _types(first.dtype, index), rows, arrays + (out, index(rows), index(cols)))
    return out


def log_softmax(xp, x):
    return _by_rows(xp, "distnn_log_softmax", x)


def log_softmax_backward(xp, g, y):
    return _by_rows(xp, "distnn_log_softmax_backward", g, y)


def softmax(xp, x):
    return _by_rows(xp, "distnn_softmax", x)


def softmax_backward(xp, g, y):
    return _by_rows(xp, "distnn_softmax_backward", g, y)


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
    _SOURCE.launch_blocks("distnn_nll", _types(logp.dtype, index), 1,
                          (logp, target, loss, inv, index(rows), index(cols), xp.int64(ignore_index),
                           xp.int32(mean), logp.dtype.type("nan")))
    return loss, inv


def nll_backward(xp, g, inv, target, n_classes, ignore_index, mean):
    g = xp.ascontiguousarray(g, dtype=inv.dtype)
    gx = xp.empty((target.shape[0], n_classes), inv.dtype)
    index = index_type(gx)
    _SOURCE.launch("distnn_nll_backward", _types(gx.dtype, index), gx.size,
                   (g, inv, target, gx, index(n_classes), xp.int64(ignore_index), xp.int32(mean), index(gx.size)))
    return gx


def layer_norm(xp, x, weight, bias, eps):
    """(y, xhat, invstd) of layer norm over the columns of 2-D ``x``; ``weight`` and
    ``bias`` per column or None; invstd is (rows, 1)."""
    x = xp.ascontiguousarray(x)
    rows, cols = x.shape
    y, xhat, invstd = xp.empty_like(x), xp.empty_like(x), xp.empty((rows, 1), x.dtype)
    index = index_type(x)
    _SOURCE.launch_blocks("distnn_layer_norm", _types(x.dtype, index), rows,
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
        _SOURCE.launch_blocks("distnn_layer_norm_backward", _types(g.dtype, index), rows,
                              (g, g if weight is None else xp.ascontiguousarray(weight), xhat, invstd, gi,
                               index(rows), index(cols), index(weight is not None)))
    if need_weight or need_bias:
        gw, gb = xp.empty(cols, g.dtype), xp.empty(cols, g.dtype)
        if rows:
            _SOURCE.launch_blocks("distnn_layer_norm_params", _types(g.dtype, index), cols,
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
    _SOURCE.launch_blocks("distnn_batch_norm", _types(x.dtype, index), c, (
        x, x if weight is None else weight, x if bias is None else bias, y, xhat, mean, var, invstd,
        running_mean if has_running else mean, running_var if has_running else var,
        index(n), index(c), index(length), t(eps), t(momentum), t(1 - momentum),
        t(count / (count - 1) if count > 1 else float("inf")), index(weight is not None), index(bias is not None),
        index(has_running)))
    return y, xhat, mean, var, invstd


def takes_batch_norm(xp, x, weight, bias, running_mean, running_var):
    """The kernel serves contiguous-able float32/float64 arrays of one dtype whose
    channel statistics are over at least one element each."""
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
    _SOURCE.launch_blocks("distnn_batch_norm_backward", _types(g.dtype, index), c, (
        g, xhat, scale, g if gi is None else gi, gw, gb, index(n), index(c), index(length), index(need_input)))
    return gi, gw, gb


def _step_rows(sequence, t, time_dim):
    """(element offset of step ``t``'s first row, elements between its rows) in a
    C-contiguous (T, B, F) (``time_dim`` 0) or (B, T, F) sequence."""
    _, second, features = sequence.shape
    return (t * second * features, features) if time_dim == 0 else (t * features, second * features)


def lstm_step(xp, z, bias, xw, t, time_dim, acts, c_prev, c, tc, h):
    """recurrent.py's LSTM step after its GEMM ``z = h_prev @ w_hh.T``, writing the
    activated gates ``acts`` (B, 4H), cell state ``c``, its tanh ``tc`` and output ``h``
    (B, H) of step ``t`` of the C-contiguous input projection ``xw``."""
    offset, row = _step_rows(xw, t, time_dim)
    index = index_type(xw, acts)
    _SOURCE.launch("distnn_lstm_step", _types(z.dtype, index), c.size,
                   (z, z if bias is None else bias, xw, index(offset), index(row), acts, c_prev, c, tc, h,
                    index(c.shape[-1]), index(bias is not None), index(c.size)))


def lstm_step_backward(xp, dh, g_out, t, time_dim, dc, dc_per_dh, factors, acts, d_gates):
    """recurrent.py's LSTM backward step before its GEMM ``dh = d_gates @ w_hh``: the
    gates' gradients of step ``t`` into ``d_gates``, ``dc`` carried to the step before."""
    offset, row = _step_rows(g_out, t, time_dim)
    index = index_type(g_out, d_gates)
    _SOURCE.launch("distnn_lstm_step_backward", _types(dh.dtype, index), dc.size,
                   (dh, g_out, index(offset), index(row), dc, dc_per_dh, factors, acts, d_gates,
                    index(dc.shape[-1]), index(dc.size)))


def gru_step(xp, hg, bias, xw, t, time_dim, h_prev, r, z, n, h_n, h):
    """recurrent.py's GRU step after its GEMM ``hg = h_prev @ w_hh.T``, writing the gates
    ``r``, ``z``, ``n``, the hidden part ``h_n`` and the output ``h`` (B, H) of step ``t``
    of the C-contiguous input projection ``xw``."""
    offset, row = _step_rows(xw, t, time_dim)
    index = index_type(xw, hg)
    _SOURCE.launch("distnn_gru_step", _types(hg.dtype, index), h.size,
                   (hg, hg if bias is None else bias, xw, index(offset), index(row), h_prev, r, z, n, h_n, h,
                    index(h.shape[-1]), index(bias is not None), index(h.size)))


def gru_step_backward(xp, dh, g_out, t, time_dim, h_prev, r, z, n, h_n, d_input, d_hidden, dh_next):
    """recurrent.py's GRU backward step before its GEMM: the gates' gradients of step ``t``
    into ``d_input`` and ``d_hidden`` (B, 3H), ``dh * z`` into ``dh_next``."""
    offset, row = _step_rows(g_out, t, time_dim)
    index = index_type(g_out, d_input)
    _SOURCE.launch("distnn_gru_step_backward", _types(dh.dtype, index), dh.size,
                   (dh, g_out, index(offset), index(row), h_prev, r, z, n, h_n, d_input, d_hidden, dh_next,
                    index(dh.shape[-1]), index(dh.size)))


def sum_outer_inner(xp, x):
    """(B,) sums over the first and last axes of an (A, B, L) array."""
    x = xp.ascontiguousarray(x)
    a, b, length = x.shape
    out = xp.empty((b,), x.dtype)
    if a * length == 0:
        out.fill(0)
        return out
    index = index_type(x)
    _SOURCE.launch_blocks("distnn_sum_outer_inner", _types(x.dtype, index), b,
                          (x, out, index(a), index(b), index(length)))
    return out

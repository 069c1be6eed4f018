"""An LSTM's and a GRU's time step on the GPU in one kernel forward and one backward,
around the step's GEMM (issue #17): recurrent.py's array loop made 12-16 launches a
step, each costing more host time than the step's arithmetic. The formulas are the
loop's (its sigmoid, its order of operations), on the stacks it keeps for backward.
"""

from .cuda_source import FLOAT_PREAMBLE, Source, index_type, types

_SOURCE = Source(FLOAT_PREAMBLE + r"""
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
""")


def _step_rows(sequence, t, time_dim):
    """(element offset of step ``t``'s first row, elements between its rows) in a
    C-contiguous (T, B, F) (``time_dim`` 0) or (B, T, F) sequence."""
    _, second, features = sequence.shape
    return (t * second * features, features) if time_dim == 0 else (t * features, second * features)


def lstm_step(z, bias, xw, t, time_dim, acts, c_prev, c, tc, h):
    """recurrent.py's LSTM step after its GEMM ``z = h_prev @ w_hh.T``, writing the
    activated gates ``acts`` (B, 4H), cell state ``c``, its tanh ``tc`` and output ``h``
    (B, H) of step ``t`` of the C-contiguous input projection ``xw``."""
    offset, row = _step_rows(xw, t, time_dim)
    index = index_type(xw, acts)
    _SOURCE.launch("distnn_lstm_step", types(z.dtype, index), c.size,
                   (z, z if bias is None else bias, xw, index(offset), index(row), acts, c_prev, c, tc, h,
                    index(c.shape[-1]), index(bias is not None), index(c.size)))


def lstm_step_backward(dh, g_out, t, time_dim, dc, dc_per_dh, factors, acts, d_gates):
    """recurrent.py's LSTM backward step before its GEMM ``dh = d_gates @ w_hh``: the
    gates' gradients of step ``t`` into ``d_gates``, ``dc`` carried to the step before."""
    offset, row = _step_rows(g_out, t, time_dim)
    index = index_type(g_out, d_gates)
    _SOURCE.launch("distnn_lstm_step_backward", types(dh.dtype, index), dc.size,
                   (dh, g_out, index(offset), index(row), dc, dc_per_dh, factors, acts, d_gates,
                    index(dc.shape[-1]), index(dc.size)))


def gru_step(hg, bias, xw, t, time_dim, h_prev, r, z, n, h_n, h):
    """recurrent.py's GRU step after its GEMM ``hg = h_prev @ w_hh.T``, writing the gates
    ``r``, ``z``, ``n``, the hidden part ``h_n`` and the output ``h`` (B, H) of step ``t``
    of the C-contiguous input projection ``xw``."""
    offset, row = _step_rows(xw, t, time_dim)
    index = index_type(xw, hg)
    _SOURCE.launch("distnn_gru_step", types(hg.dtype, index), h.size,
                   (hg, hg if bias is None else bias, xw, index(offset), index(row), h_prev, r, z, n, h_n, h,
                    index(h.shape[-1]), index(bias is not None), index(h.size)))


def gru_step_backward(dh, g_out, t, time_dim, h_prev, r, z, n, h_n, d_input, d_hidden, dh_next):
    """recurrent.py's GRU backward step before its GEMM: the gates' gradients of step ``t``
    into ``d_input`` and ``d_hidden`` (B, 3H), ``dh * z`` into ``dh_next``."""
    offset, row = _step_rows(g_out, t, time_dim)
    index = index_type(g_out, d_input)
    _SOURCE.launch("distnn_gru_step_backward", types(dh.dtype, index), dh.size,
                   (dh, g_out, index(offset), index(row), h_prev, r, z, n, h_n, d_input, d_hidden, dh_next,
                    index(dh.shape[-1]), index(dh.size)))

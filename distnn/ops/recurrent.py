"""Whole-sequence LSTM and GRU layers, one op each: the time loop runs on raw arrays,
so a step costs one small GEMM and a few array passes rather than a dozen recorded
ops, and backward forms the hidden weights' gradient in one GEMM over all steps.

Forward follows ATen's CPU cells term by term, as the composed cells in
``nn/modules/rnn.py`` do (same values). Backward is written on ``xp`` so that it
also runs on GraphArrays for double backward; there the gate activations, which
forward kept as plain arrays (constants to the graph), are recomputed from the
inputs first.
"""

from types import SimpleNamespace

from .. import cublas
from ..autograd.function import Op
from ..autograd.grad_mode import is_grad_enabled
from ..autograd.graph_xp import recording
from . import fused_cuda, onednn_rnn, rnn_cuda
from .activation import _negative_part, _sigmoid

__all__ = ["lstm_layer", "gru_layer"]


def _order(steps, reverse):
    return range(steps - 1, -1, -1) if reverse else range(steps)


def _at(a, t, time_dim):
    """Step ``t`` of a sequence laid out with time along ``time_dim`` (0 or 1)."""
    return a[t] if time_dim == 0 else a[:, t]


def _hidden_gates(xp, h, w_hh_t, b_hh):
    """``F.linear(h, w_hh, b_hh)``, given ``w_hh.T`` contiguous: the GEMM, then the bias.
    ``xp.matmul``, not ``@``: on a GPU it is distnn's GEMM, which a CUDA graph can capture."""
    z = xp.matmul(h, w_hh_t)
    return z if b_hh is None else z + b_hh


def _lstm_forward(xp, xw, h, c, w_hh, b_hh, time_dim, reverse):
    """(per step: h_prev, c_prev, i, f, g, o, tanh(c)), the outputs, final h and c: the
    loop on GraphArrays, for double backward (``_lstm_sequence`` is the arrays' loop)."""
    n = h.shape[-1]
    steps = [None] * xw.shape[time_dim]
    outputs = [None] * len(steps)
    w_hh_t = xp.ascontiguousarray(w_hh.T)  # a small GEMM reads a transposed operand at half speed
    for t in _order(len(steps), reverse):
        gates = _hidden_gates(xp, h, w_hh_t, b_hh) + _at(xw, t, time_dim)
        s = _sigmoid(xp, gates)
        i, f, o = s[:, :n], s[:, n:2 * n], s[:, 3 * n:]
        g = xp.tanh(gates[:, 2 * n:3 * n])
        c_next = f * c + i * g
        tc = xp.tanh(c_next)
        steps[t] = (h, c, i, f, g, o, tc)
        h = outputs[t] = o * tc
        c = c_next
    return steps, outputs, h, c


def _sigmoid_into(xp, x, out):
    """``_sigmoid`` of an array written into ``out``, its temporaries reused in place
    (the same bits): the loop below runs it on small arrays, where each allocation shows."""
    num = _negative_part(xp, x)
    xp.exp(num, out=num)
    den = xp.abs(x)
    xp.negative(den, out=den)
    xp.exp(den, out=den)
    den += 1
    return xp.divide(num, den, out=out)


def _lstm_sequence(xp, xw, h0, c0, w_hh, b_hh, time_dim, reverse):
    """The forward loop on arrays, each step's values written into (T, B, ...) stacks
    that backward then reads whole: the activated gates (i, f, g, o) side by side, the
    new cell states, their tanh and the outputs. The same values as ``_lstm_forward``."""
    steps, (batch, n) = xw.shape[time_dim], h0.shape
    acts = xp.empty((steps, batch, 4 * n), xw.dtype)
    cells, tanh_cells, outs = (xp.empty((steps, batch, n), xw.dtype) for _ in range(3))
    w_hh_t = xp.ascontiguousarray(w_hh.T)
    h, c = h0, c0
    gates = xp.empty((batch, 4 * n), xw.dtype)
    if fused_cuda.takes(xp, xw, h0, c0, w_hh, *(() if b_hh is None else (b_hh,))):  # a kernel a step
        xw, c = xp.ascontiguousarray(xw), xp.ascontiguousarray(c0)
        for t in _order(steps, reverse):
            xp.matmul(h, w_hh_t, out=gates)
            rnn_cuda.lstm_step(gates, b_hh, xw, t, time_dim, acts[t], c, cells[t], tanh_cells[t], outs[t])
            h, c = outs[t], cells[t]
        return acts, cells, tanh_cells, outs
    for t in _order(steps, reverse):
        xp.matmul(h, w_hh_t, out=gates)
        if b_hh is not None:
            gates += b_hh
        gates += _at(xw, t, time_dim)
        a = _sigmoid_into(xp, gates, acts[t])
        xp.tanh(gates[:, 2 * n:3 * n], out=a[:, 2 * n:3 * n])
        c = xp.multiply(a[:, n:2 * n], c, out=cells[t])
        c += a[:, :n] * a[:, 2 * n:3 * n]
        h = xp.multiply(a[:, 3 * n:], xp.tanh(c, out=tanh_cells[t]), out=outs[t])
    return acts, cells, tanh_cells, outs


def _previous(xp, first, stack, reverse):
    """What each step started from: ``first`` for the first step processed, else the
    neighbouring step's entry of ``stack`` (a copy, safe from writes to the outputs)."""
    prev = xp.empty_like(stack)
    if reverse:
        prev[-1], prev[:-1] = first, stack[1:]
    else:
        prev[0], prev[1:] = first, stack[:-1]
    return prev


def _lstm_gate_grads(xp, ctx, w_hh, g_out, dh, dc):
    """Backward of ``_lstm_sequence``: the gates' gradients (T, B, 4H) and the gradients of
    h0 and c0. Every factor that does not depend on the incoming gradient is formed over
    all steps at once first, so each step costs five array passes and one small GEMM."""
    acts, c_prev, tanh_cells = ctx.acts, ctx.c_prev, ctx.tanh_cells
    steps, batch, n4 = acts.shape
    n = n4 // 4
    # d(gate pre-activations) per unit of dc (i, f, g) or of dh (o)
    factors = acts * (1 - acts)  # the sigmoid's derivative, right for i, f and o
    g = acts[:, :, 2 * n:3 * n]
    xp.subtract(1, g * g, out=factors[:, :, 2 * n:3 * n])  # tanh's, for g
    factors[:, :, :n] *= g
    factors[:, :, n:2 * n] *= c_prev
    factors[:, :, 2 * n:3 * n] *= acts[:, :, :n]
    factors[:, :, 3 * n:] *= tanh_cells
    dc_per_dh = acts[:, :, 3 * n:] * (1 - tanh_cells * tanh_cells)
    d_gates = xp.empty_like(acts)
    by_gate, factors = d_gates.reshape(steps, batch, 4, n), factors.reshape(steps, batch, 4, n)
    dc = dc.copy()
    if fused_cuda.takes(xp, acts, g_out, dh, dc):  # a kernel a step
        g_out, dh, dc = xp.ascontiguousarray(g_out), xp.ascontiguousarray(dh), xp.ascontiguousarray(dc)
        for t in _order(steps, not ctx.reverse):
            rnn_cuda.lstm_step_backward(dh, g_out, t, ctx.time_dim, dc, dc_per_dh[t], factors[t], acts[t],
                                          d_gates[t])
            dh = xp.matmul(d_gates[t], w_hh)
        return d_gates, dh, dc
    for t in _order(steps, not ctx.reverse):
        dh = dh + _at(g_out, t, ctx.time_dim)
        dc += dh * dc_per_dh[t]
        xp.multiply(factors[t, :, :3], dc[:, None, :], out=by_gate[t, :, :3])
        xp.multiply(factors[t, :, 3], dh, out=by_gate[t, :, 3])
        dh = xp.matmul(d_gates[t], w_hh)
        dc *= acts[t, :, n:2 * n]
    return d_gates, dh, dc


def _gru_forward(xp, xw, h, w_hh, b_hh, time_dim, reverse):
    """(per step: h_prev, r, z, n, the hidden part of n's pre-activation), the outputs, final h."""
    size = h.shape[-1]
    steps = [None] * xw.shape[time_dim]
    outputs = [None] * len(steps)
    w_hh_t = xp.ascontiguousarray(w_hh.T)
    for t in _order(len(steps), reverse):
        x = _at(xw, t, time_dim)
        hg = _hidden_gates(xp, h, w_hh_t, b_hh)
        rz = _sigmoid(xp, hg[:, :2 * size] + x[:, :2 * size])
        r, z = rz[:, :size], rz[:, size:]
        h_n = hg[:, 2 * size:]
        n = xp.tanh(x[:, 2 * size:] + h_n * r)
        steps[t] = (h, r, z, n, h_n)
        h = outputs[t] = (h - n) * z + n
    return steps, outputs, h


def _weight_grads(xp, ctx, rows, h_prevs):
    """The hidden weights' and bias's gradients: one GEMM and one sum over all steps,
    from the gradients of every step's ``h_prev @ w_hh.T + b_hh`` (``rows``, steps
    stacked) and the ``h_prev`` each step read (stacked the same way)."""
    need_w, need_b = ctx.needs_input_grad[-2:]
    if not (need_w or need_b):
        return None, None
    rows = rows.reshape(-1, rows.shape[-1])
    d_w = xp.matmul(rows.T, h_prevs.reshape(-1, h_prevs.shape[-1])) if need_w else None
    return d_w, rows.sum(0) if need_b else None


class LSTMLayer(Op):
    """One LSTM layer in one direction over a whole sequence, given the input
    projection ``xw = x @ w_ih.T + b_ih`` of every step: (outputs, h_n, c_n)."""

    double_backward = True

    @staticmethod
    def forward(ctx, xw, h0, c0, w_hh, b_hh, time_dim=0, reverse=False):
        xp = ctx.xp
        acts, cells, ctx.tanh_cells, outs = _lstm_sequence(xp, xw, h0, c0, w_hh, b_hh, time_dim, reverse)
        last = 0 if reverse else -1
        ctx.acts, ctx.c_prev = acts, _previous(xp, c0, cells, reverse)
        ctx.h_prev = _previous(xp, h0, outs, reverse)
        ctx.time_dim, ctx.reverse = time_dim, reverse
        ctx.save_for_backward(xw, h0, c0, w_hh, b_hh)
        out = outs if time_dim == 0 else xp.ascontiguousarray(outs.swapaxes(0, 1))
        return out, outs[last].copy(), cells[last].copy()

    @staticmethod
    def backward(ctx, g_out, g_h, g_c):
        xp, time_dim = ctx.xp, ctx.time_dim
        xw, h0, c0, w_hh, b_hh = ctx.saved_tensors
        if not recording(xw):
            d_gates, dh, dc = _lstm_gate_grads(xp, ctx, w_hh, g_out, g_h, g_c)
            d_xw = d_gates if time_dim == 0 else xp.ascontiguousarray(d_gates.swapaxes(0, 1))
            return (d_xw, dh, dc) + _weight_grads(xp, ctx, d_gates, ctx.h_prev)
        steps = _lstm_forward(xp, xw, h0, c0, w_hh, b_hh, time_dim, ctx.reverse)[0]
        dh, dc = g_h, g_c
        d_gates = [None] * len(steps)
        for t in _order(len(steps), not ctx.reverse):
            _, c_prev, i, f, g, o, tc = steps[t]
            dh = dh + _at(g_out, t, time_dim)
            dc = dc + dh * o * (1 - tc * tc)
            d_gates[t] = xp.concatenate([dc * g * (i * (1 - i)), dc * c_prev * (f * (1 - f)),
                                         dc * i * (1 - g * g), dh * tc * (o * (1 - o))], axis=1)
            dh = xp.matmul(d_gates[t], w_hh)
            dc = dc * f
        d_w, d_b = _weight_grads(xp, ctx, xp.stack(d_gates, 0), xp.stack([s[0] for s in steps], 0))
        return xp.stack(d_gates, time_dim), dh, dc, d_w, d_b


class MkldnnRnnLayer(Op):
    """One LSTM layer in one direction through oneDNN's LSTM primitive, input
    projection included (``onednn_rnn.py``), as PyTorch's CPU LSTM: (outputs, h_n,
    c_n), PyTorch's values to the bit. Double backward recomputes the layer by
    ``LSTMLayer``'s formulas on the projection ``x @ w_ih.T + b_ih``."""

    double_backward = True

    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, time_dim=0, reverse=False, layer=None):
        xp = ctx.xp
        x_steps = xp.ascontiguousarray(x.swapaxes(0, 1) if time_dim == 1 else x)  # time-major, as oneDNN's
        h0, c0, w_ih, w_hh = (xp.ascontiguousarray(a) for a in (h0, c0, w_ih, w_hh))
        # oneDNN's inference form (no workspace) where nothing will be differentiated
        training = is_grad_enabled() and any(ctx.needs_input_grad)
        ctx.bias = onednn_rnn.fused_bias(w_ih, b_ih, b_hh)  # summed once, for backward too
        out, h_n, c_n, ctx.workspace = onednn_rnn.forward(layer, x_steps, h0, c0, w_ih, w_hh, ctx.bias, training)
        ctx.layer, ctx.time_dim, ctx.reverse = layer, time_dim, reverse
        ctx.x_steps = x_steps  # x itself when time-major
        ctx.save_for_backward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, out, h_n, c_n)  # out: time-major
        return (xp.ascontiguousarray(out.swapaxes(0, 1)) if time_dim == 1 else out), h_n, c_n

    @staticmethod
    def backward(ctx, g_out, g_h, g_c):
        x, h0, c0, w_ih, w_hh, b_ih, b_hh, out, h_n, c_n = ctx.saved_tensors
        need, time_dim, xp = ctx.needs_input_grad, ctx.time_dim, ctx.xp
        if not any(recording(a) for a in (g_out, g_h, g_c, x, w_ih)):
            if time_dim == 1:
                g_out = g_out.swapaxes(0, 1)
            grads = onednn_rnn.backward(ctx.layer, ctx.x_steps, h0, c0, w_ih, w_hh, ctx.bias, (out, h_n, c_n),
                                        ctx.workspace, (g_out, g_h, g_c))
            d_x = xp.ascontiguousarray(grads[0].swapaxes(0, 1)) if time_dim == 1 else grads[0]
            d_bias = grads[-1]  # both biases' gradient: each gets its own array
            return (d_x,) + grads[1:-1] + (d_bias if need[5] else None, d_bias.copy() if need[6] else None)
        xw = xp.matmul(x, w_ih.T)
        if b_ih is not None:
            xw = xw + b_ih
        inner = SimpleNamespace(xp=xp, saved_tensors=(xw, h0, c0, w_hh, b_hh), time_dim=time_dim,
                                reverse=ctx.reverse, needs_input_grad=(True,) + tuple(need[1:3]) + tuple(need[4:7:2]))
        d_xw, d_h0, d_c0, d_w_hh, d_b_hh = LSTMLayer.backward(inner, g_out, g_h, g_c)
        rows = d_xw.reshape(-1, d_xw.shape[-1])
        return (xp.matmul(d_xw, w_ih) if need[0] else None, d_h0, d_c0,
                xp.matmul(rows.T, x.reshape(-1, x.shape[-1])) if need[3] else None, d_w_hh,
                rows.sum(0) if need[5] else None, d_b_hh)


class GRULayer(Op):
    """One GRU layer in one direction over a whole sequence, given ``xw`` as for
    ``LSTMLayer``: (outputs, h_n)."""

    double_backward = True

    @staticmethod
    def forward(ctx, xw, h0, w_hh, b_hh, time_dim=0, reverse=False):
        xp = ctx.xp
        ctx.time_dim, ctx.reverse = time_dim, reverse
        ctx.save_for_backward(xw, h0, w_hh, b_hh)
        ctx.gates = None
        if fused_cuda.takes(xp, xw, h0, w_hh, *(() if b_hh is None else (b_hh,))):  # a kernel a step
            ctx.steps = None
            ctx.gates, outs = _gru_sequence(xp, xw, h0, w_hh, b_hh, time_dim, reverse)
            ctx.h_prev = _previous(xp, h0, outs, reverse)
            out = outs if time_dim == 0 else xp.ascontiguousarray(outs.swapaxes(0, 1))
            return out, outs[0 if reverse else -1].copy()
        ctx.steps, outputs, h = _gru_forward(xp, xw, h0, w_hh, b_hh, time_dim, reverse)
        return xp.stack(outputs, time_dim), h

    @staticmethod
    def backward(ctx, g_out, g_h):
        xp, time_dim = ctx.xp, ctx.time_dim
        xw, h0, w_hh, b_hh = ctx.saved_tensors
        steps = ctx.steps
        if recording(xw):
            steps = _gru_forward(xp, xw, h0, w_hh, b_hh, time_dim, ctx.reverse)[0]
        elif ctx.gates is not None:  # forward ran _gru_sequence
            if fused_cuda.takes(xp, g_out, g_h):
                return _gru_fused_backward(xp, ctx, w_hh, g_out, g_h)
            steps = [(ctx.h_prev[t],) + tuple(g[t] for g in ctx.gates) for t in range(len(ctx.h_prev))]
        dh = g_h
        d_inputs, d_hidden = [None] * len(steps), [None] * len(steps)
        for t in _order(len(steps), not ctx.reverse):
            h_prev, r, z, n, h_n = steps[t]
            dh = dh + _at(g_out, t, time_dim)
            d_n = dh * (1 - z) * (1 - n * n)
            d_r = d_n * h_n * (r * (1 - r))
            d_z = dh * (h_prev - n) * (z * (1 - z))
            d_inputs[t] = xp.concatenate([d_r, d_z, d_n], axis=1)
            d_hidden[t] = xp.concatenate([d_r, d_z, d_n * r], axis=1)
            dh = dh * z + xp.matmul(d_hidden[t], w_hh)
        d_w, d_b = _weight_grads(xp, ctx, xp.stack(d_hidden, 0), xp.stack([s[0] for s in steps], 0))
        return xp.stack(d_inputs, time_dim), dh, d_w, d_b


def _gru_sequence(xp, xw, h0, w_hh, b_hh, time_dim, reverse):
    """The GRU loop on a GPU, a GEMM and one kernel a step: the gates r, z, n and the
    hidden part h_n, and the outputs, each stacked (T, B, H)."""
    steps, (batch, n) = xw.shape[time_dim], h0.shape
    gates = tuple(xp.empty((steps, batch, n), xw.dtype) for _ in range(4))
    outs = xp.empty((steps, batch, n), xw.dtype)
    w_hh_t, xw, h = xp.ascontiguousarray(w_hh.T), xp.ascontiguousarray(xw), xp.ascontiguousarray(h0)
    hg = xp.empty((batch, 3 * n), xw.dtype)
    for t in _order(steps, reverse):
        xp.matmul(h, w_hh_t, out=hg)
        rnn_cuda.gru_step(hg, b_hh, xw, t, time_dim, h, *(g[t] for g in gates), outs[t])
        h = outs[t]
    return gates, outs


def _gru_fused_backward(xp, ctx, w_hh, g_out, g_h):
    """GRULayer's backward after ``_gru_sequence``: one kernel and one GEMM a step."""
    gates, h_prev = ctx.gates, ctx.h_prev
    steps, batch, n = h_prev.shape
    d_input, d_hidden = (xp.empty((steps, batch, 3 * n), h_prev.dtype) for _ in range(2))
    g_out, dh = xp.ascontiguousarray(g_out), xp.ascontiguousarray(g_h)
    for t in _order(steps, not ctx.reverse):
        dh_next = xp.empty_like(dh)
        rnn_cuda.gru_step_backward(dh, g_out, t, ctx.time_dim, h_prev[t], *(g[t] for g in gates),
                                     d_input[t], d_hidden[t], dh_next)
        dh = cublas.matmul(d_hidden[t], w_hh, out=dh_next, accumulate=True)
    d_w, d_b = _weight_grads(xp, ctx, d_hidden, h_prev)
    d_xw = d_input if ctx.time_dim == 0 else xp.ascontiguousarray(d_input.swapaxes(0, 1))
    return d_xw, dh, d_w, d_b


def lstm_layer(xw, h0, c0, w_hh, b_hh, time_dim=0, reverse=False):
    """(outputs stacked along ``time_dim``, h_n, c_n) of one LSTM layer-direction."""
    return LSTMLayer.apply(xw, h0, c0, w_hh, b_hh, time_dim=time_dim, reverse=reverse)


def mkldnn_lstm_layer(x, h0, c0, w_ih, w_hh, b_ih, b_hh, time_dim=0, reverse=False):
    """``lstm_layer`` of the projection ``x @ w_ih.T + b_ih``, through oneDNN where it
    takes these tensors (float32 on the CPU, oneDNN present and on); else None."""
    if not onednn_rnn.applies(*(None if t is None else t._data for t in (x, h0, c0, w_ih, w_hh, b_ih, b_hh))):
        return None
    steps, batch = (x.shape[1], x.shape[0]) if time_dim == 1 else x.shape[:2]
    layer = onednn_rnn.lstm(steps, batch, x.shape[2], h0.shape[-1], reverse)
    if layer is None:
        return None
    return MkldnnRnnLayer.apply(x, h0, c0, w_ih, w_hh, b_ih, b_hh, time_dim=time_dim, reverse=reverse, layer=layer)


def gru_layer(xw, h0, w_hh, b_hh, time_dim=0, reverse=False):
    """(outputs stacked along ``time_dim``, h_n) of one GRU layer-direction."""
    return GRULayer.apply(xw, h0, w_hh, b_hh, time_dim=time_dim, reverse=reverse)

"""Stride-1 convolutions on a flat grid: the samples of a batch chunk are laid
out channel-major, row after row, with zero separator columns and rows between
them, and the whole grid is one flat array per channel. A kernel tap (i, j)
then reads the grid shifted by ``i * row + j`` elements, so im2col is KH*KW
copies of long contiguous runs, and entering and leaving NCHW move whole rows:
no element-by-element transposes. The price is the separators: the GEMM also
computes outputs on them, which are dropped: 6% more columns on 32x32 maps with
padding 1, 13% on 16x16. Past ``_MAX_EXTRA_COLUMNS`` the working layouts of
``im2col.py`` win, except for depthwise kernels, whose GEMMs are not the cost:
there the grid beat ``conv_direct.py``'s banded GEMM 1.4x on 4x4 maps, 2.6x
on 16x16 (fwd+bwd, 144-384 channels, batch 32).

The input gradient is itself such a convolution (of the output gradient by the
flipped, transposed kernel), so backward needs no col2im: its GEMM has
K = OC*KH*KW rather than K = OC, which OpenBLAS runs 1.3x faster at 32
channels. The weight gradient is the output gradient on the grid, zero on the
separators, times the input's windows; with both gradients asked for, that grid
is the one the input gradient's convolution entered, read in place (entered
once: MobileNet's conv backward 74-87 -> 68-69 ms a step, ResNets even).

A kernel padded to keep the map's size (ResNet's and MobileNet's 3x3, padding
1) needs no separators (``SameGrid``): the samples lie back to back and the
taps' reads that wrap past an edge are zeroed in ``col``, so the GEMM computes
only outputs and whole maps move in and out. Against the separators: ResNet-18's
128-channel 8x8 layers (27% separators, which had gone to ``im2col.py``) 11%
faster fwd+bwd, a small ResNet's 64-channel 16x16 ones 10%, its 32x32 ones even.

Strided kernels go on phase grids (``PhaseGrid``): the padded input split
into its stride x stride phases (every s-th row from row a, every s-th column
from column b), each phase one flat grid. Tap (i, j) reads one phase at a
fixed shift, so im2col is again KH*KW contiguous copies, and each phase's
input gradient a stride-1 correlation of the output gradient by the taps that
read it. On a small ResNet's stride-2 conv (32 -> 64 channels, 32x32) fwd+bwd
went from 29 to 21 ms; MobileNet's stride-2 depthwise layers' backward 1.2-1.6x
faster than the band of ``conv_direct.py``. The strided copies into the phases
run 16 elements at a time on 32x32 maps, about 6x slower per element than whole
rows: they are now the larger part of a strided depthwise layer.
"""

from .conv_direct import bias_grad
from ..threads import map_chunks
from .im2col import batch_chunks, chunk_sum, gemm_rows, scratch_array, weight_gemm

# The share of GEMM columns on separators past which im2col.py's layouts are faster:
# 13% (16x16 maps, padding 1) still gained 8-20%; the MNIST CNN's unpadded conv2
# (17%: 26x26 grid cells for 24x24 outputs) lost 13%, 8x8 maps (27%) 1-5%.
_MAX_EXTRA_COLUMNS = 0.15


class Grid:
    """Where ``n`` samples of an (h, w) map sit in the flat grid for one kernel and
    padding. Sample k's pixel (r, c) is at ``head + k * sample + r * row + c``;
    output (r, c) of sample k is column ``k * sample + r * row + c`` of a GEMM result."""

    def __init__(self, n, hw, kernel, dilation, padding):
        (h, w), (pt, pb), (pl, pr) = hw, *padding
        eh, ew = (d * (k - 1) + 1 for k, d in zip(kernel, dilation))
        self.kernel, self.dilation = kernel, dilation
        # One separator serves as one row's right padding and the next one's left
        self.row = w + max(pl, pr)
        self.rows = h + max(pt, pb)
        self.sample = self.rows * self.row
        self.head = pt * self.row + pl
        self.n, self.hw = n, (h, w)
        self.out_hw = (h + pt + pb - eh + 1, w + pl + pr - ew + 1)
        self.length = n * self.sample  # GEMM columns
        self.size = self.head + self.length + (eh - 1) * self.row + ew

    def enter(self, xp, x, slot):
        """(C, size): the chunk ``x`` (N, C, H, W) on the grid, zero elsewhere."""
        c = x.shape[1]
        (h, w), head = self.hw, self.head
        buf = scratch_array(xp, slot, (c, self.size), x.dtype)
        buf[:, :head] = 0
        buf[:, head + self.length:] = 0
        body = self._samples(buf[:, head:head + self.length])
        body[:, :, h:] = 0
        body[:, :, :h, w:] = 0
        body[:, :, :h, :w] = x.transpose(1, 0, 2, 3)
        return buf

    def unfold(self, xp, buf):
        """(C*KH*KW, length): tap (i, j) of every output's window, one row per tap."""
        c, (kh, kw), (dh, dw) = buf.shape[0], self.kernel, self.dilation
        s0, s1 = buf.strides
        windows = xp.lib.stride_tricks.as_strided(
            buf, (c, kh, kw, self.length), (s0, s1 * self.row * dh, s1 * dw, s1))
        col = gemm_rows(xp, "col", c * kh * kw, self.length, buf.dtype)
        xp.copyto(col.reshape(windows.shape), windows)
        return col

    def outputs(self, a):
        """The (C, N, OH, OW) outputs within a (C, length) GEMM result."""
        oh, ow = self.out_hw
        return self._samples(a)[:, :, :oh, :ow]

    def output_grid(self, xp, g, slot):
        """(C, length): the output gradient ``g`` (N, C, OH, OW) where the outputs
        sit, zero on the separators; ``slot`` names a scratch array, or is the
        (C, length) array to fill."""
        oh, ow = self.out_hw
        buf = gemm_rows(xp, slot, g.shape[1], self.length, g.dtype) if isinstance(slot, str) else slot
        grid = self._samples(buf)
        grid[:, :, oh:] = 0
        grid[:, :, :oh, ow:] = 0
        grid[:, :, :oh, :ow] = g.transpose(1, 0, 2, 3)
        return buf

    def _samples(self, a):
        return a.reshape(a.shape[0], self.n, self.rows, self.row)


class SameGrid(Grid):
    """A stride-1 kernel padded to keep the map's size: the chunk's samples back to
    back, channel-major, with no separators at all, so entering and leaving move
    whole maps and the GEMM computes no column it drops. Tap (i, j) reads the flat
    input shifted by ``di * W + dj``; its reads that wrap past a row's or a sample's
    edge, where the padding's zeros belong, are zeroed in its rows of ``col``."""

    def __init__(self, n, hw, kernel, dilation, padding):
        (h, w), (pt, pb), (pl, pr) = hw, *padding
        self.kernel, self.dilation = kernel, dilation
        self.n, self.hw, self.out_hw = n, hw, hw
        self.row, self.rows = w, h
        self.sample = h * w
        self.head = pt * w + pl
        self.length = n * self.sample
        self.size = self.head + self.length + pb * w + pr
        # tap (i, j) reads input (r + di, c + dj) for output (r, c)
        self.shifts = [[t * d - before for t in range(k)] for k, d, before in zip(kernel, dilation, (pt, pl))]

    def enter(self, xp, x, slot):
        c, head = x.shape[1], self.head
        buf = scratch_array(xp, slot, (c, self.size), x.dtype)
        buf[:, :head] = 0
        buf[:, head + self.length:] = 0
        buf[:, head:head + self.length].reshape(c, self.n, self.sample)[...] = \
            x.reshape(self.n, c, self.sample).transpose(1, 0, 2)
        return buf

    def unfold(self, xp, buf):
        col = super().unfold(xp, buf)
        (kh, kw), (h, w) = self.kernel, self.hw
        taps = col.reshape(buf.shape[0], kh, kw, self.n, h, w)
        for i, di in enumerate(self.shifts[0]):  # rows reading above the first or below the last
            if di:
                taps[:, i, :, :, _wrapped(di, h)] = 0
        for j, dj in enumerate(self.shifts[1]):  # columns reading left of the first or right of the last
            if dj:
                taps[:, :, j, :, :, _wrapped(dj, w)] = 0
        return col

    def outputs(self, a):
        return a.reshape(a.shape[0], self.n, *self.hw)

    def output_grid(self, xp, g, slot):
        c = g.shape[1]
        buf = gemm_rows(xp, slot, c, self.length, g.dtype)
        buf.reshape(c, self.n, self.sample)[...] = g.reshape(self.n, c, self.sample).transpose(1, 0, 2)
        return buf


class PhaseGrid(Grid):
    """A strided kernel's grid: one flat grid per phase of the padded input that
    some tap reads. Phase (a, b) holds padded pixel (s*k + a, s*l + b) of sample n
    at ``n * sample + k * row + l``, in planes of ``rows`` x ``row``: the outputs
    and, to their right and below, the reach of the kernel in the phase. Output
    (r, c) of sample n is column ``n * sample + r * row + c`` of a GEMM result,
    and tap (i, j) reads its phase at that column plus a fixed offset."""

    def __init__(self, n, hw, kernel, stride, dilation, padding):
        self.n = n
        reads = [[d * t for t in range(k)] for k, d in zip(kernel, dilation)]  # padded offsets per tap
        self.out_hw = tuple((p0 + size + p1 - r[-1] - 1) // s + 1
                            for size, r, s, (p0, p1) in zip(hw, reads, stride, padding))
        self.rows, self.row = (o + r[-1] // s for o, r, s in zip(self.out_hw, reads, stride))
        self.sample = self.rows * self.row
        self.length = n * self.sample
        self.phases = sorted({(ri % stride[0], ci % stride[1]) for ri in reads[0] for ci in reads[1]})
        self.taps = [(self.phases.index((ri % stride[0], ci % stride[1])), ri // stride[0] * self.row + ci // stride[1])
                     for ri in reads[0] for ci in reads[1]]
        self.size = self.length + max(offset for _, offset in self.taps)
        # per phase: the plane's (rows, columns) holding input, and the input's (rows, columns) there
        self.regions = [tuple(zip(*(_phase_span(a, s, p0, size, extent)
                                   for a, s, (p0, _), size, extent
                                   in zip(phase, stride, padding, hw, (self.rows, self.row)))))
                        for phase in self.phases]
        # phases are disjoint: they cover the input when their pixel counts add up to it
        read = sum((rows.stop - rows.start) * (cols.stop - cols.start) for (rows, cols), _ in self.regions)
        self.covers_input = read == hw[0] * hw[1]

    def enter(self, xp, x, slot):
        """(phases, C, size): the chunk ``x`` (N, C, H, W) on its phase grids, zero elsewhere."""
        buf = scratch_array(xp, slot, (len(self.phases), x.shape[1], self.size), x.dtype)
        buf[...] = 0
        for plane, (at, source) in zip(buf, self.regions):
            self._samples(plane[:, :self.length])[(slice(None), slice(None)) + at] = \
                x[(slice(None), slice(None)) + source].transpose(1, 0, 2, 3)
        return buf

    def unfold(self, xp, buf):
        """(C*KH*KW, length): tap t's reads in row t of each channel's KH*KW."""
        col = scratch_array(xp, "col", (buf.shape[1], len(self.taps), self.length), buf.dtype)
        for t, (phase, offset) in enumerate(self.taps):
            col[:, t] = buf[phase, :, offset:offset + self.length]
        return col.reshape(-1, self.length)

    def input_grad(self, xp, w, groups, g, out):
        """The input gradient of the chunk whose output gradient is ``g``, into ``out``
        (N, C, H, W). Each phase's share is a stride-1 correlation of ``g`` (on the
        grid) by the taps that read that phase, at the negated offsets: one GEMM of
        K = OC/groups * taps per phase, no col2im."""
        oc, cg = w.shape[:2]
        m, reach = oc // groups, max(offset for _, offset in self.taps)
        padded = scratch_array(xp, "gemm", (oc, reach + self.length), g.dtype)
        padded[:, :reach] = 0
        self.output_grid(xp, g, padded[:, reach:])
        padded = padded.reshape(groups, m, -1)
        w4 = w.reshape(groups, m, cg, -1)
        if not self.covers_input:
            out[...] = 0
        for p, (at, source) in enumerate(self.regions):
            taps = [(t, offset) for t, (phase, offset) in enumerate(self.taps) if phase == p]
            col = scratch_array(xp, "col", (groups, m, len(taps), self.length), g.dtype)
            for k, (_, offset) in enumerate(taps):
                col[:, :, k] = padded[:, :, reach - offset:reach - offset + self.length]
            wp = w4[..., [t for t, _ in taps]].transpose(0, 2, 1, 3).reshape(groups, cg, -1)
            plane = scratch_array(xp, "dst", (groups, cg, self.length), g.dtype)
            xp.matmul(wp, col.reshape(groups, m * len(taps), -1), out=plane)
            out[(slice(None), slice(None)) + source] = \
                self._samples(plane.reshape(groups * cg, -1))[(slice(None), slice(None)) + at].transpose(1, 0, 2, 3)


def _wrapped(shift, size):
    """The outputs along one dim whose read at ``shift`` falls outside the ``size`` inputs."""
    return slice(0, -shift) if shift < 0 else slice(max(size - shift, 0), size)


def _phase_span(a, stride, before, size, extent):
    """Along one dim, phase ``a``'s plane positions that hold input (k with
    0 <= stride*k + a - before < size, k < extent) and the input positions there."""
    first = max(0, -(-(before - a) // stride))
    stop = min(extent, (before + size - 1 - a) // stride + 1)
    stop = max(stop, first)
    start = stride * first + a - before
    return slice(first, stop), slice(start, start + stride * (stop - first - 1) + 1 if stop > first else start, stride)


def applies(x_shape, w_shape, geo):
    """A kernel larger than 1x1, at stride 1 with padding no wider than the
    kernel's reach (so separators can be shared and the input gradient's own
    padding is not negative), and few enough separator columns (none where the
    size is kept); depthwise kernels (whose GEMMs are not the cost) whatever the
    separators."""
    if geo.transposed or w_shape[2:] == (1, 1) or x_shape[0] == 0:
        return False
    if geo.stride == (1, 1) and any(p >= e for pads, e in zip(geo.padding, _extent(w_shape, geo)) for p in pads):
        return False
    grid = _grid(1, x_shape, w_shape, geo)
    outputs = grid.out_hw[0] * grid.out_hw[1]
    depthwise = 1 < geo.groups == x_shape[1]
    return depthwise or grid.sample <= (1 + _MAX_EXTRA_COLUMNS) * outputs


def _keeps_size(x_shape, w_shape, geo):
    """Stride 1, padded by exactly the kernel's reach: the output is the input's size."""
    return geo.stride == (1, 1) and all(before + after == e - 1
                                        for (before, after), e in zip(geo.padding, _extent(w_shape, geo)))


def _extent(w_shape, geo):
    return tuple(d * (k - 1) + 1 for k, d in zip(w_shape[2:], geo.dilation))


def forward(xp, x, w, b, geo):
    oc = w.shape[0]
    y = xp.empty((x.shape[0], oc) + _grid(1, x.shape, w.shape, geo).out_hw, x.dtype)

    def convolve(part):
        grid = _grid(part.stop - part.start, x.shape, w.shape, geo)
        _convolve_chunk(xp, grid, grid.enter(xp, x[part], "src"), w, geo.groups, b, y[part])

    map_chunks(xp, convolve, _batch_chunks(x, w.shape, geo))
    return y


def _convolve_chunk(xp, grid, buf, w, groups, b, y):
    """The outputs ``y`` (n, OC, OH, OW) of the chunk entered on ``grid`` as ``buf``."""
    oc, cg, kh, kw = w.shape
    col = grid.unfold(xp, buf)
    out = gemm_rows(xp, "gemm", oc, grid.length, buf.dtype).reshape(groups, oc // groups, -1)
    xp.matmul(w.reshape(groups, oc // groups, -1), col.reshape(groups, cg * kh * kw, -1), out=out)
    out = out.reshape(oc, -1)
    if b is not None:  # while the GEMM result is contiguous and in cache
        xp.add(out, b[:, None], out=out)
    y[...] = grid.outputs(out).transpose(1, 0, 2, 3)


def backward(xp, x, w, grad, geo, need_x, need_w, need_b):
    oc, cg, kh, kw = w.shape
    g = geo.groups
    gx = gw = g_bias = None
    if need_b:
        g_bias = bias_grad(xp, grad)
    if need_x and need_w and _shares_grid(x.shape, w.shape, geo):
        return (*_input_and_weight_grads(xp, x, w, grad, geo), g_bias)
    if need_x and geo.stride == (1, 1):
        gx = forward(xp, grad, _flipped_transposed(xp, w, g), None, _input_grad_geometry(w.shape, geo))
    elif need_x:
        gx = xp.empty(x.shape, x.dtype)

        def input_grad(part):
            _grid(part.stop - part.start, x.shape, w.shape, geo).input_grad(xp, w, g, grad[part], gx[part])

        map_chunks(xp, input_grad, _batch_chunks(x, w.shape, geo))
    if need_w:
        def weight_grad(part):
            grid, col = _windows(xp, x, part, w.shape, geo)
            gt = grid.output_grid(xp, grad[part], "gemm")
            return weight_gemm(xp, col.reshape(g, cg * kh * kw, -1), gt.reshape(g, oc // g, -1))

        gw = chunk_sum(map_chunks(xp, weight_grad, _batch_chunks(x, w.shape, geo))).reshape(w.shape)
    return gx, gw, g_bias


def _shares_grid(x_shape, w_shape, geo):
    """Stride 1, with the output gradient entered for the input gradient's
    convolution lying on the forward's grid, the separators zero: the weight
    gradient's GEMM then reads it there, and the gradient is entered once."""
    if geo.stride != (1, 1):
        return False
    grid = _grid(1, x_shape, w_shape, geo)
    ig_grid = _grid(1, (x_shape[0], w_shape[0]) + grid.out_hw, w_shape, _input_grad_geometry(w_shape, geo))
    return (grid.row, grid.sample) == (ig_grid.row, ig_grid.sample)


def _input_and_weight_grads(xp, x, w, grad, geo):
    """Both gradients a chunk at a time: the output gradient entered once, convolved
    for the input gradient and read in place as the weight gradient's operand."""
    oc, cg, kh, kw = w.shape
    groups = geo.groups
    wt, ig_geo = _flipped_transposed(xp, w, groups), _input_grad_geometry(w.shape, geo)
    gx = xp.empty(x.shape, x.dtype)
    per_sample = max(x.shape[1], oc) * kh * kw * _grid(1, x.shape, w.shape, geo).sample * x.itemsize

    def gradients(part):
        n = part.stop - part.start
        ig_grid = _grid(n, grad.shape, wt.shape, ig_geo)
        buf = ig_grid.enter(xp, grad[part], "src")
        _convolve_chunk(xp, ig_grid, buf, wt, groups, None, gx[part])
        gt = buf[:, ig_grid.head:ig_grid.head + ig_grid.length]
        grid = _grid(n, x.shape, w.shape, geo)
        col = grid.unfold(xp, grid.enter(xp, x[part], "src_x"))
        return weight_gemm(xp, col.reshape(groups, cg * kh * kw, -1), gt.reshape(groups, oc // groups, -1))

    gw = chunk_sum(map_chunks(xp, gradients, batch_chunks(x.shape[0], per_sample)))
    return gx, gw.reshape(w.shape)


def _grid(n, x_shape, w_shape, geo):
    if _keeps_size(x_shape, w_shape, geo):
        return SameGrid(n, x_shape[2:], w_shape[2:], geo.dilation, geo.padding)
    if geo.stride == (1, 1):
        return Grid(n, x_shape[2:], w_shape[2:], geo.dilation, geo.padding)
    return PhaseGrid(n, x_shape[2:], w_shape[2:], geo.stride, geo.dilation, geo.padding)


def _batch_chunks(x, w_shape, geo):
    col_bytes = x.shape[1] * w_shape[2] * w_shape[3] * _grid(1, x.shape, w_shape, geo).sample * x.itemsize
    return batch_chunks(x.shape[0], col_bytes)


def _windows(xp, x, part, w_shape, geo):
    """The grid of the batch chunk ``x[part]`` and its unfolded windows."""
    chunk = x[part]
    grid = _grid(chunk.shape[0], x.shape, w_shape, geo)
    return grid, grid.unfold(xp, grid.enter(xp, chunk, "src"))


def _flipped_transposed(xp, w, groups):
    """The kernel (C, OC/groups, KH, KW) whose convolution of the output gradient is
    the input gradient: each group's channels swapped, both spatial axes reversed."""
    oc, cg, kh, kw = w.shape
    wt = w.reshape(groups, oc // groups, cg, kh, kw).transpose(0, 2, 1, 3, 4)[..., ::-1, ::-1]
    return xp.ascontiguousarray(wt).reshape(groups * cg, oc // groups, kh, kw)


def _input_grad_geometry(w_shape, geo):
    """Padding by the kernel's reach less the forward padding: every input pixel
    then sees each output its window touched."""
    reach = [e - 1 for e in _extent(w_shape, geo)]
    padding = tuple((r - before, r - after) for r, (before, after) in zip(reach, geo.padding))
    return geo._replace(padding=padding)

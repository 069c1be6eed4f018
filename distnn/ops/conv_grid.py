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
separators, times the input's windows.
"""

from .conv_direct import bias_grad
from ..threads import map_chunks
from .im2col import batch_chunks, chunk_sum, scratch_array, weight_gemm

# The share of GEMM columns on separators past which im2col.py's layouts are faster:
# 13% (16x16 maps, padding 1) still gained 8-20%; the MNIST CNN's unpadded conv2
# (17%: 26x26 grid cells for 24x24 outputs) lost 13%, 8x8 maps (27%) 1-5%.
_MAX_EXTRA_COLUMNS = 0.15


class Grid:
    """Where ``n`` samples of an (h, w) map sit in the flat grid for one kernel and
    padding. Sample k's pixel (r, c) is at ``head + k * sample + r * row + c``;
    output (r, c) of sample k is column ``k * sample + r * row + c`` of a GEMM result."""

    def __init__(self, n, hw, kernel_extent, padding):
        (h, w), (eh, ew) = hw, kernel_extent
        (pt, pb), (pl, pr) = padding
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

    def unfold(self, xp, buf, kernel, dilation):
        """(C*KH*KW, length): tap (i, j) of every output's window, one row per tap."""
        c = buf.shape[0]
        s0, s1 = buf.strides
        windows = xp.lib.stride_tricks.as_strided(
            buf, (c, kernel[0], kernel[1], self.length),
            (s0, s1 * self.row * dilation[0], s1 * dilation[1], s1))
        col = scratch_array(xp, "col", windows.shape, buf.dtype)
        xp.copyto(col, windows)
        return col.reshape(-1, self.length)

    def outputs(self, a):
        """The (C, N, OH, OW) outputs within a (C, length) GEMM result."""
        oh, ow = self.out_hw
        return self._samples(a)[:, :, :oh, :ow]

    def output_grid(self, xp, g, slot):
        """(C, length): the output gradient ``g`` (N, C, OH, OW) where the outputs
        sit, zero on the separators."""
        oh, ow = self.out_hw
        buf = scratch_array(xp, slot, (g.shape[1], self.length), g.dtype)
        grid = self._samples(buf)
        grid[:, :, oh:] = 0
        grid[:, :, :oh, ow:] = 0
        grid[:, :, :oh, :ow] = g.transpose(1, 0, 2, 3)
        return buf

    def _samples(self, a):
        return a.reshape(a.shape[0], self.n, self.rows, self.row)


def applies(x_shape, w_shape, geo):
    """Stride 1, a kernel larger than 1x1, padding no wider than the kernel's reach
    (so separators can be shared and the input gradient's own padding is not
    negative), and few enough separator columns."""
    if geo.stride != (1, 1) or geo.transposed or w_shape[2:] == (1, 1) or x_shape[0] == 0:
        return False
    extent = _extent(w_shape, geo)
    if any(p >= e for pads, e in zip(geo.padding, extent) for p in pads):
        return False
    grid = _grid(1, x_shape, w_shape, geo)
    outputs = grid.out_hw[0] * grid.out_hw[1]
    depthwise = 1 < geo.groups == x_shape[1]
    return depthwise or grid.sample <= (1 + _MAX_EXTRA_COLUMNS) * outputs


def _extent(w_shape, geo):
    return tuple(d * (k - 1) + 1 for k, d in zip(w_shape[2:], geo.dilation))


def forward(xp, x, w, b, geo):
    oc, cg, kh, kw = w.shape
    g = geo.groups
    w3 = w.reshape(g, oc // g, cg * kh * kw)
    y = xp.empty((x.shape[0], oc) + _grid(1, x.shape, w.shape, geo).out_hw, x.dtype)

    def convolve(part):
        grid, col = _windows(xp, x, part, w.shape, geo)
        out = scratch_array(xp, "gemm", (g, oc // g, grid.length), x.dtype)
        xp.matmul(w3, col.reshape(g, cg * kh * kw, -1), out=out)
        out = out.reshape(oc, -1)
        if b is not None:  # while the GEMM result is contiguous and in cache
            xp.add(out, b[:, None], out=out)
        y[part] = grid.outputs(out).transpose(1, 0, 2, 3)

    map_chunks(xp, convolve, _batch_chunks(x, w.shape, geo))
    return y


def backward(xp, x, w, grad, geo, need_x, need_w, need_b):
    oc, cg, kh, kw = w.shape
    g = geo.groups
    gx = gw = g_bias = None
    if need_b:
        g_bias = bias_grad(xp, grad)
    if need_x:
        gx = forward(xp, grad, _flipped_transposed(xp, w, g), None, _input_grad_geometry(w.shape, geo))
    if need_w:
        def weight_grad(part):
            grid, col = _windows(xp, x, part, w.shape, geo)
            gt = grid.output_grid(xp, grad[part], "gemm")
            return weight_gemm(xp, col.reshape(g, cg * kh * kw, -1), gt.reshape(g, oc // g, -1))

        gw = chunk_sum(map_chunks(xp, weight_grad, _batch_chunks(x, w.shape, geo))).reshape(w.shape)
    return gx, gw, g_bias


def _grid(n, x_shape, w_shape, geo):
    return Grid(n, x_shape[2:], _extent(w_shape, geo), geo.padding)


def _batch_chunks(x, w_shape, geo):
    col_bytes = x.shape[1] * w_shape[2] * w_shape[3] * _grid(1, x.shape, w_shape, geo).sample * x.itemsize
    return batch_chunks(x.shape[0], col_bytes)


def _windows(xp, x, part, w_shape, geo):
    """The grid of the batch chunk ``x[part]`` and its unfolded windows."""
    chunk = x[part]
    grid = _grid(chunk.shape[0], x.shape, w_shape, geo)
    return grid, grid.unfold(xp, grid.enter(xp, chunk, "src"), w_shape[2:], geo.dilation)


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

"""The working layouts and scratch buffers behind ``conv.py``'s im2col + GEMM.

Each GEMM is one (C*KH*KW, cols) matrix product over a whole batch chunk rather
than N small ones, so its columns mix batch and spatial positions and the op works
in one of two channels-first layouts (inputs and outputs stay NCHW):

- batch last, (C, H, W, N): the im2col and col2im passes move contiguous runs of
  at least ``OW * N`` elements, but entering and leaving NCHW are element-by-element
  transposes;
- batch second, (C, N, H, W): entering and leaving NCHW move whole planes, while the
  im2col and col2im passes per kernel column run ``OW`` elements at a time.

``layout_for`` picks one per convolution. Batches run in chunks of about 2 MiB of
im2col matrix (one GEMM per chunk), which keeps each pass in cache.
"""

import threading


# --- scratch buffers ----------------------------------------------------------------

class _ScratchBuffers(threading.local):
    def __init__(self):
        self.buffers = {}


_scratch = _ScratchBuffers()
_SCRATCH_LIMIT_BYTES = 1 << 28  # larger temporaries are allocated fresh, not kept alive
# Per-core L2 is 1 MiB on the EPYC we benchmark on: 2 MiB chunks trained the MNIST ConvNet
# 4% faster than 8 MiB at batch 64 and 9% faster at batch 256; 1.5 MiB ran as fast, 3 MiB slower.
_CHUNK_BYTES = 2 << 20


def scratch_array(xp, slot, shape, dtype):
    """An uninitialised array that lives only inside one pass of one op.

    numpy has no caching allocator, and glibc hands multi-megabyte blocks back
    to the OS on free, so a fresh im2col matrix per call costs a page fault per
    4 KiB, which took longer than the GEMM. Reusing one buffer per role avoids
    that; CuPy's memory pool already recycles device memory, so it allocates.
    """
    size = 1
    for s in shape:
        size *= s
    if xp.__name__ != "numpy" or size * xp.dtype(dtype).itemsize > _SCRATCH_LIMIT_BYTES:
        return xp.empty(shape, dtype)
    key = (slot, xp.dtype(dtype))
    buf = _scratch.buffers.get(key)
    if buf is None or buf.size < size:
        buf = xp.empty(max(size, 1), dtype)
        _scratch.buffers[key] = buf
    return buf[:size].reshape(shape)


def gemm_rows(xp, slot, rows, length, dtype):
    """A (rows, length) scratch matrix for a GEMM operand or result. Rows a multiple
    of 4 KiB apart map onto the same cache sets: OpenBLAS ran (32, 288) @ (288, 2048)
    at 67 GF/s with both matrices so, 87-91 with rows 64 bytes longer, so such
    rows get that slack (the result is a view)."""
    pad = 16 if (length * xp.dtype(dtype).itemsize) % 4096 == 0 else 0
    buf = scratch_array(xp, slot, (rows, length + pad), dtype)
    return buf[:, :length] if pad else buf


# Below this many output channels per group the weight gradient is computed as
# (CKK, P) @ (P, OC): OpenBLAS is faster with the short side last (81 vs 54 GF/s
# for the 32-channel 3x3 layers of a small ResNet), and the transposed copy back
# is small. For ResNet-18's 512-channel layers that copy cost more than the GEMM.
_SHORT_SIDE_LAST_CHANNELS = 128


def weight_gemm(xp, col, gt):
    """A weight gradient's GEMM, (g, OC, CKK) = gt @ col^T; a transposed view of
    col @ gt^T when OC is small."""
    if gt.shape[1] < _SHORT_SIDE_LAST_CHANNELS:
        return xp.matmul(col, gt.transpose(0, 2, 1)).transpose(0, 2, 1)
    return xp.matmul(gt, col.transpose(0, 2, 1))


def batch_chunks(n, col_bytes_per_sample):
    """Equal slices of the batch whose im2col matrix stays within about ``_CHUNK_BYTES``:
    past the CPU caches, a bigger batch made every pass of a convolution slower per sample."""
    count = -(-n * col_bytes_per_sample // _CHUNK_BYTES)
    step = max(1, -(-n // max(count, 1)))
    return [slice(i, min(i + step, n)) for i in range(0, n, step)] or [slice(0, 0)]


def chunk_sum(parts):
    """The sum of per-chunk terms (``None`` where a chunk has none), added in batch
    order whichever thread computed them, so the result is the same at any thread
    count; ``None`` when there are no terms. Adds into the first term."""
    total = None
    for part in parts:
        if part is not None:
            total = part if total is None else total.__iadd__(part)
    return total


def _span(start, step, count):
    """The slice that picks ``count`` positions ``start, start + step, ...``."""
    return slice(start, start + step * (count - 1) + 1, step)


def _spans(kernel, dilation, stride, out_size):
    """Per kernel offset, the input positions its ``out_size`` windows read along one axis."""
    return [_span(k * dilation, stride, out_size) for k in range(kernel)]


def _overlap_add(out, axis, spans, piece):
    """``out`` = the sum of ``piece(k)`` placed at ``spans[k]`` along ``axis``, zero elsewhere.

    col2im sums the kernel rows, then the kernel columns (KH + KW adds of long runs rather
    than KH*KW of short ones: 0.21 vs 0.38 ms for the MNIST conv2's input gradient). The
    first piece is assigned, not added, when its span is one block starting at 0.
    """
    index = [slice(None)] * out.ndim
    first = spans[0]
    if first.step == 1:
        index[axis] = slice(first.stop, None)
        out[tuple(index)] = 0
        index[axis] = first
        out[tuple(index)] = piece(0)
    else:
        out.fill(0)
        index[axis] = first
        out[tuple(index)] += piece(0)
    for k in range(1, len(spans)):
        index[axis] = spans[k]
        out[tuple(index)] += piece(k)


# --- working layouts (all on raw arrays) ---------------------------------------------
#
# Both share one interface: ``enter`` copies (N, C, H, W) into the layout with zero
# borders; ``unfold`` (im2col) gives the (C*KH*KW, cols) matrix of windows and ``fold``
# (col2im) sums such a matrix back; ``grid`` views a (C, cols) GEMM result in the
# layout; ``leave`` writes a layout array into NCHW, cropped at ``offset``.

class BatchLast:
    """(C, H, W, N)."""

    @staticmethod
    def enter(xp, x, padding, slot):
        n, c, h, w = x.shape
        (pt, pb), (pl, pr) = padding
        out = scratch_array(xp, slot, (c, pt + h + pb, pl + w + pr, n), x.dtype)
        if pt or pb or pl or pr:
            out[:, :pt] = 0
            out[:, pt + h:] = 0
            out[:, :, :pl] = 0
            out[:, :, pl + w:] = 0
        out[:, pt:pt + h, pl:pl + w] = x.transpose(1, 2, 3, 0)
        return out

    @staticmethod
    def unfold(xp, xl, kernel, stride, dilation, out_hw, slot):
        c, _, _, n = xl.shape
        sc, sh, sw, sn = xl.strides
        windows = xp.lib.stride_tricks.as_strided(
            xl, (c, kernel[0], kernel[1], out_hw[0], out_hw[1], n),
            (sc, sh * dilation[0], sw * dilation[1], sh * stride[0], sw * stride[1], sn))
        col = scratch_array(xp, slot, windows.shape, xl.dtype)
        xp.copyto(col, windows)
        return col.reshape(c * kernel[0] * kernel[1], -1)

    @staticmethod
    def fold(xp, col, c, kernel, out_hw, padded_hw, stride, dilation, slot):
        (kh, kw), (oh, ow) = kernel, out_hw
        col = col.reshape(c, kh, kw, oh, ow, -1)
        n = col.shape[-1]
        rows = scratch_array(xp, "rows", (c, kw, padded_hw[0], ow, n), col.dtype)
        _overlap_add(rows, 2, _spans(kh, dilation[0], stride[0], oh), lambda i: col[:, i])
        out = scratch_array(xp, slot, (c, padded_hw[0], padded_hw[1], n), col.dtype)
        _overlap_add(out, 2, _spans(kw, dilation[1], stride[1], ow), lambda j: rows[:, j])
        return out

    @staticmethod
    def grid(a, c, hw):
        return a.reshape(c, hw[0], hw[1], -1)

    @staticmethod
    def leave(out, a, offset=(0, 0)):
        h, w = out.shape[2:]
        out[...] = a[:, offset[0]:offset[0] + h, offset[1]:offset[1] + w].transpose(3, 0, 1, 2)


class BatchSecond:
    """(C, N, H, W). ``unfold`` and ``fold`` go through a (C, KW, N, H, OW) scratch
    array of column-shifted copies (slot "rows"), so only KW passes run ``OW`` at a time."""

    @staticmethod
    def enter(xp, x, padding, slot):
        n, c, h, w = x.shape
        (pt, pb), (pl, pr) = padding
        out = scratch_array(xp, slot, (c, n, pt + h + pb, pl + w + pr), x.dtype)
        if pt or pb or pl or pr:
            out[:, :, :pt] = 0
            out[:, :, pt + h:] = 0
            out[..., :pl] = 0
            out[..., pl + w:] = 0
        out[:, :, pt:pt + h, pl:pl + w] = x.transpose(1, 0, 2, 3)
        return out

    @staticmethod
    def unfold(xp, xl, kernel, stride, dilation, out_hw, slot):
        c, n, h, _ = xl.shape
        (kh, kw), (oh, ow) = kernel, out_hw
        rows = scratch_array(xp, "rows", (c, kw, n, h, ow), xl.dtype)
        for j in range(kw):
            rows[:, j] = xl[..., _span(j * dilation[1], stride[1], ow)]
        col = scratch_array(xp, slot, (c, kh, kw, n, oh, ow), xl.dtype)
        for i in range(kh):
            col[:, i] = rows[:, :, :, _span(i * dilation[0], stride[0], oh)]
        return col.reshape(c * kh * kw, -1)

    @staticmethod
    def fold(xp, col, c, kernel, out_hw, padded_hw, stride, dilation, slot):
        (kh, kw), (oh, ow) = kernel, out_hw
        col = col.reshape(c, kh, kw, -1, oh, ow)
        n = col.shape[3]
        rows = scratch_array(xp, "rows", (c, kw, n, padded_hw[0], ow), col.dtype)
        _overlap_add(rows, 3, _spans(kh, dilation[0], stride[0], oh), lambda i: col[:, i])
        out = scratch_array(xp, slot, (c, n) + tuple(padded_hw), col.dtype)
        _overlap_add(out, 3, _spans(kw, dilation[1], stride[1], ow), lambda j: rows[:, j])
        return out

    @staticmethod
    def grid(a, c, hw):
        return a.reshape(c, -1, hw[0], hw[1])

    @staticmethod
    def leave(out, a, offset=(0, 0)):
        h, w = out.shape[2:]
        out[...] = a[:, :, offset[0]:offset[0] + h, offset[1]:offset[1] + w].transpose(1, 0, 2, 3)


def layout_for(unfolded_channels, gemm_channels, kernel_w):
    """Batch last transposes the GEMM side's ``gemm_channels`` planes one element at a time;
    batch second copies the unfolded side ``kernel_w`` times in runs of ``OW``. Forward and
    backward at batch 64: the MNIST conv1 (1 -> 10 channels, 5x5) took 1.8 ms in batch
    second and 2.3 in batch last, its conv2 (10 -> 20) 3.0 and 2.2; over eleven layer shapes
    this rule picked the faster layout or one within 3% of it."""
    return BatchSecond if gemm_channels > unfolded_channels * kernel_w else BatchLast

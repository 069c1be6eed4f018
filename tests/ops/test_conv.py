"""Convolutions: gradcheck and torch comparison over stride/padding/dilation/groups
combinations (contiguous and non-contiguous inputs) in both working layouts,
unbatched input, node names, scratch-buffer safety, and PyTorch's error messages."""

import numpy as np
import pytest

import distnn
import distnn.nn.functional  # noqa: F401  (makes distnn.nn available as lib.nn)
import distnn.ops.conv as conv_module
import distnn.ops.conv_grid as conv_grid
import distnn.ops.im2col as im2col
from conv_cases import (CONV1D_CASES, CONV2D_CASES, CONV_TRANSPOSE1D_CASES, CONV_TRANSPOSE2D_CASES,
                        MODERATE_CONV2D_CASES, conv_call as _call, conv_inputs as _inputs)
from op_check import check_op, compare_with_torch, make_input, requires_torch

try:
    import torch
except ImportError:
    torch = None

# torch warns that it pads a copy of the input for 'same' with even kernels; we test that case on purpose
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")


@pytest.fixture(autouse=True)
def own_paths(monkeypatch):
    """This module tests distnn's own convolution paths (im2col, grids, direct);
    test_conv_onednn.py runs the same cases through oneDNN."""
    monkeypatch.setattr(distnn.backends.mkldnn, "enabled", False)


LAYOUTS = [im2col.BatchLast, im2col.BatchSecond, conv_grid.Grid, conv_grid.SameGrid]


@pytest.fixture(params=LAYOUTS, ids=lambda layout: layout.__name__)
def layout(request, monkeypatch):
    """Every convolution in the test runs in this working layout, whatever the shapes;
    with the grids, every one they can take (stride 1, or strided on phase grids)
    runs there, however narrow: with ``Grid``, size-keeping ones too (on separators),
    with ``SameGrid`` those on their own layout."""
    if request.param in (conv_grid.Grid, conv_grid.SameGrid):
        monkeypatch.setattr(conv_grid, "_MAX_EXTRA_COLUMNS", float("inf"))
        if request.param is conv_grid.Grid:
            monkeypatch.setattr(conv_grid, "_keeps_size", lambda *shapes: False)
    else:
        monkeypatch.setattr(conv_grid, "applies", lambda *shapes: False)
        monkeypatch.setattr(conv_module, "layout_for", lambda *shape: request.param)
    return request.param




@pytest.mark.parametrize("x_shape,w_shape,bias,kwargs", CONV2D_CASES)
def test_conv2d(layout, x_shape, w_shape, bias, kwargs):
    out_channels = w_shape[0]
    check_op(_call("conv2d", kwargs), _inputs(x_shape, w_shape, out_channels if bias else 0))


@pytest.mark.parametrize("x_shape,w_shape,bias,kwargs", [
    ((2, 3, 4, 4), (4, 3, 1, 1), True, {}),
    ((2, 3, 5, 4), (2, 3, 1, 1), False, {"stride": 2}),
    ((1, 2, 5, 7), (3, 2, 1, 1), True, {"stride": (2, 3)}),
])
def test_pointwise_conv2d(monkeypatch, x_shape, w_shape, bias, kwargs):
    """1x1 convolutions as per-sample GEMMs (the size threshold lowered so tiny shapes take that path)."""
    monkeypatch.setattr(conv_module.conv_direct, "_MIN_POSITIONS", 1)
    assert conv_module.conv_direct.is_pointwise(x_shape, w_shape, conv_module._check_and_normalise(
        "conv2d", distnn.zeros(*x_shape), distnn.zeros(*w_shape), None, kwargs.get("stride", 1), 0, 1, 1,
        False, 0, 2))
    check_op(_call("conv2d", kwargs), _inputs(x_shape, w_shape, w_shape[0] if bias else 0))




@pytest.mark.parametrize("x_shape,w_shape,bias,kwargs", CONV1D_CASES)
def test_conv1d(layout, x_shape, w_shape, bias, kwargs):
    check_op(_call("conv1d", kwargs), _inputs(x_shape, w_shape, w_shape[0] if bias else 0))


@pytest.mark.parametrize("x_shape,w_shape,bias,kwargs", CONV_TRANSPOSE2D_CASES)
def test_conv_transpose2d(layout, x_shape, w_shape, bias, kwargs):
    out_channels = w_shape[1] * kwargs.get("groups", 1)
    check_op(_call("conv_transpose2d", kwargs), _inputs(x_shape, w_shape, out_channels if bias else 0))


@pytest.mark.parametrize("x_shape,w_shape,kwargs", CONV_TRANSPOSE1D_CASES)
def test_conv_transpose1d(layout, x_shape, w_shape, kwargs):
    out_channels = w_shape[1] * kwargs.get("groups", 1)
    check_op(_call("conv_transpose1d", kwargs), _inputs(x_shape, w_shape, out_channels))


@pytest.mark.parametrize("name,x_shape,w_shape", [
    ("conv2d", (3, 5, 6), (2, 3, 3, 3)),
    ("conv1d", (3, 7), (2, 3, 3)),
    ("conv_transpose2d", (3, 4, 4), (3, 2, 3, 3)),
])
def test_unbatched_input(name, x_shape, w_shape):
    check_op(_call(name, {"padding": 1}), _inputs(x_shape, w_shape, 0))
    x = distnn.randn(*x_shape, requires_grad=True)
    out = getattr(distnn.nn.functional, name)(x, distnn.randn(*w_shape), padding=1)
    assert out.dim() == len(x_shape)
    assert type(out.grad_fn).__name__ == "SqueezeBackward1"  # as PyTorch: a batch of one, squeezed


@pytest.mark.parametrize("requires_grad", [[False, True, True], [True, False, False], [False, False, True],
                                           [True, True, False]])
def test_partial_requires_grad(layout, requires_grad):
    arrays = _inputs((2, 3, 6, 6), (4, 3, 3, 3), 4)
    check_op(_call("conv2d", {"stride": 2, "padding": 1}), arrays, requires_grad=requires_grad)
    check_op(_call("conv_transpose2d", {"stride": 2}), _inputs((2, 3, 4, 4), (3, 2, 3, 3), 2),
             requires_grad=requires_grad)


@requires_torch
@pytest.mark.parametrize("x_shape,w_shape,kwargs", MODERATE_CONV2D_CASES)
def test_conv2d_moderate_shapes_match_torch(layout, x_shape, w_shape, kwargs):
    # the weight gradient sums thousands of float32 products: round-off, not a bug, sets atol
    compare_with_torch(_call("conv2d", kwargs), _inputs(x_shape, w_shape, w_shape[0]), rtol=1e-4, atol=2e-4)


@requires_torch
def test_conv_transpose2d_moderate_shape_matches_torch(layout):
    compare_with_torch(_call("conv_transpose2d", {"stride": 2, "padding": 1, "output_padding": 1}),
                       _inputs((4, 16, 7, 7), (16, 8, 3, 3), 8), rtol=1e-4, atol=2e-4)


@pytest.mark.parametrize("name,x_shape,w_shape", [
    ("conv2d", (2, 3, 8, 8), (4, 3, 3, 3)),
    ("conv_transpose2d", (2, 3, 8, 8), (3, 4, 3, 3)),
])
def test_grad_fn_name_and_dtype(name, x_shape, w_shape):
    fn = getattr(distnn.nn.functional, name)
    for dtype in (distnn.float32, distnn.float64):
        x = distnn.randn(*x_shape, dtype=dtype, requires_grad=True)
        out = fn(x, distnn.randn(*w_shape, dtype=dtype))
        assert type(out.grad_fn).__name__ == "ConvolutionBackward0"
        assert out.dtype == dtype
        assert out.is_contiguous()


def test_outputs_and_grads_do_not_share_scratch_memory(layout):
    """Two same-shaped convolutions before one backward: each keeps its own values."""
    w = distnn.randn(4, 3, 3, 3, requires_grad=True)
    x1 = distnn.randn(2, 3, 8, 8, requires_grad=True)
    x2 = distnn.randn(2, 3, 8, 8, requires_grad=True)
    y1 = distnn.nn.functional.conv2d(x1, w, padding=1)
    first = y1.detach().numpy().copy()
    y2 = distnn.nn.functional.conv2d(x2, w, padding=1)
    np.testing.assert_array_equal(y1.detach().numpy(), first)
    (y1.sum() + (y2 * 2).sum()).backward()
    g1 = x1.grad.numpy().copy()
    x1.grad = None
    y1b = distnn.nn.functional.conv2d(x1, w, padding=1)
    y1b.sum().backward()
    np.testing.assert_allclose(x1.grad.numpy(), g1, rtol=1e-6)
    np.testing.assert_allclose(x2.grad.numpy(), 2 * g1, rtol=1e-5)  # same weight, same geometry


@requires_torch
@pytest.mark.parametrize("chunk_bytes", [None, 1])
@pytest.mark.parametrize("name,x_shape,w_shape,kwargs", [
    ("conv2d", (3, 1, 9, 8), (4, 1, 3, 3), {"padding": 1}),
    ("conv2d", (3, 4, 7, 7), (6, 2, 3, 3), {"stride": 2, "groups": 2}),
    ("conv_transpose2d", (3, 4, 4, 4), (4, 3, 3, 3), {"stride": 2, "padding": 1, "groups": 2}),
])
def test_two_forwards_then_two_backwards(layout, monkeypatch, chunk_bytes, name, x_shape, w_shape, kwargs):
    """Scratch buffers reused between passes never hold what a later backward still needs:
    each graph's gradients match torch after another same-shaped graph ran in between."""
    if chunk_bytes is not None:
        monkeypatch.setattr(im2col, "_CHUNK_BYTES", chunk_bytes)
    fn = _call(name, kwargs)
    results = {}
    for lib in (distnn, torch):
        w = lib.tensor(make_input(w_shape, seed=2, dtype=np.float32), requires_grad=True)
        xs = [lib.tensor(make_input(x_shape, seed=s, dtype=np.float32), requires_grad=True) for s in (4, 5)]
        ys = [fn(lib, x, w) for x in xs]
        grads = []
        for y, scale in zip(ys, (1.0, -3.0)):
            w.grad = None
            (y * lib.tensor(make_input(tuple(y.shape), seed=6, dtype=np.float32)) * scale).sum().backward()
            grads.append(w.grad.numpy().copy())
        results[lib.__name__] = [y.detach().numpy() for y in ys] + [x.grad.numpy() for x in xs] + grads
    for ours, theirs in zip(results["distnn"], results["torch"]):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)


@requires_torch
@pytest.mark.parametrize("setting", [("_CHUNK_BYTES", 1), ("_SCRATCH_LIMIT_BYTES", 0)])
def test_batch_chunks_and_unpooled_scratch(layout, monkeypatch, setting):
    """One sample per chunk (gradients summed over chunks), and scratch arrays allocated fresh."""
    monkeypatch.setattr(im2col, *setting)
    compare_with_torch(_call("conv2d", {"stride": 2, "padding": 1, "groups": 2}),
                       _inputs((3, 4, 7, 7), (6, 2, 3, 3), 6))
    compare_with_torch(_call("conv2d", {"padding": (2, 1), "groups": 2}), _inputs((3, 4, 7, 7), (6, 2, 3, 3), 6))
    compare_with_torch(_call("conv_transpose2d", {"stride": 2, "padding": 1, "groups": 2}),
                       _inputs((3, 4, 4, 4), (4, 3, 3, 3), 6))


@pytest.mark.parametrize("x_shape,w_shape,kwargs,grid", [
    ((2, 32, 32, 32), (32, 32, 3, 3), {"padding": 1}, True),
    ((2, 8, 1, 64), (8, 8, 1, 5), {"padding": (0, 2)}, True),  # conv1d over a long sequence
    ((2, 32, 32, 32), (32, 32, 3, 3), {"padding": 1, "stride": 2}, True),  # phase grids: 13% separators
    ((2, 32, 8, 8), (32, 32, 3, 3), {"padding": 1, "stride": 2}, False),  # 56%
    ((2, 3, 64, 64), (64, 3, 7, 7), {"padding": 3, "stride": 2}, False),  # ResNet's stem: 20%
    ((2, 96, 8, 8), (96, 1, 3, 3), {"padding": 1, "stride": 2, "groups": 96}, True),  # depthwise
    ((2, 32, 8, 8), (32, 32, 3, 3), {"padding": 1}, True),  # keeps the size: no separators at all
    ((2, 32, 8, 8), (32, 32, 3, 3), {"padding": (1, 0)}, False),  # 8x6 outputs: 27% separators
    ((2, 32, 26, 26), (64, 32, 3, 3), {}, False),  # unpadded: 17% of the grid is past the outputs
    ((2, 32, 8, 8), (32, 1, 3, 3), {"padding": 1, "groups": 32}, True),  # depthwise: the GEMMs are cheap
    ((2, 32, 32, 32), (32, 32, 3, 3), {"padding": 3}, False),  # padding past the kernel's reach
    ((2, 32, 32, 32), (32, 32, 1, 1), {}, False),
])
def test_flat_grid_takes_convolutions_on_wide_maps(x_shape, w_shape, kwargs, grid):
    geometry = conv_module._check_and_normalise("conv2d", distnn.zeros(*x_shape), distnn.zeros(*w_shape), None,
                                                kwargs.get("stride", 1), kwargs.get("padding", 0), 1,
                                                kwargs.get("groups", 1), False, 0, 2)
    assert conv_grid.applies(x_shape, w_shape, geometry) == grid


@requires_torch
@pytest.mark.parametrize("x_shape,w_shape,kwargs", [
    ((2, 3, 9, 11), (3, 1, 3, 3), {"stride": 2, "padding": 1, "groups": 3}),
    ((2, 2, 10, 9), (6, 1, 2, 3), {"stride": (3, 2), "padding": (0, 2), "groups": 2}),  # multiplier 3
    ((1, 2, 11, 10), (2, 1, 3, 2), {"stride": 3, "dilation": 2, "padding": 1, "groups": 2}),
    ((2, 2, 7, 7), (2, 1, 2, 2), {"stride": 3, "groups": 2}),  # pixels no tap reads: zero gradient
    ((2, 2, 5, 6), (2, 1, 3, 3), {"stride": 2, "padding": 3, "groups": 2}),  # padding past the reach
    ((2, 3, 12, 12), (4, 3, 3, 3), {"stride": 2, "padding": 1}),
    ((2, 4, 9, 8), (6, 2, 5, 3), {"stride": (2, 3), "padding": (2, 1), "groups": 2}),
])
def test_phase_grids_match_torch(monkeypatch, x_shape, w_shape, kwargs):
    """Strided convolutions on phase grids, whatever their separators."""
    monkeypatch.setattr(conv_grid, "_MAX_EXTRA_COLUMNS", float("inf"))
    geometry = conv_module._check_and_normalise(
        "conv2d", distnn.zeros(*x_shape), distnn.zeros(*w_shape), None, kwargs["stride"], kwargs.get("padding", 0),
        kwargs.get("dilation", 1), kwargs.get("groups", 1), False, 0, 2)
    assert conv_grid.applies(x_shape, w_shape, geometry)
    compare_with_torch(_call("conv2d", kwargs), _inputs(x_shape, w_shape, w_shape[0]))


@requires_torch
@pytest.mark.parametrize("chunk_bytes", [None, 1])
@pytest.mark.parametrize("x_shape,w_shape,kwargs", [
    ((2, 3, 9, 11), (4, 3, 3, 3), {"padding": 1}),
    ((3, 2, 5, 6), (4, 2, 2, 4), {"padding": "same"}),  # even kernels: asymmetric padding
    ((2, 2, 7, 5), (2, 2, 3, 2), {"padding": "same", "dilation": (3, 2)}),
    ((2, 2, 1, 3), (2, 2, 5, 5), {"padding": 2}),  # reads past every edge, both ways
    ((2, 4, 6, 6), (4, 1, 3, 3), {"padding": 1, "groups": 4}),  # depthwise
    ((1, 2, 32, 32), (3, 2, 3, 3), {"padding": 1}),  # 4 KiB rows: GEMM operands get slack
])
def test_same_grids_match_torch(monkeypatch, x_shape, w_shape, kwargs, chunk_bytes):
    """Size-keeping stride-1 convolutions on the grid without separators, with the
    reads that wrap past an edge zeroed; one sample per chunk too."""
    if chunk_bytes:
        monkeypatch.setattr(im2col, "_CHUNK_BYTES", chunk_bytes)
    geometry = conv_module._check_and_normalise(
        "conv2d", distnn.zeros(*x_shape), distnn.zeros(*w_shape), None, 1, kwargs["padding"],
        kwargs.get("dilation", 1), kwargs.get("groups", 1), False, 0, 2)
    assert conv_grid.applies(x_shape, w_shape, geometry)
    assert isinstance(conv_grid._grid(1, x_shape, w_shape, geometry), conv_grid.SameGrid)
    # float32 sums over up to 2048 terms in another order than PyTorch's
    compare_with_torch(_call("conv2d", kwargs), _inputs(x_shape, w_shape, w_shape[0]), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kwargs,shared", [
    ({"padding": 1}, True), ({}, True), ({"padding": (1, 0)}, True), ({"padding": 1, "stride": 2}, False)])
def test_backward_enters_the_output_gradient_once(monkeypatch, kwargs, shared):
    """Stride 1: the output gradient entered for the input gradient's convolution is
    read in place by the weight gradient's GEMM: two grids entered per chunk, not three."""
    monkeypatch.setattr(conv_grid, "_MAX_EXTRA_COLUMNS", float("inf"))
    x_shape, w_shape = (3, 4, 9, 8), (6, 4, 3, 3)
    geometry = conv_module._check_and_normalise(
        "conv2d", distnn.zeros(*x_shape), distnn.zeros(*w_shape), None, kwargs.get("stride", 1),
        kwargs.get("padding", 0), 1, 1, False, 0, 2)
    assert conv_grid._shares_grid(x_shape, w_shape, geometry) == shared
    x, w = make_input(x_shape, seed=1).astype(np.float32), make_input(w_shape, seed=2).astype(np.float32)
    g = make_input(conv_module._convolve(np, x, w, None, geometry).shape, seed=3).astype(np.float32)
    entered = []
    for grid_class in (conv_grid.Grid, conv_grid.SameGrid, conv_grid.PhaseGrid):
        enter = grid_class.__dict__["enter"]
        monkeypatch.setattr(grid_class, "enter", lambda self, *a, _enter=enter: entered.append(1) or _enter(self, *a))
    gx, gw, _ = conv_module._gradients(np, x, w, g, geometry, True, True, False)
    if shared:
        assert len(entered) == 2 * len(conv_grid._batch_chunks(x, w_shape, geometry))
        monkeypatch.setattr(conv_grid, "_shares_grid", lambda *shapes: False)
        apart = conv_module._gradients(np, x, w, g, geometry, True, True, False)
        np.testing.assert_allclose(gx, apart[0], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(gw, apart[1], rtol=1e-6, atol=1e-6)


def test_empty_batch():
    out = distnn.nn.functional.conv2d(distnn.randn(0, 3, 8, 8), distnn.randn(4, 3, 3, 3))
    assert tuple(out.shape) == (0, 4, 6, 6)


def _conv(name, x_shape, w_shape, *args, dtype=None, **kwargs):
    """A call that should fail, built against ``lib`` (distnn or torch)."""
    def call(lib):
        x = lib.randn(*x_shape, dtype=dtype or lib.float32)
        return getattr(lib.nn.functional, name)(x, lib.randn(*w_shape), *[lib.randn(*a) for a in args], **kwargs)
    return call


# (call, exception, message, PyTorch raises the same message)
ERROR_CASES = [
    (_conv("conv2d", (1, 3, 28, 28), (10, 1, 5, 5)), RuntimeError,
     r"Given groups=1, weight of size \[10, 1, 5, 5\], expected input\[1, 3, 28, 28\] to have 1 channels, "
     r"but got 3 channels instead", True),
    (_conv("conv2d", (3, 28, 28), (10, 1, 5, 5)), RuntimeError,
     r"expected input\[1, 3, 28, 28\] to have 1 channels, but got 3 channels", True),
    (_conv("conv2d", (28, 28), (10, 1, 5, 5)), RuntimeError,
     r"Expected 3D \(unbatched\) or 4D \(batched\) input to conv2d, but got input of size: \[28, 28\]", True),
    (_conv("conv1d", (2, 1, 28, 28), (3, 1, 3)), RuntimeError,
     r"Expected 2D \(unbatched\) or 3D \(batched\) input to conv1d, but got input of size: \[2, 1, 28, 28\]",
     True),
    (_conv("conv2d", (2, 1, 8, 8), (3, 1, 3)), RuntimeError,
     r"Expected 4-dimensional weight for 4-dimensional input \[2, 1, 8, 8\], but got 3-dimensional weight "
     r"of size \[3, 1, 3\]", False),
    (_conv("conv2d", (2, 1, 8, 8), (3, 1, 3, 3), stride=2, padding="same"), RuntimeError,
     "padding='same' is not supported for strided convolutions", True),
    (_conv("conv2d", (2, 1, 8, 8), (3, 1, 3, 3), padding="foo"), RuntimeError, "Invalid padding string: 'foo'",
     True),
    (_conv("conv2d", (2, 1, 4, 4), (3, 1, 5, 5)), RuntimeError,
     r"Calculated padded input size per channel: \(4 x 4\). Kernel size: \(5 x 5\). Kernel size can't be "
     r"greater than actual input size", True),
    (_conv("conv2d", (2, 1, 8, 8), (3, 1, 3, 3), dtype=distnn.float64), RuntimeError,
     r"Input type \(torch.float64\) and weight type \(torch.float32\) should be the same", False),
    (_conv("conv2d", (2, 1, 8, 8), (3, 1, 3, 3), (4,)), RuntimeError,
     r"Given weight of size \[3, 1, 3, 3\], expected bias to be 1-dimensional with 3 elements, but got bias "
     r"of size \[4\] instead", True),
    (_conv("conv2d", (2, 6, 8, 8), (4, 2, 3, 3), groups=3), RuntimeError,
     r"Given groups=3, expected weight to be divisible by 3 at dimension 0, but got weight of size", True),
    (_conv("conv2d", (2, 4, 8, 8), (6, 2, 3, 3), groups=3), RuntimeError,
     r"Given groups=3, weight of size \[6, 2, 3, 3\], expected input\[2, 4, 8, 8\] to have 6 channels", True),
    (_conv("conv2d", (2, 1, 8, 8), (3, 1, 3, 3), stride=0), RuntimeError, "non-positive stride is not supported",
     True),
    (_conv("conv2d", (2, 1, 8, 8), (3, 1, 3, 3), padding=-1), RuntimeError, "negative padding is not supported",
     True),
    (_conv("conv2d", (2, 1, 8, 8), (3, 1, 3, 3), dilation=0), RuntimeError,
     "non-positive dilation is not supported", True),
    (_conv("conv2d", (2, 1, 8, 8), (3, 1, 3, 3), stride=(1, 2, 3)), RuntimeError,
     r"expected stride to be a single integer value or a list of 2 values to match the convolution "
     r"dimensions, but got stride=\[1, 2, 3\]", True),
    (_conv("conv_transpose2d", (2, 3, 8, 8), (2, 4, 3, 3)), RuntimeError,
     r"Given transposed=1, weight of size \[2, 4, 3, 3\], expected input\[2, 3, 8, 8\] to have 2 channels, "
     r"but got 3 channels instead", True),
    (_conv("conv_transpose2d", (2, 3, 8, 8), (3, 4, 3, 3), stride=2, output_padding=2), RuntimeError,
     "output padding must be smaller than either stride or dilation", True),
    (_conv("conv_transpose2d", (2, 3, 8, 8), (3, 4, 3, 3), padding="same"), TypeError,
     r"conv_transpose2d\(\): argument 'padding' must be tuple of ints, not str", True),
    (_conv("conv_transpose2d", (2, 3, 1, 1), (3, 4, 1, 1), padding=1), RuntimeError,
     r"Given input size per channel: \(1 x 1\). Calculated output size per channel: \(-1 x -1\). "
     r"Output size is too small", False),
]


@pytest.mark.parametrize("call,exc,match,same_in_torch", ERROR_CASES)
def test_errors(call, exc, match, same_in_torch):
    with pytest.raises(exc, match=match):
        call(distnn)


@requires_torch
@pytest.mark.parametrize("call,exc,match", [c[:3] for c in ERROR_CASES if c[3]])
def test_messages_are_pytorchs(call, exc, match):
    with pytest.raises(exc, match=match):
        call(torch)


@requires_torch
def test_cropped_geometries_match_torch():
    """Random small geometries, many of whose taps or rows only meet padding: the
    cropped convolution's output and gradients equal PyTorch's full one."""
    assert conv_module._crop_to_reads((2, 3, 1, 1), (4, 3, 3, 3), conv_module.Geometry(
        (1, 1), ((1, 1), (1, 1)), (1, 1), 1, False, (0, 0))).w == (slice(None), slice(None), slice(1, 2), slice(1, 2))
    # a dim with a single output needs no stride (ResNet's 1x1 stride-2 shortcut on a 2x2 map)
    shortcut = conv_module._crop_to_reads((2, 3, 2, 2), (4, 3, 1, 1), conv_module.Geometry(
        (2, 2), ((0, 0), (0, 0)), (1, 1), 1, False, (0, 0)))
    assert shortcut.geometry.stride == (1, 1) and shortcut.x[2:] == (slice(0, 1), slice(0, 1))
    rng, compared = np.random.default_rng(5), 0
    while compared < 60:
        k, d, s = rng.integers(1, 4, size=(3, 2))
        size = rng.integers(1, 5, size=2)
        pad = rng.integers(0, 4, size=2)
        if any((size + 2 * pad - d * (k - 1) - 1) < 0):
            continue
        x = make_input((2, 3, *size), seed=int(rng.integers(1 << 30)))
        w = make_input((4, 3, *k), seed=int(rng.integers(1 << 30)))
        kwargs = {"stride": tuple(s), "padding": tuple(pad), "dilation": tuple(d)}
        compare_with_torch(_call("conv2d", kwargs), [x, w])
        compared += 1

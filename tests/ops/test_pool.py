"""Pooling: gradcheck and torch comparison over kernel/stride/padding/dilation/
ceil_mode/count_include_pad combinations (contiguous and non-contiguous),
first-max tie breaking and NaN handling, returned indices, unbatched and 1-D
input, node names, and PyTorch's error messages."""

import numpy as np
import pytest

import distnn
import distnn.nn.functional  # noqa: F401  (makes distnn.nn available as lib.nn)
from op_check import check_op, compare_with_torch, make_input, requires_torch

try:
    import torch
except ImportError:
    torch = None


def _pool(name, *args, **kwargs):
    def fn(lib, x):
        return getattr(lib.nn.functional, name)(x, *args, **kwargs)
    return fn


# (input shape, args, kwargs); 2 planes of at most 7x7 keep gradcheck quick
MAX_POOL2D_CASES = [
    ((2, 2, 6, 6), (2,), {}),  # windows tile the input: the fast path
    ((2, 2, 6, 9), ((2, 3),), {}),
    ((1, 2, 6, 6), (3,), {}),
    ((2, 2, 6, 4), ((3, 2), (3, 2)), {}),
    ((1, 2, 7, 7), (2,), {}),  # last row/column left out
    ((1, 2, 7, 7), (2,), {"ceil_mode": True}),
    ((2, 2, 7, 6), (3, 2, 1), {}),
    ((1, 2, 7, 7), (3, 2, 1), {"ceil_mode": True}),
    ((1, 2, 7, 6), (3, 1), {"dilation": 2}),
    ((1, 2, 7, 7), ((3, 2), (2, 1), (1, 0)), {"dilation": (1, 2)}),
    ((2, 2, 5, 5), (3,), {"stride": 1}),  # overlapping windows
    ((1, 2, 6, 6), (2,), {"stride": [], "padding": 1}),
    ((2, 6, 6), (2,), {}),  # unbatched
    ((2, 5, 5), (3, 2, 1), {"ceil_mode": True}),
]


@pytest.mark.parametrize("shape,args,kwargs", MAX_POOL2D_CASES)
def test_max_pool2d(shape, args, kwargs):
    check_op(_pool("max_pool2d", *args, **kwargs), [make_input(shape)])


@requires_torch
@pytest.mark.parametrize("shape,args,kwargs", MAX_POOL2D_CASES)
def test_max_pool2d_indices_match_torch(shape, args, kwargs):
    x = make_input(shape, dtype=np.float32)
    out, idx = distnn.nn.functional.max_pool2d(distnn.from_numpy(x), *args, return_indices=True, **kwargs)
    ref, ref_idx = torch.nn.functional.max_pool2d(torch.from_numpy(x), *args, return_indices=True, **kwargs)
    np.testing.assert_array_equal(out.numpy(), ref.numpy())
    np.testing.assert_array_equal(idx.numpy(), ref_idx.numpy())
    assert idx.dtype == distnn.int64 and not idx.requires_grad


@requires_torch
@pytest.mark.parametrize("shape,args,kwargs", [((2, 3, 8, 8), (2,), {}), ((2, 3, 8, 8), (3, 1, 1), {}),
                                               ((2, 3, 9, 9), (3, 3), {"ceil_mode": True})])
def test_max_pool2d_ties_go_to_the_first_max(shape, args, kwargs):
    """Many equal values: the gradient goes to the first max of each window, as in PyTorch."""
    x = np.round(make_input(shape, seed=3) * 1.5)
    compare_with_torch(_pool("max_pool2d", *args, **kwargs), [x])
    compare_with_torch(_pool("max_pool2d", *args, **kwargs), [np.zeros(shape)])
    # a checkerboard: a 2x2 window's max sits at (0, 1) and (1, 0), and row-major order picks
    checkerboard = np.indices(shape[-2:]).sum(0) % 2.0
    compare_with_torch(_pool("max_pool2d", *args, **kwargs), [np.broadcast_to(checkerboard, shape).copy()])


@requires_torch
@pytest.mark.parametrize("args", [(2,), (3, 2, 1)])
def test_max_pool2d_nan_matches_torch(args):
    x = make_input((1, 2, 6, 6), dtype=np.float32)
    x[0, 0, 0, 1] = x[0, 0, 3, 3] = x[0, 0, 3, 2] = x[0, 1, 5, 5] = np.nan
    out, idx = distnn.nn.functional.max_pool2d(distnn.from_numpy(x), *args, return_indices=True)
    ref, ref_idx = torch.nn.functional.max_pool2d(torch.from_numpy(x), *args, return_indices=True)
    np.testing.assert_array_equal(out.numpy(), ref.numpy())  # NaN == NaN for assert_array_equal
    np.testing.assert_array_equal(idx.numpy(), ref_idx.numpy())


@requires_torch
@pytest.mark.parametrize("shape,args", [((2, 3, 8, 8), (2,)), ((2, 3, 9, 9), (3, 2, 1)),
                                        ((16, 4, 32, 32), (3, 2, 1))])  # by sample chunks
def test_max_pool2d_non_finite_gradient_reaches_only_the_picked_input(shape, args):
    """An inf or NaN output gradient goes to its window's max alone, as in PyTorch: the
    window's other inputs get 0, not inf * 0."""
    x = make_input(shape, seed=4).astype(np.float32)
    results = []
    for lib in (distnn, torch):
        xt = lib.tensor(x, requires_grad=True)
        y = lib.nn.functional.max_pool2d(xt, *args)
        g = np.ones(tuple(y.shape), np.float32)
        g[0, 0, 1, 1], g[1, 2, 0, 3], g[-1, -1, -1, -1] = np.inf, np.nan, -np.inf
        y.backward(lib.tensor(g))
        results.append(xt.grad.numpy())
    np.testing.assert_array_equal(*results)
    assert np.isfinite(results[0]).sum() == x.size - 3


@requires_torch
@pytest.mark.parametrize("shape,args,kwargs", [
    ((8, 10, 24, 24), (2,), {}),  # the MNIST ConvNet's pools
    ((8, 20, 8, 8), (2,), {}),
    ((4, 8, 15, 17), (3, 2, 1), {"ceil_mode": True}),
])
def test_max_pool2d_moderate_shapes_match_torch(shape, args, kwargs):
    compare_with_torch(_pool("max_pool2d", *args, **kwargs), [make_input(shape)])


@pytest.mark.parametrize("padding", [1, 0])  # 0: windows tile the input
def test_max_pool2d_integer_input(padding):
    x = np.arange(32, dtype=np.int64).reshape(1, 2, 4, 4) % 7
    out = distnn.nn.functional.max_pool2d(distnn.from_numpy(x), 2, padding=padding)
    assert out.dtype == distnn.int64
    if torch is not None:
        ref = torch.nn.functional.max_pool2d(torch.from_numpy(x), 2, padding=padding)
        np.testing.assert_array_equal(out.numpy(), ref.numpy())


AVG_POOL2D_CASES = [
    ((2, 2, 6, 6), (2,), {}),
    ((1, 2, 7, 6), (3, 2, 1), {}),
    ((1, 2, 7, 6), (3, 2, 1), {"count_include_pad": False}),
    ((1, 2, 7, 7), (3, 2, 1), {"ceil_mode": True}),
    ((1, 2, 7, 7), (3, 2, 1), {"ceil_mode": True, "count_include_pad": False}),
    ((1, 2, 7, 7), (2,), {"ceil_mode": True}),
    ((2, 2, 5, 6), ((2, 3), (1, 2), (1, 1)), {}),
    ((1, 2, 6, 6), (3, 1, 1), {"divisor_override": 5}),
    ((2, 5, 5), (2, 1), {}),  # unbatched
]


@pytest.mark.parametrize("shape,args,kwargs", AVG_POOL2D_CASES)
def test_avg_pool2d(shape, args, kwargs):
    check_op(_pool("avg_pool2d", *args, **kwargs), [make_input(shape)])


ADAPTIVE_SIZES = [((2, 2, 6, 6), (3, 3)), ((2, 2, 7, 5), (3, 2)), ((1, 2, 5, 7), 1), ((1, 2, 4, 5), (None, 3)),
                  ((1, 2, 3, 2), (5, 4)), ((2, 4, 5), (2, 3))]


@pytest.mark.parametrize("shape,size", ADAPTIVE_SIZES)
def test_adaptive_avg_pool2d(shape, size):
    check_op(_pool("adaptive_avg_pool2d", size), [make_input(shape)])


@pytest.mark.parametrize("shape,size", ADAPTIVE_SIZES)
def test_adaptive_max_pool2d(shape, size):
    check_op(_pool("adaptive_max_pool2d", size), [make_input(shape)])
    if torch is not None:
        x = make_input(shape, dtype=np.float32)
        _, idx = distnn.nn.functional.adaptive_max_pool2d(distnn.from_numpy(x), size, return_indices=True)
        _, ref = torch.nn.functional.adaptive_max_pool2d(torch.from_numpy(x), size, return_indices=True)
        np.testing.assert_array_equal(idx.numpy(), ref.numpy())


@pytest.mark.parametrize("shape", [(3, 5, 6, 7), (5, 6, 7)])
def test_global_average_pooling_gradient_is_the_general_products_bits(shape):
    """Output 1x1 spreads each gradient over its plane directly; the same two
    products as the averaging-matrix GEMMs, to the bit."""
    from distnn.ops import pool
    g = np.random.default_rng(0).standard_normal(shape[:-2] + (1, 1), dtype=np.float32)
    rows = pool._averaging_matrix(np, shape[-2], 1, np.float32)
    cols = pool._averaging_matrix(np, shape[-1], 1, np.float32)
    fast = pool._adaptive_spread(np, g, rows, cols)
    assert fast.shape == shape
    assert fast.tobytes() == pool._row_col_product(np, g, rows.T, cols).tobytes()


@requires_torch
def test_adaptive_pools_moderate_shape_match_torch():
    x = [make_input((4, 8, 13, 11))]
    compare_with_torch(_pool("adaptive_avg_pool2d", (4, 5)), x)
    compare_with_torch(_pool("adaptive_max_pool2d", (4, 5)), x)


ONE_D_CASES = [
    ("max_pool1d", (2, 2, 7), (2,), {}),
    ("max_pool1d", (2, 2, 7), (3, 2, 1), {"ceil_mode": True}),
    ("max_pool1d", (2, 7), (2, 1), {"dilation": 2}),
    ("avg_pool1d", (2, 2, 7), (3, 2, 1), {}),
    ("avg_pool1d", (2, 2, 7), (3, 2, 1), {"ceil_mode": True, "count_include_pad": False}),
    ("avg_pool1d", (2, 7), (2,), {}),
    ("adaptive_avg_pool1d", (2, 2, 7), (3,), {}),
    ("adaptive_max_pool1d", (2, 2, 7), (3,), {}),
]


@pytest.mark.parametrize("name,shape,args,kwargs", ONE_D_CASES)
def test_pool1d(name, shape, args, kwargs):
    check_op(_pool(name, *args, **kwargs), [make_input(shape)])
    out = getattr(distnn.nn.functional, name)(distnn.randn(*shape, requires_grad=True), *args, **kwargs)
    assert type(out.grad_fn).__name__ == "SqueezeBackward1"  # as PyTorch: 2-D pooling, squeezed


def test_max_pool1d_return_indices():
    x = make_input((2, 3, 9), dtype=np.float32)
    out, idx = distnn.nn.functional.max_pool1d(distnn.from_numpy(x), 3, 2, 1, return_indices=True)
    assert tuple(out.shape) == tuple(idx.shape) == (2, 3, 5)
    windows = np.pad(x, ((0, 0), (0, 0), (1, 1)), constant_values=-np.inf)
    expected = np.stack([windows[..., 2 * i:2 * i + 3].argmax(-1) + 2 * i - 1 for i in range(5)], -1)
    np.testing.assert_array_equal(idx.numpy(), expected)


@pytest.mark.parametrize("fn,name", [
    (lambda F, x: F.max_pool2d(x, 2), "MaxPool2DWithIndicesBackward0"),
    (lambda F, x: F.max_pool2d(x, 3, 1, 1), "MaxPool2DWithIndicesBackward0"),
    (lambda F, x: F.avg_pool2d(x, 2), "AvgPool2DBackward0"),
    (lambda F, x: F.adaptive_avg_pool2d(x, 3), "AdaptiveAvgPool2DBackward0"),
    (lambda F, x: F.adaptive_max_pool2d(x, 3), "AdaptiveMaxPool2DBackward0"),
])
def test_grad_fn_names(fn, name):
    for dtype in (distnn.float32, distnn.float64):
        out = fn(distnn.nn.functional, distnn.randn(2, 3, 8, 8, dtype=dtype, requires_grad=True))
        assert type(out.grad_fn).__name__ == name
        assert out.dtype == dtype and out.is_contiguous()


def _pool_call(name, shape, *args, **kwargs):
    def call(lib):
        return getattr(lib.nn.functional, name)(lib.randn(*shape), *args, **kwargs)
    return call


# (call, exception, message, PyTorch raises the same message)
ERROR_CASES = [
    (_pool_call("max_pool2d", (8, 8), 2), RuntimeError,
     r"Expected 3D or 4D \(batch mode\) tensor with optional 0 dim batch size for input, but got:\[8, 8\]", False),
    (_pool_call("max_pool2d", (2, 3, 0, 8), 2), RuntimeError,
     r"Expected 3D or 4D \(batch mode\) tensor with optional 0 dim batch size for input, but got:\[2, 3, 0, 8\]",
     True),
    (_pool_call("max_pool2d", (2, 3, 8, 8), 3, padding=2), RuntimeError,
     "pad should be at most half of effective kernel size, but got pad=2, kernel_size=3 and dilation=1", True),
    (_pool_call("avg_pool2d", (2, 3, 8, 8), 3, padding=2), RuntimeError,
     "pad should be at most half of effective kernel size, but got pad=2, kernel_size=3 and dilation=1", True),
    (_pool_call("max_pool2d", (2, 3, 8, 8), 9), RuntimeError,
     r"Given input size: \(3x8x8\). Calculated output size: \(3x0x0\). Output size is too small", True),
    (_pool_call("max_pool2d", (2, 3, 8, 8), 3, dilation=0), RuntimeError,
     "dilation should be greater than zero, but got dilationH: 0 dilationW: 0", True),
    (_pool_call("max_pool2d", (2, 3, 8, 8), 3, padding=-1), RuntimeError,
     "pad must be non-negative, but got pad: -1", True),
    (_pool_call("max_pool2d", (2, 3, 8, 8), (2, 2, 2)), RuntimeError,
     "max_pool2d: kernel_size must either be a single int, or a tuple of two ints", True),
    (_pool_call("max_pool2d", (2, 3, 8, 8), 2, -1), RuntimeError,
     "stride should be greater than zero, but got dH: -1 dW: -1", False),
    (_pool_call("avg_pool2d", (2, 3, 8, 8), 2, divisor_override=0), RuntimeError, "divisor must be not zero",
     True),
    (_pool_call("max_pool1d", (2, 3, 8, 8), 2), RuntimeError,
     r"max_pool1d: Expected 2D or 3D \(batch mode\) tensor with optional 0 dim batch size for input, "
     r"but got:\[2, 3, 8, 8\]", True),
    (_pool_call("avg_pool1d", (2, 3, 8, 8), 2), RuntimeError,
     r"Expected 2 to 3 dimensions, but got 4-dimensional tensor for argument #1 'self' \(while checking "
     r"arguments for avg_pool1d\)", True),
    (_pool_call("adaptive_avg_pool2d", (8, 8), 3), RuntimeError,
     r"adaptive_avg_pool2d\(\): Expected 3D or 4D tensor, but got \[8, 8\]", True),
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


def test_avg_pool_rejects_integer_input():
    with pytest.raises(RuntimeError, match=r"avg_pool2d: Expect: a floating point input, Actual: torch.int64"):
        distnn.nn.functional.avg_pool2d(distnn.ones(1, 1, 4, 4, dtype=distnn.int64), 2)

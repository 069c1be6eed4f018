"""Convolutions through oneDNN (distnn/ops/onednn.py): test_conv.py's cases in
float32 against PyTorch with every call counted through oneDNN, the switch that
turns it off, the geometry cache, threads, and a child forked after it ran."""

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import distnn
import distnn.nn.functional  # noqa: F401  (makes distnn.nn available as lib.nn)
from distnn.backends import mkldnn
from distnn.ops import onednn
from conv_cases import (CONV1D_CASES, CONV2D_CASES, CONV_TRANSPOSE1D_CASES, CONV_TRANSPOSE2D_CASES,
                        MODERATE_CONV2D_CASES, conv_call, conv_inputs)
from fork_child import fork_child_script
from op_check import compare_with_torch, count_served, requires_torch

try:
    import torch
except ImportError:
    torch = None

pytestmark = [pytest.mark.skipif(not mkldnn.is_available(),
                                 reason="oneDNN's library (pip onednn-cpu-gomp) is not installed"),
              pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")]


@pytest.fixture(autouse=True)
def enabled(monkeypatch):
    monkeypatch.setattr(mkldnn, "enabled", True)


@pytest.fixture
def calls(monkeypatch):
    """How many forward and backward calls went through oneDNN."""
    return count_served(monkeypatch, onednn, (("forward", "convolve"), ("backward", "gradients")))


@requires_torch
@pytest.mark.parametrize("name,x_shape,w_shape,bias,kwargs", [("conv2d", *c) for c in CONV2D_CASES]
                         + [("conv1d", *c) for c in CONV1D_CASES])
def test_small_cases_match_torch(calls, name, x_shape, w_shape, bias, kwargs):
    compare_with_torch(conv_call(name, kwargs), conv_inputs(x_shape, w_shape, w_shape[0] if bias else 0),
                       rtol=1e-5, atol=1e-5)
    # contiguous and non-contiguous inputs, each forward and backward
    assert calls == {"forward": 2, "backward": 2}


@requires_torch
@pytest.mark.parametrize("x_shape,w_shape,kwargs", MODERATE_CONV2D_CASES)
def test_moderate_shapes_match_torch(calls, x_shape, w_shape, kwargs):
    compare_with_torch(conv_call("conv2d", kwargs), conv_inputs(x_shape, w_shape, w_shape[0]),
                       rtol=1e-4, atol=2e-4)
    assert calls == {"forward": 2, "backward": 2}


@requires_torch
@pytest.mark.parametrize("requires_grad", [[False, True, True], [True, False, False], [False, False, True],
                                           [True, True, False], [False, True, False]])
def test_partial_requires_grad(calls, requires_grad):
    compare_with_torch(conv_call("conv2d", {"stride": 2, "padding": 1}), conv_inputs((2, 3, 6, 6), (4, 3, 3, 3), 4),
                       requires_grad=requires_grad, rtol=1e-5, atol=1e-5)


def _resnet_layer(bias=False):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 16, 8, 8), dtype=np.float32)
    w = rng.standard_normal((16, 16, 3, 3), dtype=np.float32) * 0.1
    b = rng.standard_normal(16, dtype=np.float32) if bias else None
    return x, w, b


def _run(x, w, b, kwargs):
    xt = distnn.tensor(x, requires_grad=True)
    wt = distnn.tensor(w, requires_grad=True)
    bt = distnn.tensor(b, requires_grad=True) if b is not None else None
    y = distnn.nn.functional.conv2d(xt, wt, bt, **kwargs)
    (y * y).sum().backward()
    return [y.detach().numpy(), xt.grad.numpy(), wt.grad.numpy()] + ([bt.grad.numpy()] if b is not None else [])


def test_the_switch_sends_convolutions_to_distnns_own_paths(calls):
    x, w, b = _resnet_layer(bias=True)
    fast = _run(x, w, b, {"padding": 1})
    assert calls == {"forward": 1, "backward": 1}
    with mkldnn.flags(enabled=False):
        assert mkldnn.enabled is False
        own = _run(x, w, b, {"padding": 1})
    assert mkldnn.enabled is True
    assert calls == {"forward": 1, "backward": 1}
    for a, b_ in zip(fast, own):
        np.testing.assert_allclose(a, b_, rtol=1e-4, atol=1e-4)
    with pytest.raises(RuntimeError, match="set_enabled_mkldnn expects a bool"):
        mkldnn.enabled = 1


def test_float64_convolutions_keep_distnns_paths(calls):
    x, w, _ = _resnet_layer()
    _run(x.astype(np.float64), w.astype(np.float64), None, {"padding": 1})
    xt = distnn.tensor(x.astype(np.float64), requires_grad=True)
    distnn.nn.functional.conv_transpose2d(xt, distnn.tensor(w.astype(np.float64)), stride=2).sum().backward()
    assert calls == {"forward": 0, "backward": 0}


def _transposed_cases():
    for x_shape, w_shape, bias, kwargs in CONV_TRANSPOSE2D_CASES:
        yield "conv_transpose2d", x_shape, w_shape, bias, kwargs
    for x_shape, w_shape, kwargs in CONV_TRANSPOSE1D_CASES:
        yield "conv_transpose1d", x_shape, w_shape, True, kwargs
    yield "conv_transpose2d", (4, 16, 7, 7), (16, 8, 3, 3), True, {"stride": 2, "padding": 1, "output_padding": 1}
    yield "conv_transpose2d", (3, 4, 4, 4), (4, 3, 3, 3), True, {"stride": 2, "padding": 1, "groups": 2}
    yield "conv_transpose2d", (8, 32, 8, 8), (32, 16, 4, 4), False, {"stride": 2, "padding": 1}  # a DCGAN layer
    yield "conv_transpose2d", (2, 2, 3, 3), (2, 2, 2, 2), True, {"dilation": 2, "output_padding": 1}  # past stride 1


@requires_torch
@pytest.mark.parametrize("name,x_shape,w_shape,bias,kwargs", list(_transposed_cases()))
def test_transposed_convolutions_match_torch(calls, name, x_shape, w_shape, bias, kwargs):
    """The backward-data primitive forward, the forward and backward-weights ones
    backward; an output padding past the stride (below the dilation) on conv.py's."""
    out_channels = w_shape[1] * kwargs.get("groups", 1)
    compare_with_torch(conv_call(name, kwargs), conv_inputs(x_shape, w_shape, out_channels if bias else 0),
                       rtol=1e-5, atol=1e-5)
    past_stride = any(op >= s for op, s in zip(np.broadcast_to(kwargs.get("output_padding", 0), 2),
                                                 np.broadcast_to(kwargs.get("stride", 1), 2)))
    expected = 0 if past_stride else 2  # contiguous and non-contiguous inputs
    assert calls == {"forward": expected, "backward": expected}


def test_a_resnet_layer_runs_a_jit_kernel():
    x, w, _ = _resnet_layer()
    from distnn.ops.conv import Geometry
    conv = onednn.convolution(x.shape, w.shape, Geometry((1, 1), ((1, 1), (1, 1)), (1, 1), 1, False, (0, 0)), False)
    for kind in ("forward", "data", "weights"):
        assert conv.implementation(kind).startswith(("jit", "brg")), conv.implementation(kind)


def test_the_geometry_cache_is_bounded_and_results_stay_right(monkeypatch):
    monkeypatch.setattr(onednn, "_CACHE_SIZE", 2)
    x, w, _ = _resnet_layer()
    first = _run(x, w, None, {"padding": 1})
    for pad in (0, 2, 3, 1, 0, 1):
        _run(x, w, None, {"padding": pad})
        assert len(onednn._cache) <= 2
    for a, b in zip(first, _run(x, w, None, {"padding": 1})):
        np.testing.assert_array_equal(a, b)


def test_read_only_operands_and_reused_memory_objects():
    """Arrays numpy will not export writable (read through ``array.ctypes``), and the
    same primitive run on new arrays each call."""
    from distnn.ops.conv import Geometry
    x, w, _ = _resnet_layer()
    geo = Geometry((1, 1), ((1, 1), (1, 1)), (1, 1), 1, False, (0, 0))
    expected = onednn.convolve(np, x, w, None, geo)
    x_ro, w_ro = x.copy(), w.copy()
    x_ro.flags.writeable = w_ro.flags.writeable = False
    assert onednn._address(x_ro) == x_ro.ctypes.data
    np.testing.assert_array_equal(onednn.convolve(np, x_ro, w_ro, None, geo), expected)
    np.testing.assert_array_equal(onednn.convolve(np, 2 * x, w, None, geo), 2 * expected)


@requires_torch
def test_strided_and_broadcast_gradients():
    """An output gradient that is an expanded scalar (strides 0), and a transposed input."""
    x, w, _ = _resnet_layer()
    xs = x.transpose(0, 1, 3, 2)
    xt = distnn.tensor(xs, requires_grad=True)
    wt = distnn.tensor(w, requires_grad=True)
    distnn.nn.functional.conv2d(xt, wt, padding=1).sum().backward()
    tx = torch.tensor(np.ascontiguousarray(xs), requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    torch.nn.functional.conv2d(tx, tw, padding=1).sum().backward()
    np.testing.assert_allclose(xt.grad.numpy(), tx.grad.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(wt.grad.numpy(), tw.grad.numpy(), rtol=1e-5, atol=1e-4)


def test_double_backward_through_onednn(calls):
    """create_graph=True records the gradients as convolutions, which run through oneDNN too."""
    x, w, _ = _resnet_layer()
    xt = distnn.tensor(x, requires_grad=True)
    wt = distnn.tensor(w, requires_grad=True)
    y = distnn.nn.functional.conv2d(xt, wt, padding=1)
    gx, = distnn.autograd.grad((y * y).sum(), xt, create_graph=True)
    (gx * gx).sum().backward()
    with mkldnn.flags(enabled=False):
        xo = distnn.tensor(x, requires_grad=True)
        wo = distnn.tensor(w, requires_grad=True)
        yo = distnn.nn.functional.conv2d(xo, wo, padding=1)
        go, = distnn.autograd.grad((yo * yo).sum(), xo, create_graph=True)
        (go * go).sum().backward()
    assert calls["forward"] > 1
    np.testing.assert_allclose(wt.grad.numpy(), wo.grad.numpy(), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(xt.grad.numpy(), xo.grad.numpy(), rtol=1e-3, atol=1e-3)


def test_two_threads_and_threads_of_their_own():
    """At 2 intra-op threads, and from several Python threads at once, the results are
    those of one thread (each thread sets its own OpenMP thread count)."""
    x, w, b = _resnet_layer(bias=True)
    previous = distnn.get_num_threads()
    try:
        distnn.set_num_threads(1)
        one = _run(x, w, b, {"padding": 1})
        distnn.set_num_threads(2)
        two = _run(x, w, b, {"padding": 1})
        results = [None] * 4

        def work(i):
            results[i] = _run(x, w, b, {"padding": 1})
        workers = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in workers:
            t.start()
        for t in workers:
            t.join(60)
    finally:
        distnn.set_num_threads(previous)
    for got in [two] + results:
        assert got is not None
        for a, b_ in zip(one, got):
            np.testing.assert_allclose(a, b_, rtol=1e-5, atol=1e-5)


CHILD = fork_child_script("""
    import distnn.nn.functional as F
    distnn.set_num_threads(2)
    x = distnn.randn(8, 16, 16, 16)
    w = distnn.randn(16, 16, 3, 3)
    y = F.conv2d(x, w, padding=1).numpy()
""", """
    ok = np.allclose(F.conv2d(x, w, padding=1).numpy(), y, rtol=1e-5, atol=1e-4)
    os._exit(0 if ok else 3)
""")


def test_a_child_forked_after_parallel_convolutions_does_not_hang():
    """GNU OpenMP's threads do not survive fork: the child runs oneDNN on one thread."""
    proc = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_the_environment_can_turn_it_off():
    code = "import distnn; print(distnn.backends.mkldnn.is_available())"
    env = dict(os.environ, DISTNN_ONEDNN="0")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.stdout.strip() == "False", out.stderr


def test_openmp_spin_count_is_set_only_while_libdnnl_loads(monkeypatch):
    """GNU OpenMP reads GOMP_SPINCOUNT as it loads: distnn's count then, unless the user
    set one, and never left in the environment for child processes."""
    import ctypes
    seen = []
    monkeypatch.setattr(ctypes, "CDLL", lambda path: seen.append(os.environ.get("GOMP_SPINCOUNT")) or path)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    assert onednn._load_with_spin_count("libdnnl.so.3") == "libdnnl.so.3"
    assert seen == [onednn._GOMP_SPINCOUNT] and "GOMP_SPINCOUNT" not in os.environ
    monkeypatch.setenv("GOMP_SPINCOUNT", "1234")
    onednn._load_with_spin_count("libdnnl.so.3")
    assert seen[-1] == "1234" and os.environ["GOMP_SPINCOUNT"] == "1234"

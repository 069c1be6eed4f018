"""One helper every op test uses: gradcheck in float64, then values and gradients
side by side with PyTorch in float32 (when torch is importable), on contiguous
and non-contiguous inputs; and, for ops whose derivatives need exact checks
(zeros, higher orders), float64 derivatives side by side with PyTorch's.

A test states only the inputs and the function, written once against the
shared API: ``fn(lib, *tensors)`` where ``lib`` is ``distnn`` or ``torch``.

``DISTNN_TEST_DEVICE=cuda`` runs our side on the GPU (CuPy) against the same
CPU oracle; outputs and gradients must also stay on that device.
"""

import os

import numpy as np
import pytest

import distnn

DEVICE = distnn.device(os.environ.get("DISTNN_TEST_DEVICE", "cpu"))

try:
    import torch
except ImportError:  # the oracle is optional
    torch = None

requires_torch = pytest.mark.skipif(torch is None, reason="PyTorch (test oracle) not installed")


def make_input(shape, low=-1.0, high=1.0, positive=False, seed=0, dtype=np.float64, zeros=()):
    """A random float array; ``positive`` keeps it away from zero (for log, sqrt, /);
    ``zeros`` are flat positions set to exactly 0 (for prod and cumprod)."""
    rng = np.random.default_rng(seed)
    arr = rng.uniform(low, high, size=shape)
    if positive:
        arr = np.abs(arr) + 0.5
    arr.reshape(-1)[list(zeros)] = 0.0
    return arr.astype(dtype)


def non_contiguous(arr):
    """The same values in a transposed (non C-contiguous) layout, when ndim >= 2."""
    if arr.ndim < 2:
        return arr
    return np.ascontiguousarray(arr.swapaxes(-1, -2)).swapaxes(-1, -2)


def to_distnn(arrays, requires_grad, dtype):
    out = []
    for a, rg in zip(arrays, requires_grad):
        if isinstance(a, np.ndarray):
            arr = a.astype(dtype) if a.dtype.kind == "f" else a
            t = distnn.from_numpy(arr).to(DEVICE)
            if rg and arr.dtype.kind == "f":
                t.requires_grad_(True)
            out.append(t)
        else:
            out.append(a)
    return out


def host(t):
    """A tensor's values as a NumPy array, wherever it lives; checks it lives on DEVICE."""
    assert t.device == DEVICE, f"result on {t.device}, inputs on {DEVICE}"
    return t.detach().cpu().numpy()


def const(lib, data):
    """A constant tensor (indices, a mask) built inside ``fn``: on DEVICE for distnn,
    on the CPU for the torch oracle."""
    t = lib.tensor(data)
    return t.to(DEVICE) if lib is distnn else t


def run_gradcheck(fn, arrays, requires_grad=None, eps=1e-6, atol=1e-5, rtol=1e-3):
    """float64 finite-difference check of ``fn(distnn, *inputs)``."""
    requires_grad = requires_grad or [isinstance(a, np.ndarray) and a.dtype.kind == "f" for a in arrays]
    inputs = to_distnn([a.copy() if isinstance(a, np.ndarray) else a for a in arrays],
                       requires_grad, np.float64)
    assert distnn.autograd.gradcheck(lambda *xs: fn(distnn, *xs), inputs, eps=eps, atol=atol, rtol=rtol)


def run_gradgradcheck(fn, arrays, requires_grad=None, eps=1e-6, atol=1e-5, rtol=1e-3):
    """float64 check of ``fn``'s second derivatives (fast mode: random projections),
    or of its refusal: an op without double-backward support must raise, naming itself."""
    requires_grad = requires_grad or [isinstance(a, np.ndarray) and a.dtype.kind == "f" for a in arrays]
    inputs = to_distnn([a.copy() if isinstance(a, np.ndarray) else a for a in arrays],
                       requires_grad, np.float64)
    out = fn(distnn, *inputs)
    outs = [o for o in (out if isinstance(out, (tuple, list)) else (out,))
            if isinstance(o, distnn.Tensor) and o.requires_grad]
    if not outs:
        return
    try:
        assert distnn.autograd.gradgradcheck(lambda *xs: fn(distnn, *xs), inputs, eps=eps, atol=atol, rtol=rtol,
                                             fast_mode=True)
    except RuntimeError as error:
        refused = refused_op(error)
        if refused is None:
            raise
        assert not refused.double_backward, f"{refused.__name__} claims double backward but refused it"


def refused_op(error):
    """The Op class a double-backward refusal names, or None for any other error."""
    from distnn.autograd.function import Op
    text = str(error)
    if "does not support double backward" not in text:
        return None
    name = text.split(" ", 1)[0]
    found = [cls for cls in _op_classes(Op) if f"{cls.__name__}{cls._node_suffix}" == name]
    assert found, f"the refusal names {name}, which is no Op"
    return found[0]


def _op_classes(base):
    for sub in base.__subclasses__():
        yield sub
        yield from _op_classes(sub)


def _scalarize(out, lib, weights):
    """Reduce outputs to one scalar with fixed random weights, so backward sees a
    non-trivial upstream gradient."""
    outs = out if isinstance(out, (tuple, list)) else (out,)
    total = None
    for o, w in zip(outs, weights):
        if o.dtype not in (lib.float32, lib.float64):
            continue
        term = (o * lib.tensor(w.astype(np.float64), dtype=o.dtype, device=o.device)).sum()
        total = term if total is None else total + term
    return total


def compare_with_torch(fn, arrays, requires_grad=None, rtol=1e-5, atol=1e-6, check_grad=True,
                       layouts=("contiguous", "non_contiguous")):
    """Run ``fn`` under distnn and torch in float32; values and input gradients must agree."""
    if torch is None:
        pytest.skip("PyTorch (test oracle) not installed")
    requires_grad = requires_grad or [isinstance(a, np.ndarray) and a.dtype.kind == "f" for a in arrays]
    for layout in layouts:
        arrs = [non_contiguous(a) if layout == "non_contiguous" and isinstance(a, np.ndarray) else a
                for a in arrays]
        ours = to_distnn([a.copy() if isinstance(a, np.ndarray) else a for a in arrs],
                         requires_grad, np.float32)
        theirs = []
        for a, rg in zip(arrs, requires_grad):
            if isinstance(a, np.ndarray):
                t = torch.from_numpy(a.astype(np.float32) if a.dtype.kind == "f" else a.copy())
                if rg and a.dtype.kind == "f":
                    t.requires_grad_(True)
                theirs.append(t)
            else:
                theirs.append(a)
        out_ours = fn(distnn, *ours)
        out_theirs = fn(torch, *theirs)
        outs_o = out_ours if isinstance(out_ours, (tuple, list)) else (out_ours,)
        outs_t = out_theirs if isinstance(out_theirs, (tuple, list)) else (out_theirs,)
        assert len(outs_o) == len(outs_t)
        for o, t in zip(outs_o, outs_t):
            assert tuple(o.shape) == tuple(t.shape), f"shape {tuple(o.shape)} != torch {tuple(t.shape)}"
            assert str(o.dtype) == str(t.dtype), f"dtype {o.dtype} != torch {t.dtype}"
            np.testing.assert_allclose(host(o).astype(np.float64),
                                       t.detach().numpy().astype(np.float64), rtol=rtol, atol=atol,
                                       err_msg=f"forward differs from torch ({layout})")
        if not check_grad:
            continue
        rng = np.random.default_rng(1)
        weights = [rng.uniform(0.5, 1.5, size=tuple(o.shape)) for o in outs_o]
        loss_o, loss_t = _scalarize(out_ours, distnn, weights), _scalarize(out_theirs, torch, weights)
        if loss_o is None or not loss_o.requires_grad:
            continue
        loss_o.backward()
        loss_t.backward()
        for i, (a, b) in enumerate(zip(ours, theirs)):
            if isinstance(a, distnn.Tensor) and a.requires_grad:
                assert (a.grad is None) == (b.grad is None), f"input {i}: grad presence differs"
                if a.grad is not None:
                    np.testing.assert_allclose(host(a.grad), b.grad.numpy(), rtol=rtol, atol=atol,
                                               err_msg=f"gradient of input {i} differs from torch ({layout})")


def compare_derivatives_with_torch(fn, arrays, order=2, rtol=1e-9, atol=1e-12):
    """float64 values and derivatives up to ``order`` of ``fn(lib, *inputs)`` next to
    PyTorch's, exactly (no finite differences, so inputs may sit on zeros and kinks).
    Derivative k is ``d/dx sum(w_k * derivative k-1)`` with fixed random weights,
    recorded (``create_graph=True``) while a higher one is still to come."""
    if torch is None:
        pytest.skip("PyTorch (test oracle) not installed")
    rng = np.random.default_rng(3)
    weights = []

    def run(lib):
        kw = {"device": DEVICE} if lib is distnn else {}
        xs = [lib.tensor(a, dtype=lib.float64, requires_grad=True, **kw) for a in arrays]
        level = [fn(lib, *xs)]
        found = [level]
        for k in range(order):
            if len(weights) == k:
                weights.append([rng.uniform(0.5, 1.5, size=tuple(t.shape)) for t in level])
            terms = [(t * lib.tensor(w, dtype=lib.float64, **kw)).sum()
                     for t, w in zip(level, weights[k]) if t.requires_grad]
            grads = (lib.autograd.grad(sum(terms[1:], terms[0]), xs, create_graph=k + 1 < order, allow_unused=True)
                     if terms else [None] * len(xs))  # torch leaves a derivative that is zero by construction
            level = [lib.zeros_like(x) if g is None else g for g, x in zip(grads, xs)]
            found.append(level)
        return [[host(t) if lib is distnn else t.detach().numpy() for t in ts] for ts in found]

    ours, theirs = run(distnn), run(torch)
    for k, (got, ref) in enumerate(zip(ours, theirs)):
        for i, (a, b) in enumerate(zip(got, ref)):
            what = "forward" if k == 0 else f"derivative {k} w.r.t. input {i}"
            assert a.shape == b.shape, f"{what}: shape {a.shape} != torch {b.shape}"
            np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f"{what} differs from torch")


def count_served(monkeypatch, module, functions):
    """{kind: calls of ``module.<function>`` that returned a result (not None)} for the
    ``(kind, function)`` pairs: which calls a path such as oneDNN took."""
    counts = {kind: 0 for kind, _ in functions}
    for kind, name in functions:
        real = getattr(module, name)

        def counted(*args, _real=real, _kind=kind):
            out = _real(*args)
            counts[_kind] += out is not None
            return out
        monkeypatch.setattr(module, name, counted)
    return counts


def check_op(fn, arrays, requires_grad=None, gradcheck=True, torch_check=True, **tol):
    """gradcheck (float64) and the torch comparison (float32) for one case."""
    if gradcheck:
        run_gradcheck(fn, arrays, requires_grad)
        run_gradgradcheck(fn, arrays, requires_grad)
    if torch_check and torch is not None:
        compare_with_torch(fn, arrays, requires_grad, **tol)

"""Higher-order gradients (``create_graph=True``) against PyTorch: Hessian-vector
products, gradient penalties, MAML, third derivatives, double backward per op,
user Functions and ``gradgradcheck``.

Each case is written once as ``fn(lib, *tensors)`` (``lib`` is ``distnn`` or
``torch``) and returns the named tensors whose values must agree.
"""

import numpy as np
import pytest

import distnn
from op_check import const, host, to_distnn

torch = pytest.importorskip("torch")

RTOL, ATOL = 1e-4, 1e-5


def _inputs(lib, arrays, requires_grad):
    """float32 leaves (integer arrays stay integer constants) for ``lib``."""
    if lib is distnn:
        return to_distnn([a.copy() for a in arrays], requires_grad, np.float32)
    out = []
    for a, rg in zip(arrays, requires_grad):
        t = torch.from_numpy(a.astype(np.float32) if a.dtype.kind == "f" else a.copy())
        out.append(t.requires_grad_(True) if rg and a.dtype.kind == "f" else t)
    return out


def run_both(fn, arrays, requires_grad=None):
    """``fn(lib, *inputs)`` under distnn and torch; every named tensor it returns must agree."""
    requires_grad = requires_grad or [a.dtype.kind == "f" for a in arrays]
    ours = fn(distnn, *_inputs(distnn, arrays, requires_grad))
    theirs = fn(torch, *_inputs(torch, arrays, requires_grad))
    assert list(ours) == list(theirs)
    for name, ref in theirs.items():
        got = ours[name]
        assert (got is None) == (ref is None), f"{name}: distnn {got!r}, torch {ref!r}"
        if ref is None:
            continue
        shape, ref_shape = tuple(got.shape), tuple(ref.shape)
        assert shape == ref_shape, f"{name}: shape {shape} != torch {ref_shape}"
        np.testing.assert_allclose(host(got), ref.detach().numpy(), rtol=RTOL, atol=ATOL,
                                   err_msg=f"{name} differs from torch")


def uniform(rng, shape, low=-1.0, high=1.0):
    return np.asarray(rng.uniform(low, high, size=shape), dtype=np.float32)


def distinct(shape, seed=0):
    """Distinct values bounded away from 0 (|x| >= 0.04): no ties for max, no kinks for relu."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    magnitudes = (np.arange(n) + 1) * (2.0 / n) + 0.02
    signs = rng.choice([-1.0, 1.0], size=n)
    return rng.permutation(magnitudes * signs).reshape(shape).astype(np.float32)


def total(terms):
    terms = list(terms)
    out = terms[0]
    for t in terms[1:]:
        out = out + t
    return out


def named(prefix, tensors):
    return {f"{prefix}[{i}]": t for i, t in enumerate(tensors)}


# --- training patterns -------------------------------------------------------

def test_mlp_hessian_vector_product():
    """g = dL/dparams with create_graph, then d(g . v)/dparams."""
    rng = np.random.default_rng(0)
    x, target = uniform(rng, (4, 5)), rng.integers(0, 3, size=4)
    params = [uniform(rng, (7, 5)), uniform(rng, (7,)), uniform(rng, (3, 7)), uniform(rng, (3,))]
    vs = [uniform(rng, p.shape) for p in params]

    def fn(lib, w1, b1, w2, b2):
        F = lib.nn.functional
        params = (w1, b1, w2, b2)
        logits = F.linear(F.linear(const(lib, x), w1, b1).tanh(), w2, b2)
        loss = F.cross_entropy(logits, const(lib, target))
        g = lib.autograd.grad(loss, params, create_graph=True)
        hvp = lib.autograd.grad(total((gi * const(lib, v)).sum() for gi, v in zip(g, vs)), params)
        return {"loss": loss, **named("g", g), **named("hvp", hvp)}

    run_both(fn, params)


def test_wgan_gradient_penalty():
    """Critic weights get d/dw of mean(critic(x)) + 10 * (|d critic / dx| - 1)^2."""
    rng = np.random.default_rng(1)
    real, fake, alpha = uniform(rng, (6, 4)), uniform(rng, (6, 4)), uniform(rng, (6, 1), 0.0, 1.0)
    x = alpha * real + (1 - alpha) * fake
    weights = [uniform(rng, (8, 4)), uniform(rng, (8,)), uniform(rng, (1, 8)), uniform(rng, (1,))]

    def fn(lib, x, w1, b1, w2, b2):
        F = lib.nn.functional
        out = F.linear(F.leaky_relu(F.linear(x, w1, b1), 0.2), w2, b2)
        (gx,) = lib.autograd.grad(out.sum(), x, create_graph=True)
        penalty = ((gx.norm(2, dim=1) - 1) ** 2).mean()
        (out.mean() + 10 * penalty).backward()
        return {"out": out, "gx": gx, "penalty": penalty, "x.grad": x.grad,
                **named("w.grad", (w1.grad, b1.grad, w2.grad, b2.grad))}

    run_both(fn, [x, *weights])


def test_maml_inner_step():
    """Outer loss after one differentiable SGD step on the support set."""
    rng = np.random.default_rng(2)
    xs, ys, xq, yq = uniform(rng, (8, 3)), uniform(rng, (8, 1)), uniform(rng, (5, 3)), uniform(rng, (5, 1))
    w0, b0 = uniform(rng, (3, 1)), uniform(rng, (1,))

    def fn(lib, w, b):
        F = lib.nn.functional
        inner = F.mse_loss(const(lib, xs) @ w + b, const(lib, ys))
        gw, gb = lib.autograd.grad(inner, (w, b), create_graph=True)
        w2, b2 = w - 0.1 * gw, b - 0.1 * gb
        outer = F.mse_loss((const(lib, xq) @ w2 + b2).tanh(), const(lib, yq))
        outer.backward()
        return {"inner": inner, "gw": gw, "gb": gb, "outer": outer, "w.grad": w.grad, "b.grad": b.grad}

    run_both(fn, [w0, b0])


@pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph=True")
def test_backward_create_graph_leaves_differentiable_grad():
    """After loss.backward(create_graph=True), x.grad is itself differentiable."""
    rng = np.random.default_rng(3)
    x0, v = uniform(rng, (5,)), uniform(rng, (5,))

    def fn(lib, x):
        loss = (x.sin() * x * x).sum()
        loss.backward(create_graph=True)
        assert x.grad.requires_grad and x.grad.grad_fn is not None
        (hz,) = lib.autograd.grad((x.grad * const(lib, v)).sum(), x)
        return {"loss": loss, "x.grad": x.grad, "hz": hz}

    run_both(fn, [x0])


# --- third derivatives of elementwise functions --------------------------------

ELEMENTWISE = {
    "exp": (lambda lib, x: x.exp(), False),
    "log": (lambda lib, x: x.log(), True),
    "sin": (lambda lib, x: x.sin(), False),
    "cos": (lambda lib, x: x.cos(), False),
    "tanh": (lambda lib, x: x.tanh(), False),
    "sigmoid": (lambda lib, x: x.sigmoid(), False),
    "sqrt": (lambda lib, x: x.sqrt(), True),
    "pow3": (lambda lib, x: x ** 3, False),
    "reciprocal": (lambda lib, x: x.reciprocal(), True),
    "softplus": (lambda lib, x: lib.nn.functional.softplus(x), False),
    "gelu": (lambda lib, x: lib.nn.functional.gelu(x), False),
}


@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_third_derivative_elementwise(name):
    f, positive = ELEMENTWISE[name]
    rng = np.random.default_rng(4)
    x = uniform(rng, (7,), 0.5, 2.0) if positive else uniform(rng, (7,), -2.0, 2.0)

    def fn(lib, x):
        y = f(lib, x)
        (g1,) = lib.autograd.grad(y.sum(), x, create_graph=True)
        (g2,) = lib.autograd.grad(g1.sum(), x, create_graph=True)
        (g3,) = lib.autograd.grad(g2.sum(), x)
        return {"y": y, "g1": g1, "g2": g2, "g3": g3}

    run_both(fn, [x])


# --- double backward through each op ----------------------------------------

def _F(lib):
    return lib.nn.functional


def _batch_norm_eval(lib, x, w, b):
    rng = np.random.default_rng(5)
    mean, var = uniform(rng, (3,)), uniform(rng, (3,), 0.5, 1.5)
    return _F(lib).batch_norm(x, const(lib, mean), const(lib, var), w, b, training=False)


def _batch_norm_train(lib, x, w, b):
    running_mean, running_var = const(lib, np.zeros(3, np.float32)), const(lib, np.ones(3, np.float32))
    return _F(lib).batch_norm(x, running_mean, running_var, w, b, training=True)


def _with_zeros(array, positions):
    array.reshape(-1)[positions] = 0.0
    return array


_rng = np.random.default_rng(6)
_LABELS = _rng.integers(0, 5, size=4)
_ROWS = np.array([2, 0, 2, 3])
_MASK = _rng.random((4, 6)) > 0.5

# name -> (op(lib, *inputs), input arrays)
OPS = {
    "conv2d": (lambda lib, x, w, b: _F(lib).conv2d(x, w, b, stride=2, padding=1),
               [uniform(_rng, (2, 3, 5, 5)), uniform(_rng, (4, 3, 3, 3), -0.3, 0.3), uniform(_rng, (4,))]),
    "linear": (lambda lib, x, w, b: _F(lib).linear(x, w, b),
               [uniform(_rng, (4, 5)), uniform(_rng, (3, 5)), uniform(_rng, (3,))]),
    "cross_entropy": (lambda lib, x, t: _F(lib).cross_entropy(x, t),
                      [uniform(_rng, (4, 5), -2, 2), _LABELS]),
    "mse_loss": (lambda lib, x, y: _F(lib).mse_loss(x, y), [uniform(_rng, (3, 4)), uniform(_rng, (3, 4))]),
    "softmax": (lambda lib, x: _F(lib).softmax(x, dim=1), [uniform(_rng, (3, 5), -2, 2)]),
    "log_softmax": (lambda lib, x: _F(lib).log_softmax(x, dim=1), [uniform(_rng, (3, 5), -2, 2)]),
    "tanh": (lambda lib, x: x.tanh(), [uniform(_rng, (3, 4), -2, 2)]),
    "sigmoid": (lambda lib, x: x.sigmoid(), [uniform(_rng, (3, 4), -2, 2)]),
    "relu": (lambda lib, x: _F(lib).relu(x), [distinct((3, 4), 1)]),
    "leaky_relu": (lambda lib, x: _F(lib).leaky_relu(x, 0.1), [distinct((3, 4), 2)]),
    "softplus": (lambda lib, x: _F(lib).softplus(x), [uniform(_rng, (3, 4), -2, 2)]),
    "gelu": (lambda lib, x: _F(lib).gelu(x), [uniform(_rng, (3, 4), -2, 2)]),
    "layer_norm": (lambda lib, x, w, b: _F(lib).layer_norm(x, (6,), w, b),
                   [uniform(_rng, (3, 6)), uniform(_rng, (6,), 0.5, 1.5), uniform(_rng, (6,))]),
    "batch_norm_train": (_batch_norm_train,
                         [uniform(_rng, (4, 3, 2, 2)), uniform(_rng, (3,), 0.5, 1.5), uniform(_rng, (3,))]),
    "batch_norm_eval": (_batch_norm_eval,
                        [uniform(_rng, (4, 3, 2, 2)), uniform(_rng, (3,), 0.5, 1.5), uniform(_rng, (3,))]),
    "max_pool2d_k2s2": (lambda lib, x: _F(lib).max_pool2d(x, 2, 2), [distinct((1, 2, 4, 4), 3)]),
    "max_pool2d_k3s2p1": (lambda lib, x: _F(lib).max_pool2d(x, 3, 2, padding=1), [distinct((1, 2, 5, 5), 4)]),
    "sum_dim": (lambda lib, x: x.sum(dim=1), [uniform(_rng, (3, 4, 2))]),
    "mean_dims": (lambda lib, x: x.mean(dim=(0, 2), keepdim=True), [uniform(_rng, (3, 4, 2))]),
    "var_dim": (lambda lib, x: x.var(dim=1), [uniform(_rng, (3, 5))]),
    "amax_dim": (lambda lib, x: x.amax(dim=1), [distinct((3, 5), 5)]),
    "basic_slice": (lambda lib, x: x[1:, ::2], [uniform(_rng, (4, 6))]),
    "int_array_index": (lambda lib, x: x[const(lib, _ROWS)], [uniform(_rng, (4, 6))]),
    "bool_mask": (lambda lib, x: x[const(lib, _MASK)], [uniform(_rng, (4, 6))]),
    "view": (lambda lib, x: x.view(6, 4), [uniform(_rng, (4, 6))]),
    "reshape": (lambda lib, x: x.reshape(2, 12), [uniform(_rng, (4, 6))]),
    "permute": (lambda lib, x: x.permute(2, 0, 1), [uniform(_rng, (2, 3, 4))]),
    "cat": (lambda lib, a, b: lib.cat([a, b], dim=1), [uniform(_rng, (3, 2)), uniform(_rng, (3, 4))]),
    "prod_dim_with_zeros": (lambda lib, x: x.prod(dim=1), [_with_zeros(uniform(_rng, (3, 4)), [1, 2, 4])]),
    "cumprod_with_zeros": (lambda lib, x: x.cumprod(dim=1), [_with_zeros(uniform(_rng, (3, 4)), [1, 2, 4, 11])]),
}


def double_backward(lib, op, *inputs):
    """s = (out * w1 + out^2 * w2).sum(); grads = ds/dinputs (create_graph);
    t = sum((g * u).sum()) + (grads[0]^2).sum(); t.backward().

    The out^2 term makes the upstream gradient depend on the inputs, so even
    linear ops (view, sum, indexing) and piecewise-linear ones (relu, max_pool)
    have a second derivative to check.
    """
    rng = np.random.default_rng(7)
    diff = [x for x in inputs if x.requires_grad]
    out = op(lib, *inputs)
    w1 = const(lib, uniform(rng, tuple(out.shape), 0.5, 1.5))
    w2 = const(lib, uniform(rng, tuple(out.shape), 0.5, 1.5))
    s = (out * w1 + out * out * w2).sum()
    grads = lib.autograd.grad(s, diff, create_graph=True)
    t = total([(grads[0] ** 2).sum()] + [(g * const(lib, uniform(rng, tuple(g.shape)))).sum() for g in grads])
    t.backward()
    return {"out": out, **named("grad", grads), **named("input.grad", [x.grad for x in diff])}


@pytest.mark.parametrize("name", list(OPS))
def test_double_backward(name):
    op, arrays = OPS[name]
    run_both(lambda lib, *xs: double_backward(lib, op, *xs), arrays)


# --- user Functions and gradgradcheck ---------------------------------------------

def cube_function(lib, detach_in_backward=False):
    """x**3 as a user Function; ``detach_in_backward`` breaks its second derivative."""

    class Cube(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x ** 3

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            x = x.detach() if detach_in_backward else x
            return grad * 3 * x ** 2

    return Cube


def test_user_function_double_backward():
    rng = np.random.default_rng(8)
    x0, u = uniform(rng, (6,), -2, 2), uniform(rng, (6,))

    def fn(lib, x):
        y = cube_function(lib).apply(x)
        (g1,) = lib.autograd.grad((y * y).sum(), x, create_graph=True)
        (g2,) = lib.autograd.grad((g1 * const(lib, u)).sum() + (g1 ** 2).sum(), x)
        return {"y": y, "g1": g1, "g2": g2}

    run_both(fn, [x0])


def _float64_leaves(lib, *shapes):
    rng = np.random.default_rng(9)
    return [lib.tensor(rng.uniform(-1, 1, size=s), dtype=lib.float64, requires_grad=True) for s in shapes]


@pytest.mark.parametrize("lib", [distnn, torch], ids=["distnn", "torch"])
def test_gradgradcheck_passes(lib):
    (x,) = _float64_leaves(lib, (5,))
    assert lib.autograd.gradgradcheck(lambda t: t.tanh(), (x,))
    a, b = _float64_leaves(lib, (2, 3), (3, 2))
    assert lib.autograd.gradgradcheck(lambda p, q: p @ q, (a, b))


@pytest.mark.parametrize("lib", [distnn, torch], ids=["distnn", "torch"])
def test_gradgradcheck_catches_wrong_second_derivative(lib):
    (x,) = _float64_leaves(lib, (4,))
    cube = cube_function(lib, detach_in_backward=True)
    assert lib.autograd.gradcheck(cube.apply, (x,))
    with pytest.raises(RuntimeError):
        lib.autograd.gradgradcheck(cube.apply, (x,))


# --- embedding, and ops that refuse double backward ----------------------------------

@pytest.mark.parametrize("padding_idx, scale", [(None, False), (0, True)])
def test_embedding_double_backward(padding_idx, scale):
    """Embedding's second derivative, with the frequency scaling only in the first
    backward, as PyTorch does."""
    rng = np.random.default_rng(10)
    weight, idx = uniform(rng, (10, 4)), np.array([[1, 3, 3], [0, 9, 1]])

    def fn(lib, weight, idx):
        out = lib.nn.functional.embedding(idx, weight, padding_idx=padding_idx, scale_grad_by_freq=scale)
        (g,) = lib.autograd.grad((out * out * out).sum(), weight, create_graph=True)
        (g ** 2).sum().backward()
        return {"grad": g, "weight.grad": weight.grad}

    run_both(fn, [weight, idx], [True, False])


@pytest.mark.skipif(not distnn.cuda.is_available(), reason="needs CuPy and a CUDA GPU")
def test_recorded_backward_constants_stay_on_the_gpu():
    """Formulas with masks (xp.where) and scalars, recorded on a GPU: the second
    derivatives stay there and equal the CPU's."""
    def grads(device):
        x = distnn.tensor(distinct((3, 4)), device=device, requires_grad=True)
        y = distnn.where(x > 0, x * x, x ** 3).masked_fill(x.abs() < 0.1, 0.0).clamp(-0.5, 0.5)
        (g,) = distnn.autograd.grad((y * x).sum(), x, create_graph=True)
        (g * g).sum().backward()
        return g, x.grad

    for got, want in zip(grads("cuda"), grads("cpu")):
        assert got.device.type == "cuda"
        np.testing.assert_allclose(got.detach().cpu().numpy(), want.detach().numpy(), rtol=RTOL, atol=ATOL)


def test_refused_double_backward_names_the_op():
    """An op that leaves ``double_backward`` False (no distnn op does) computes first
    derivatives under create_graph=True, and refuses, naming itself, only when
    differentiated again."""
    from distnn.autograd.function import Op

    class CubeWithoutDoubleBackward(Op):
        @staticmethod
        def forward(ctx, a):
            ctx.save_for_backward(a)
            return a ** 3

        @staticmethod
        def backward(ctx, g):
            (a,) = ctx.saved_tensors
            return 3 * a * a * g

    x = distnn.tensor([1.5, -2.0, 0.5], requires_grad=True)
    (g,) = distnn.autograd.grad(CubeWithoutDoubleBackward.apply(x).sum(), x, create_graph=True)
    np.testing.assert_allclose(host(g), [6.75, 12.0, 0.75])
    with pytest.raises(RuntimeError, match="CubeWithoutDoubleBackwardBackward0 does not support double backward"):
        (g ** 2).sum().backward()

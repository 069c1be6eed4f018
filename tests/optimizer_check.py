"""What the optimizer tests share: the same parameters and gradients for distnn,
torch and a float64 textbook reference, and an optimizer's trajectory through them."""

import numpy as np

from op_check import torch

SHAPES = [(4, 3), (4,), (2, 4), (2,)]


def initial_arrays(dtype="float32", seed=0):
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, size=s).astype(dtype) for s in SHAPES]


def make_params(lib, arrays):
    return [lib.tensor(a.copy(), requires_grad=True) for a in arrays]


def values(params):
    return [p.detach().numpy().copy() for p in params]


def feed_grads(lib, params, step, seed=0):
    """A quadratic's gradient plus step-dependent noise, computed in numpy from the
    current parameters (in their dtype) so every library sees the same gradients.
    The noise makes gradients change sign now and then, which Rprop must handle."""
    rng = np.random.default_rng(seed + 100 * step)
    for i, p in enumerate(params):
        cur = p.detach().numpy()
        noise = rng.standard_normal(cur.shape).astype(cur.dtype) * cur.dtype.type(0.1)
        p.grad = lib.tensor((cur.dtype.type(2.0 * (i + 1)) * (cur - cur.dtype.type(0.5)) + noise))


def trajectory(lib, name, kwargs, arrays, steps, start=0, opt=None, params=None, groups=None):
    """Parameters after each of ``steps`` steps of optimizer ``name``; continues ``opt``
    (on ``params``) when given; ``groups``: param groups as lists of parameter indices."""
    if opt is None:
        params = make_params(lib, arrays)
        extra = {"foreach": False} if lib is torch else {}  # torch's single-tensor path
        spec = params if groups is None else [dict(g, params=[params[i] for i in g["params"]]) for g in groups]
        opt = getattr(lib.optim, name)(spec, **kwargs, **extra)
    out = []
    for t in range(start, start + steps):
        feed_grads(lib, params, t)
        opt.step()
        out.append(values(params))
    return out, opt, params


class Ref:
    """Stands in for a library in ``feed_grads``: a float64 array with a ``.grad``, whose
    gradient is computed from its value in ``grad_dtype`` (the dtype of the run it follows)."""

    grad_dtype = np.float64

    def __init__(self, value):
        self.value, self.grad = value, None

    def detach(self):
        return self

    def numpy(self):
        return self.value.astype(self.grad_dtype)

    @staticmethod
    def tensor(arr):
        return np.asarray(arr, dtype=np.float64)


class Float32Ref(Ref):
    grad_dtype = np.float32

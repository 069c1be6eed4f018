"""``gradcheck`` and ``gradgradcheck``: compare first and second derivatives against
central finite differences (float64)."""

import numpy as np

from .. import backend
from ..tensor import Tensor, _wrap
from .api import grad as autograd_grad


class GradcheckError(RuntimeError):
    pass


def _outputs_of(func, inputs):
    out = func(*inputs)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    # as PyTorch: only outputs that require grad are checked (a sign() beside them is not)
    return [o for o in outs if isinstance(o, Tensor) and o._data.dtype.kind == "f" and o.requires_grad]


def gradcheck(func, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True,
              check_undefined_grad=False, nondet_tol=0.0, fast_mode=False):
    """True when every analytical Jacobian entry matches the numerical one.

    Inputs that require grad must be float64 (float32 differences are too
    coarse to tell a wrong gradient from round-off).
    """
    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    diff_inputs = [t for t in inputs if isinstance(t, Tensor) and t.requires_grad]
    for t in diff_inputs:
        if t._data.dtype != np.float64:
            raise GradcheckError(f"Expect: float64 inputs that require grad, Actual: {t.dtype}")
    outputs = _outputs_of(func, inputs)
    if not outputs:
        raise GradcheckError("gradcheck expects func to return at least one floating-point Tensor")
    if fast_mode:
        return _fast_check(func, inputs, diff_inputs, outputs, eps, atol, rtol, raise_exception)
    for oi, out in enumerate(outputs):
        n_out = out._data.size
        analytical = [np.zeros((n_out, t._data.size)) for t in diff_inputs]
        for k in range(n_out):
            seed = np.zeros(n_out)
            seed[k] = 1.0
            grads = autograd_grad(_outputs_of(func, inputs)[oi], diff_inputs,
                                  _wrap(backend.move_to(seed.reshape(out._data.shape), out.device)),
                                  allow_unused=True)
            for j, g in enumerate(grads):
                if g is not None:
                    analytical[j][k] = backend.to_numpy(g._data).ravel()
        for j, t in enumerate(diff_inputs):
            numerical = _numerical_jacobian(func, inputs, oi, t, eps)
            if not np.allclose(analytical[j], numerical, rtol=rtol, atol=atol):
                worst = np.unravel_index(np.argmax(np.abs(analytical[j] - numerical)), numerical.shape)
                msg = (f"Jacobian mismatch for output {oi} with respect to input {j},\n"
                       f"numerical:{numerical}\nanalytical:{analytical[j]}\n"
                       f"largest difference at (output, input) index {worst}")
                if raise_exception:
                    raise GradcheckError(msg)
                return False
    return True


def _numerical_jacobian(func, inputs, out_index, t, eps):
    flat = t._data.reshape(-1) if t._data.flags.c_contiguous else None
    if flat is None:
        raise GradcheckError("gradcheck needs contiguous inputs")
    columns = []
    for i in range(flat.size):
        orig = flat[i].item()
        flat[i] = orig + eps
        plus = backend.to_numpy(_outputs_of(func, inputs)[out_index]._data).astype(np.float64).ravel()
        flat[i] = orig - eps
        minus = backend.to_numpy(_outputs_of(func, inputs)[out_index]._data).astype(np.float64).ravel()
        flat[i] = orig
        columns.append((plus - minus) / (2 * eps))
    return np.stack(columns, axis=1) if columns else np.zeros((0, 0))


def _fast_check(func, inputs, diff_inputs, outputs, eps, atol, rtol, raise_exception):
    """PyTorch's fast mode: one random projection ``v^T J u`` per output, analytical
    (backward of ``v``, dotted with ``u``) against numerical (a directional difference)."""
    rng = np.random.default_rng(0)
    directions = [rng.uniform(-1, 1, size=t._data.shape) for t in diff_inputs]
    for oi, out in enumerate(outputs):
        v = rng.uniform(-1, 1, size=out._data.shape)
        grads = autograd_grad(_outputs_of(func, inputs)[oi], diff_inputs,
                              _wrap(backend.move_to(v.astype(out._data.dtype), out.device)), allow_unused=True)
        analytical = sum(float((backend.to_numpy(g._data) * u).sum())
                         for g, u in zip(grads, directions) if g is not None)
        shifted = []
        for sign in (1, -1):
            saved = [t._data.copy() for t in diff_inputs]
            for t, u in zip(diff_inputs, directions):
                t._data += backend.move_to(sign * eps * u, t.device)
            shifted.append(backend.to_numpy(_outputs_of(func, inputs)[oi]._data).astype(np.float64))
            for t, d in zip(diff_inputs, saved):
                t._data[...] = d
        numerical = float((((shifted[0] - shifted[1]) / (2 * eps)) * v).sum())
        if not np.isclose(analytical, numerical, rtol=rtol, atol=atol):
            msg = (f"Jacobian mismatch for output {oi} (fast mode, a random projection): "
                   f"numerical {numerical}, analytical {analytical}")
            if raise_exception:
                raise GradcheckError(msg)
            return False
    return True


def gradgradcheck(func, inputs, grad_outputs=None, eps=1e-6, atol=1e-5, rtol=1e-3, gen_non_contig_grad_outputs=False,
                  raise_exception=True, nondet_tol=0.0, check_undefined_grad=True, fast_mode=False):
    """True when the second derivatives (backward of the recorded backward, as
    ``create_graph=True`` records it) match finite differences of the first.

    ``grad_outputs`` (random when not given) are differentiated too, as in PyTorch.
    """
    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    outputs = _outputs_of(func, inputs)
    if grad_outputs is None:
        rng = np.random.default_rng(0)
        grad_outputs = tuple(_wrap(backend.move_to(rng.uniform(-1, 1, size=o._data.shape).astype(o._data.dtype),
                                                   o.device), requires_grad=True) for o in outputs)
    else:
        grad_outputs = tuple(grad_outputs) if isinstance(grad_outputs, (tuple, list)) else (grad_outputs,)
    n = len(inputs)

    def first_derivatives(*args):
        diff = [t for t in args[:n] if isinstance(t, Tensor) and t.requires_grad]
        grads = autograd_grad(_outputs_of(func, args[:n]), diff, args[n:], create_graph=True, allow_unused=True)
        return tuple(g for g in grads if g is not None)

    return gradcheck(first_derivatives, inputs + grad_outputs, eps=eps, atol=atol, rtol=rtol,
                     raise_exception=raise_exception, fast_mode=fast_mode)

"""``gradcheck``: compare backward against central finite differences (float64)."""

import numpy as np

from .. import backend
from ..tensor import Tensor, _wrap


class GradcheckError(RuntimeError):
    pass


def _outputs_of(func, inputs):
    out = func(*inputs)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return [o for o in outs if isinstance(o, Tensor) and o._data.dtype.kind == "f"]


def gradcheck(func, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True,
              check_undefined_grad=False, nondet_tol=0.0, fast_mode=False):
    """True when every analytical Jacobian entry matches the numerical one.

    Inputs that require grad must be float64 (float32 differences are too
    coarse to tell a wrong gradient from round-off).
    """
    from . import grad as autograd_grad
    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    diff_inputs = [t for t in inputs if isinstance(t, Tensor) and t.requires_grad]
    for t in diff_inputs:
        if t._data.dtype != np.float64:
            raise GradcheckError(f"Expect: float64 inputs that require grad, Actual: {t.dtype}")
    outputs = _outputs_of(func, inputs)
    if not outputs:
        raise GradcheckError("gradcheck expects func to return at least one floating-point Tensor")
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

"""``LBFGS``: limited-memory BFGS; each ``step(closure)`` runs up to ``max_iter``
quasi-Newton iterations, building an inverse-Hessian estimate from the last
``history_size`` gradient and step differences, with a fixed step or a strong
Wolfe line search; PyTorch's algorithm and state, iteration for iteration.

The iterations work on one flat vector of all parameters (arrays of the
parameters' dtype); the state keeps it as PyTorch does, as Tensors."""

from .. import backend
from ..autograd.grad_mode import enable_grad, no_grad
from ..tensor import Tensor, _wrap
from .line_search import strong_wolfe
from .optimizer import Optimizer, require_nonnegative
from .unshaped_state import UnshapedStateLoading

_ONE_GROUP = "LBFGS doesn't support per-parameter options (parameter groups)"


class LBFGS(UnshapedStateLoading, Optimizer):
    """``torch.optim.LBFGS``: one param group; ``step`` needs a closure that clears
    the gradients, recomputes the loss, calls ``backward`` and returns the loss.
    Its state sits under the first parameter, as in PyTorch."""

    _unshaped_state = ("func_evals", "n_iter", "d", "t", "old_dirs", "old_stps", "ro", "H_diag",
                       "prev_flat_grad", "prev_loss", "al")

    def __init__(self, params, lr=1, max_iter=20, max_eval=None, tolerance_grad=1e-7, tolerance_change=1e-9,
                 history_size=100, line_search_fn=None):
        require_nonnegative(lr=lr)
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        defaults = {"lr": lr, "max_iter": max_iter, "max_eval": max_eval, "tolerance_grad": tolerance_grad,
                    "tolerance_change": tolerance_change, "history_size": history_size,
                    "line_search_fn": line_search_fn}
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError(_ONE_GROUP)
        self._params = self.param_groups[0]["params"]

    # --- the flat view of all parameters ---------------------------------------------
    def _gather_flat_grad(self):
        xp = backend.array_module(self._params[0]._data)
        return xp.concatenate([p.grad._data.reshape(-1) if p.grad is not None
                               else xp.zeros(p._data.size, dtype=p._data.dtype) for p in self._params])

    def _add_grad(self, step_size, update):
        """``params += step_size * update``, ``update`` being flat."""
        offset = 0
        for p in self._params:
            param = p._data
            param += update[offset:offset + param.size].reshape(param.shape) * step_size
            offset += param.size
            p._vc[0] += 1

    def _clone_param(self):
        return [p._data.copy() for p in self._params]

    def _set_param(self, arrays):
        for p, arr in zip(self._params, arrays):
            p._data[...] = arr
            p._vc[0] += 1

    def _directional_evaluate(self, evaluate, x, t, d):
        """Loss and flat gradient at ``x + t * d``; the parameters are put back to ``x``."""
        self._add_grad(t, d)
        loss = float(evaluate())
        flat_grad = self._gather_flat_grad()
        self._set_param(x)
        return loss, flat_grad

    # --- the step ----------------------------------------------------------------------
    def step(self, closure=None):
        """Run up to ``max_iter`` iterations; returns the loss ``closure`` gave first."""
        if closure is None:
            raise TypeError("LBFGS.step() missing 1 required positional argument: 'closure' (a function "
                            "that clears the gradients, recomputes the loss, calls backward and returns it)")
        if len(self.param_groups) != 1:
            raise ValueError(_ONE_GROUP)
        self._opt_called = True

        def evaluate():
            with enable_grad():
                return closure()

        with no_grad():
            return self._run(evaluate)

    def _run(self, evaluate):
        group = self.param_groups[0]
        lr, max_iter, max_eval = group["lr"], group["max_iter"], group["max_eval"]
        tolerance_grad, tolerance_change = group["tolerance_grad"], group["tolerance_change"]
        line_search_fn, history_size = group["line_search_fn"], group["history_size"]

        state = self.state[self._params[0]]
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)

        orig_loss = evaluate()
        loss = float(orig_loss)
        current_evals = 1
        state["func_evals"] += 1
        flat_grad = self._gather_flat_grad()
        opt_cond = abs(flat_grad).max() <= tolerance_grad
        if opt_cond:
            return orig_loss

        device = self._params[0].device
        d, t = _array(state.get("d"), device), _array(state.get("t"), device)
        old_dirs, old_stps, ro = (_arrays(state.get(k), device) for k in ("old_dirs", "old_stps", "ro"))
        H_diag = _array(state.get("H_diag"), device)
        prev_flat_grad, prev_loss = _array(state.get("prev_flat_grad"), device), state.get("prev_loss")

        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1

            # descent direction
            if state["n_iter"] == 1:
                d = -flat_grad
                old_dirs, old_stps, ro = [], [], []
                H_diag = 1
            else:
                y = flat_grad - prev_flat_grad
                s = d * t
                ys = y.dot(s)
                if ys > 1e-10:  # curvature condition: remember this pair
                    if len(old_dirs) == history_size:
                        del old_dirs[0], old_stps[0], ro[0]
                    old_dirs.append(y)
                    old_stps.append(s)
                    ro.append(1.0 / ys)
                    H_diag = ys / y.dot(y)  # scale of the initial inverse Hessian
                if "al" not in state:
                    state["al"] = [None] * history_size
                al = _arrays(state["al"], device)
                d = _two_loop(flat_grad, old_dirs, old_stps, ro, H_diag, al)
                state["al"] = _tensors(al)

            if prev_flat_grad is None:
                prev_flat_grad = flat_grad.copy()
            else:
                prev_flat_grad[...] = flat_grad
            prev_loss = loss

            # step length
            t = min(1.0, 1.0 / abs(flat_grad).sum()) * lr if state["n_iter"] == 1 else lr
            gtd = flat_grad.dot(d)
            if gtd > -tolerance_change:  # not a descent direction (any more)
                break

            ls_func_evals = 0
            if line_search_fn is not None:
                if line_search_fn != "strong_wolfe":
                    raise RuntimeError("only 'strong_wolfe' is supported")
                x_init = self._clone_param()

                def obj_func(x, t, d):
                    return self._directional_evaluate(evaluate, x, t, d)

                loss, flat_grad, t, ls_func_evals = strong_wolfe(obj_func, x_init, t, d, loss, flat_grad, gtd)
                self._add_grad(t, d)
                opt_cond = abs(flat_grad).max() <= tolerance_grad
            else:
                self._add_grad(t, d)
                if n_iter != max_iter:
                    # re-evaluate except on the last iteration, whose loss nobody reads
                    loss = float(evaluate())
                    flat_grad = self._gather_flat_grad()
                    opt_cond = abs(flat_grad).max() <= tolerance_grad
                    ls_func_evals = 1
            current_evals += ls_func_evals
            state["func_evals"] += ls_func_evals

            if n_iter == max_iter or current_evals >= max_eval or opt_cond:
                break
            if abs(d * t).max() <= tolerance_change:  # lack of progress
                break
            if abs(loss - prev_loss) < tolerance_change:
                break

        state.update(d=_tensor(d), t=_tensor(t), old_dirs=_tensors(old_dirs), old_stps=_tensors(old_stps),
                     ro=_tensors(ro), H_diag=_tensor(H_diag), prev_flat_grad=_tensor(prev_flat_grad),
                     prev_loss=prev_loss)
        return orig_loss


def _two_loop(flat_grad, old_dirs, old_stps, ro, H_diag, al):
    """The L-BFGS two-loop recursion: minus the inverse-Hessian estimate times the
    gradient, in one buffer; fills ``al`` (kept in the state, as PyTorch does)."""
    q = -flat_grad
    for i in range(len(old_dirs) - 1, -1, -1):
        al[i] = old_stps[i].dot(q) * ro[i]
        q += old_dirs[i] * -al[i]
    r = q * H_diag
    for i in range(len(old_dirs)):
        be_i = old_dirs[i].dot(r) * ro[i]
        r += old_stps[i] * (al[i] - be_i)
    return r


def _array(value, device):
    """A state Tensor as an array on the parameters' device; numbers and None pass."""
    return backend.move_to(value._data, device) if isinstance(value, Tensor) else value


def _arrays(values, device):
    return None if values is None else [_array(v, device) for v in values]


def _tensor(value):
    """An array or NumPy scalar as a Tensor for the state; Python numbers and None pass
    (``type``, not ``isinstance``: ``np.float64`` is a ``float``)."""
    if value is None or type(value) in (bool, int, float):
        return value
    return _wrap(backend.as_array(value))


def _tensors(values):
    return None if values is None else [_tensor(v) for v in values]

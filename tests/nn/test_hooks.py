"""Module hooks: forward pre-hooks and forward hooks (with replacement values,
kwargs, ordering, handles), global hooks, and full backward (pre-)hooks whose
gradients are compared number by number with PyTorch's."""

import warnings

import numpy as np
import pytest

import distnn
import distnn.nn as nn
from distnn.nn.modules import module as module_mod
from op_check import requires_torch, torch

W1 = np.array([[0.5, -1.0, 0.25, 2.0], [1.5, 0.5, -0.5, 0.0], [-1.0, 1.0, 1.0, 0.5]], np.float32)
B1 = np.array([0.1, -0.2, 0.3], np.float32)
W2 = np.array([[1.0, -2.0, 0.5], [0.25, 1.0, -1.0]], np.float32)
X = np.array([[1.0, 2.0, -1.0, 0.5], [0.0, -0.5, 1.5, 2.0]], np.float32)
Y = np.array([[2.0, -1.0], [0.5, 3.0]], np.float32)


def _modules(lib):
    """Equivalent test-local modules for ``lib`` (distnn or torch) with fixed weights."""

    def param(a):
        return lib.nn.Parameter(lib.from_numpy(a.copy()))

    class MLP(lib.nn.Module):
        def __init__(self):
            super().__init__()
            self.w1, self.b1, self.w2 = param(W1), param(B1), param(W2)

        def forward(self, x):
            return lib.tanh(x @ self.w1.T + self.b1) @ self.w2.T

    class TwoInputs(MLP):
        """forward(x, y, scale) -> (main output, a second output that may go unused)."""

        def forward(self, x, y, scale=1.0):
            h = super().forward(x)
            return h * y * scale, (x * x).sum()

    return MLP, TwoInputs


def _np(t):
    return None if t is None else np.array(t.detach().tolist(), dtype=np.float32)


def _scenario(lib, name, register):
    """Run one backward scenario; return what hooks saw and the resulting gradients."""
    mlp_cls, two_cls = _modules(lib)
    seen = []
    x = lib.from_numpy(X.copy()).requires_grad_(True)
    y = lib.from_numpy(Y.copy())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name == "single_input":
            m = mlp_cls()
            register(m, seen)
            out = m(x)
            (out * lib.from_numpy(Y.copy())).sum().backward()
        elif name == "input_without_grad":
            m = mlp_cls()
            register(m, seen)
            x = lib.from_numpy(X.copy())
            (m(x) ** 2).sum().backward()
        elif name == "mixed_inputs":
            m = two_cls()
            register(m, seen)
            out, _unused = m(x, y, 2.0)
            out.sum().backward()
        elif name == "both_outputs_used":
            m = two_cls()
            register(m, seen)
            out, sq = m(x, y)
            (out.sum() + sq * 3).backward()
        else:
            raise ValueError(name)
    grads = {"x": _np(x.grad)} | {n: _np(p.grad) for n, p in m.named_parameters()}
    return seen, grads


def _record_full(m, seen):
    m.register_full_backward_hook(
        lambda mod, gi, go: seen.append(("full", [_np(g) for g in gi], [_np(g) for g in go])))


def _record_pre(m, seen):
    m.register_full_backward_pre_hook(lambda mod, go: seen.append(("pre", [_np(g) for g in go])))


def _record_both(m, seen):
    _record_pre(m, seen)
    _record_full(m, seen)


def _double_grad_input(m, seen):
    m.register_full_backward_hook(lambda mod, gi, go: tuple(None if g is None else g * 2 for g in gi))
    _record_full(m, seen)  # a later hook sees the replaced grad_input


def _triple_grad_output(m, seen):
    m.register_full_backward_pre_hook(lambda mod, go: tuple(None if g is None else g * 3 for g in go))
    _record_full(m, seen)  # the full hook sees the replaced grad_output


def _legacy_register(m, seen):
    m.register_backward_hook(
        lambda mod, gi, go: seen.append(("full", [_np(g) for g in gi], [_np(g) for g in go])))


def _assert_same(ours, theirs):
    if isinstance(theirs, (list, tuple)):
        assert len(ours) == len(theirs)
        for o, t in zip(ours, theirs):
            _assert_same(o, t)
    elif isinstance(theirs, dict):
        assert ours.keys() == theirs.keys()
        for k in theirs:
            _assert_same(ours[k], theirs[k])
    elif theirs is None or isinstance(theirs, str):
        assert ours == theirs
    else:
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


# Returning grad_input when no input requires grad is an error (tested below), hence the filter.
_CASES = [(name, register)
          for name in ("single_input", "input_without_grad", "mixed_inputs", "both_outputs_used")
          for register in (_record_full, _record_pre, _record_both, _double_grad_input,
                           _triple_grad_output, _legacy_register)
          if not (name == "input_without_grad" and register is _double_grad_input)]


@requires_torch
@pytest.mark.parametrize("name,register", _CASES, ids=[f"{n}-{r.__name__}" for n, r in _CASES])
def test_backward_hooks_match_torch(name, register):
    ours = _scenario(distnn, name, register)
    assert ours[0], "no hook fired"
    # register_backward_hook is the full hook here (torch's legacy one saw only the last op)
    theirs = _scenario(torch, name, _record_full if register is _legacy_register else register)
    _assert_same(ours, theirs)


def test_hook_on_module_whose_input_does_not_require_grad_gets_none():
    mlp_cls, _ = _modules(distnn)
    m = mlp_cls()
    seen = []
    m.register_full_backward_hook(lambda mod, gi, go: seen.append((gi, go)))
    with pytest.warns(UserWarning, match="no inputs require gradients"):
        m(distnn.from_numpy(X)).sum().backward()
    (grad_input, grad_output), = seen
    assert grad_input == (None,)
    assert grad_output[0].shape == (2, 2) and np.all(grad_output[0].numpy() == 1)


def test_returning_gradients_when_no_input_requires_grad_raises():
    m = _modules(distnn)[0]()
    m.register_full_backward_hook(lambda mod, gi, go: (distnn.ones(2, 4),))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(RuntimeError, match="should always return None"):
            m(distnn.from_numpy(X)).sum().backward()


def test_backward_hook_wrong_number_of_grads_raises():
    m = _modules(distnn)[0]()
    m.register_full_backward_hook(lambda mod, gi, go: (gi[0], gi[0]))
    x = distnn.from_numpy(X.copy()).requires_grad_(True)
    with pytest.raises(RuntimeError, match="invalid number of grad_input, got 2, but expected 1"):
        m(x).sum().backward()


def test_backward_pre_hook_wrong_number_of_grads_raises():
    m = _modules(distnn)[0]()
    m.register_full_backward_pre_hook(lambda mod, go: (go[0], go[0]))
    x = distnn.from_numpy(X.copy()).requires_grad_(True)
    with pytest.raises(RuntimeError, match="invalid number of grad_output, got 2, but expected 1"):
        m(x).sum().backward()


def _counting_module():
    m = _modules(distnn)[0]()
    calls = []
    handle = m.register_full_backward_hook(lambda mod, gi, go: calls.append(mod))
    return m, calls, handle


def test_backward_hook_fires_once_per_backward():
    m, calls, handle = _counting_module()
    x = distnn.from_numpy(X.copy()).requires_grad_(True)
    loss = m(x).sum()
    loss.backward(retain_graph=True)
    assert calls == [m]
    loss.backward()
    assert calls == [m, m]
    m(m(x[:, :2].repeat(1, 2)).repeat(1, 2)).sum().backward()  # two calls of the module, two firings
    assert len(calls) == 4
    handle.remove()
    m(x).sum().backward()
    assert len(calls) == 4


def test_kept_grad_input_is_not_changed_by_later_accumulation():
    m = _modules(distnn)[0]()
    kept = []
    m.register_full_backward_hook(lambda mod, gi, go: kept.append(gi[0]))
    x = distnn.from_numpy(X.copy()).requires_grad_(True)
    m(x).sum().backward()
    first = kept[0].numpy().copy()
    m(x).sum().backward()  # accumulates into x.grad in place
    np.testing.assert_array_equal(kept[0].numpy(), first)
    np.testing.assert_allclose(x.grad.numpy(), 2 * first, rtol=1e-6)


def test_no_hooks_means_no_wrapping_and_no_grad_means_no_backward_hooks():
    m = _modules(distnn)[0]()
    x = distnn.from_numpy(X.copy()).requires_grad_(True)
    assert m(x).grad_fn.name() != "BackwardHookFunctionBackward"
    m.register_full_backward_hook(lambda mod, gi, go: None)
    assert m(x).grad_fn.name() == "BackwardHookFunctionBackward"
    with distnn.no_grad():
        assert m(x).grad_fn is None


@requires_torch
def test_backward_hooks_on_builtin_layers_match_torch():
    def run(lib, state=None):
        net = lib.nn.Sequential(lib.nn.Linear(4, 3), lib.nn.ReLU(), lib.nn.Linear(3, 2))
        if state is not None:
            net.load_state_dict({k: lib.from_numpy(v.copy()) for k, v in state.items()})
        seen = []
        for layer in net:
            layer.register_full_backward_hook(
                lambda mod, gi, go: seen.append((type(mod).__name__, [_np(g) for g in gi], [_np(g) for g in go])))
        x = lib.from_numpy(X.copy()).requires_grad_(True)
        (net(x) * lib.from_numpy(Y.copy())).sum().backward()
        return seen, _np(x.grad), [_np(p.grad) for p in net.parameters()], net

    theirs = run(torch)
    ours = run(distnn, {k: v.detach().numpy() for k, v in theirs[3].state_dict().items()})
    assert [name for name, _, _ in ours[0]] == ["Linear", "ReLU", "Linear"]  # output layer first
    _assert_same(ours[:3], theirs[:3])


# --- forward hooks ------------------------------------------------------------------------
class Add(nn.Module):
    def forward(self, x, y=0.0):
        return x + y


def test_forward_pre_hook_replaces_input():
    m = Add()
    m.register_forward_pre_hook(lambda mod, args: args[0] * 10)  # a non-tuple is wrapped
    assert m(distnn.tensor([1.0])).tolist() == [10.0]


def test_forward_pre_hook_with_kwargs():
    m = Add()
    m.register_forward_pre_hook(lambda mod, args, kwargs: (args, {"y": kwargs["y"] + 1}), with_kwargs=True)
    assert m(distnn.tensor([1.0]), y=1.0).tolist() == [3.0]


def test_forward_pre_hook_with_kwargs_bad_return_raises():
    m = Add()
    m.register_forward_pre_hook(lambda mod, args, kwargs: args, with_kwargs=True)
    with pytest.raises(RuntimeError, match=r"must return None or a tuple of \(new_args, new_kwargs\)"):
        m(distnn.tensor([1.0]))


def test_forward_hook_replaces_output_and_sees_inputs():
    m = Add()
    seen = []
    m.register_forward_hook(lambda mod, args, out: seen.append((mod, len(args))))
    m.register_forward_hook(lambda mod, args, out: out * 2)
    m.register_forward_hook(lambda mod, args, kwargs, out: out + kwargs["y"], with_kwargs=True)
    assert m(distnn.tensor([1.0]), y=5.0).tolist() == [17.0]
    assert seen == [(m, 1)]


def test_hook_order_prepend_and_removal():
    m = Add()
    order = []
    h1 = m.register_forward_hook(lambda *a: order.append("first"))
    m.register_forward_hook(lambda *a: order.append("prepended"), prepend=True)
    m.register_forward_pre_hook(lambda *a: order.append("pre"))
    m(distnn.tensor([1.0]))
    assert order == ["pre", "prepended", "first"]
    h1.remove()
    order.clear()
    m(distnn.tensor([1.0]))
    assert order == ["pre", "prepended"]


def test_handle_as_context_manager_removes_hook_and_its_flags():
    m = Add()
    with m.register_forward_hook(lambda mod, args, kwargs, out: out * 0, with_kwargs=True) as handle:
        assert m(distnn.tensor([1.0])).tolist() == [0.0]
        assert handle.id in m._forward_hooks_with_kwargs
    assert m(distnn.tensor([1.0])).tolist() == [1.0]
    assert not m._forward_hooks and not m._forward_hooks_with_kwargs


def test_always_call_hook_runs_when_forward_raises():
    class Broken(nn.Module):
        def forward(self, x):
            raise ValueError("boom")

    m = Broken()
    calls = []
    m.register_forward_hook(lambda mod, args, out: calls.append("always"), always_call=True)
    m.register_forward_hook(lambda mod, args, out: calls.append("normal"))
    with pytest.raises(ValueError, match="boom"):
        m(distnn.ones(1))
    assert calls == ["always"]


def test_global_forward_hooks_see_every_module():
    net = nn.Sequential(Add(), nn.Sequential(Add()))
    seen = []
    handle = module_mod.register_module_forward_hook(lambda mod, args, out: seen.append(type(mod).__name__))
    pre = module_mod.register_module_forward_pre_hook(lambda mod, args: seen.append("pre"))
    try:
        net(distnn.ones(1))
    finally:
        handle.remove()
        pre.remove()
    assert seen == ["pre", "pre", "Add", "pre", "pre", "Add", "Sequential", "Sequential"]
    seen.clear()
    net(distnn.ones(1))
    assert seen == []


def test_global_backward_hook():
    m = _modules(distnn)[0]()
    seen = []
    handle = module_mod.register_module_full_backward_hook(lambda mod, gi, go: seen.append(gi[0].shape))
    try:
        m(distnn.from_numpy(X.copy()).requires_grad_(True)).sum().backward()
    finally:
        handle.remove()
    assert seen == [(2, 4)]


@pytest.mark.parametrize("register", [
    lambda m: m.register_forward_pre_hook(lambda mod, args: None),
    lambda m: m.register_forward_hook(lambda mod, args, out: None),
    lambda m: m.register_full_backward_hook(lambda mod, gin, gout: None),
    lambda m: m.register_full_backward_pre_hook(lambda mod, gout: None),
    lambda m: module_mod.register_module_forward_hook(lambda mod, args, out: None),
])
def test_hooks_that_change_nothing_leave_output_and_gradients_as_without_hooks(register):
    """A module call without hooks skips the hook machinery; with do-nothing hooks the
    results must be identical, and removing the hook returns to the same results."""
    def run(net):
        x = distnn.tensor(X, requires_grad=True)
        out = net(x)
        ((out - distnn.tensor(Y)) ** 2).sum().backward()
        grads = [p.grad.numpy().copy() for p in net.parameters()] + [x.grad.numpy()]
        net.zero_grad()
        return [out.detach().numpy()] + grads

    net = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))
    with distnn.no_grad():
        net[0].weight.copy_(distnn.tensor(W1))
        net[0].bias.copy_(distnn.tensor(B1))
        net[2].weight.copy_(distnn.tensor(W2))
    plain = run(net)
    handle = register(net[0])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            hooked = run(net)
    finally:
        handle.remove()
    for a, b in zip(plain + plain, hooked + run(net)):
        np.testing.assert_array_equal(a, b)

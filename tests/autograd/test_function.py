"""User-defined autograd.Function and gradcheck."""

import re

import numpy as np
import pytest

import distnn
from distnn import autograd


class Cube(autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x * x

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        assert isinstance(grad, distnn.Tensor)
        return grad * 3 * x * x


class ScaleBoth(autograd.Function):
    """Two inputs, one non-tensor argument, two outputs."""

    @staticmethod
    def forward(ctx, a, b, k):
        ctx.k = k
        return a * k, b * k

    @staticmethod
    def backward(ctx, ga, gb):
        return ga * ctx.k, gb * ctx.k, None


def test_custom_function_forward_backward():
    x = distnn.tensor([1.0, 2.0], requires_grad=True)
    y = Cube.apply(x)
    assert y.grad_fn.name() == "CubeBackward"
    y.sum().backward()
    assert x.grad.tolist() == [3.0, 12.0]


def test_custom_function_needs_input_grad_and_multiple_outputs():
    a = distnn.tensor([1.0], requires_grad=True)
    b = distnn.tensor([1.0])
    out_a, out_b = ScaleBoth.apply(a, b, 5.0)
    assert out_a.requires_grad and out_a.grad_fn.needs_input_grad == (True, False, False)
    out_a.sum().backward()  # out_b unused: its gradient is materialised as zeros
    assert a.grad.tolist() == [5.0]


def test_custom_function_saved_tensor_modified_in_place_raises():
    x = distnn.tensor([1.0, 2.0], requires_grad=True)
    h = x * 1
    y = Cube.apply(h)
    with distnn.no_grad():
        h.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def _modified_saved_input(x):
    y = x.sigmoid()
    z = y * 2  # Mul saves y, which is output 0 of Sigmoid
    y.add_(1)
    return z


def _modified_saved_output(x):
    y = x.exp()  # Exp saves its output
    y.add_(1)
    return y


def _modified_saved_leaf(x):
    z = x * x
    with distnn.no_grad():
        x.add_(1)
    return z


@pytest.mark.parametrize("build,described", [
    (_modified_saved_input, "[torch.FloatTensor [2]], which is output 0 of SigmoidBackward0, is at version 1; "
                            "expected version 0 instead."),
    (_modified_saved_output, "[torch.FloatTensor [2]], which is output 0 of ExpBackward0, is at version 1; "
                             "expected version 0 instead."),
    (_modified_saved_leaf, "[torch.FloatTensor [2]], is at version 1; expected version 0 instead."),
])
def test_version_error_names_the_saved_tensor_as_it_was_saved(build, described):
    x = distnn.tensor([1.0, 2.0], requires_grad=True)
    z = build(x)
    with pytest.raises(RuntimeError) as info:
        z.sum().backward()
    assert str(info.value).endswith("modified by an inplace operation: " + described)


class _ExpSavingOutput(autograd.Function):
    @staticmethod
    def forward(ctx, x):
        y = x.exp()
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        assert y.grad_fn is ctx and y.requires_grad  # the output itself, as PyTorch hands it back
        return g * y


@pytest.mark.parametrize("build", [lambda x: x.exp(), lambda x: x.sigmoid() * 2, _ExpSavingOutput.apply],
                         ids=["op", "op_chain", "function"])
def test_graph_that_saves_outputs_is_freed_without_the_garbage_collector(build):
    import gc
    import weakref
    x = distnn.tensor([1.0, 2.0], requires_grad=True)
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        y = build(x * 1)
        node = weakref.ref(y.grad_fn)
        del y
        assert node() is None
    finally:
        if was_enabled:
            gc.enable()


def test_function_that_saves_its_output_gets_it_back_with_its_history():
    x = distnn.tensor([1.0, 2.0], requires_grad=True)
    y = _ExpSavingOutput.apply(x)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.exp([1.0, 2.0]), rtol=1e-6)
    y = _ExpSavingOutput.apply(x)
    y.add_(1)  # the saved output changed: backward must refuse, naming it
    with pytest.raises(RuntimeError, match="output 0 of _ExpSavingOutputBackward, is at version 1"):
        y.sum().backward()


def test_wrong_number_of_gradients_is_reported():
    class Bad(autograd.Function):
        @staticmethod
        def forward(ctx, a, b):
            return a + b

        @staticmethod
        def backward(ctx, g):
            return g

    a = distnn.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="incorrect number of gradients"):
        Bad.apply(a, a).sum().backward()


def test_gradcheck_passes_for_correct_and_fails_for_wrong_gradient():
    x = distnn.tensor(np.random.rand(3), dtype=distnn.float64, requires_grad=True)
    assert autograd.gradcheck(Cube.apply, (x,))

    class Wrong(Cube):
        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return grad * 2 * x * x

    with pytest.raises(RuntimeError, match="Jacobian mismatch"):
        autograd.gradcheck(Wrong.apply, (x,))


def test_gradcheck_requires_float64():
    x = distnn.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="float64"):
        autograd.gradcheck(Cube.apply, (x,))


def test_variable_is_an_alias():
    t = distnn.randn(2)
    v = autograd.Variable(t, requires_grad=True)
    assert v is t and v.requires_grad


# --- in-place Functions (ctx.mark_dirty), returned inputs and view outputs, against PyTorch.
# Each scenario is written once against ``lib`` (distnn or torch) and reports what it saw.

def _side_by_side(scenario):
    ours = scenario(distnn)
    torch = pytest.importorskip("torch")
    return ours, scenario(torch)


def _outcome(run):
    """What ``run()`` returned, or the message of the RuntimeError it raised (torch's hint dropped)."""
    try:
        return run()
    except RuntimeError as exc:
        return "RuntimeError: " + str(exc).split(" Hint:")[0]


def _version_error_text(outcome):
    """The part of the version error both libraries word alike (they name the producer differently)."""
    assert outcome.startswith("RuntimeError: one of the variables needed for gradient computation has been "
                              "modified by an inplace operation"), outcome
    return re.search(r"is at version \d+; expected version \d+ instead\.", outcome).group(0)


def _double_in_place(lib):
    class DoubleInPlace(lib.autograd.Function):
        @staticmethod
        def forward(ctx, t):
            t.mul_(2)
            ctx.mark_dirty(t)
            return t

        @staticmethod
        def backward(ctx, g):
            return g * 2

    return DoubleInPlace


def _identity(lib, make_output=lambda t: t, grad_of_input=lambda lib, g: g.reshape(-1) * 2):
    class Identity(lib.autograd.Function):
        @staticmethod
        def forward(ctx, t):
            return make_output(t)

        @staticmethod
        def backward(ctx, g):
            return grad_of_input(lib, g)

    return Identity


def _node_name(t):
    return None if t.grad_fn is None else type(t.grad_fn).__name__


def _dirty_input_rebased(lib):
    a = lib.tensor([1.0, 2.0], requires_grad=True)
    b = a * 3
    out = _double_in_place(lib).apply(b)
    seen = {"same object": out is b, "grad_fn": _node_name(b), "version": b._version, "values": b.tolist()}
    (lib.tensor([5.0, 7.0]) * b).sum().backward()  # a use after the call goes through the Function
    seen["a.grad"] = a.grad.tolist()
    return seen


def _dirty_input_not_requiring_grad(lib):
    class AddInPlace(lib.autograd.Function):
        @staticmethod
        def forward(ctx, t, w):
            t.add_(w)
            ctx.mark_dirty(t)
            return t

        @staticmethod
        def backward(ctx, g):
            return g, g

    t, w = lib.tensor([1.0, 2.0]), lib.tensor([1.0, 1.0], requires_grad=True)
    out = AddInPlace.apply(t, w)
    seen = {"same object": out is t, "grad_fn": _node_name(t), "requires_grad": t.requires_grad,
            "version": t._version}
    (t * 3).sum().backward()
    seen["w.grad"] = w.grad.tolist()
    return seen


def _dirty_output_saved_for_backward(lib):
    class ReluInPlace(lib.autograd.Function):
        @staticmethod
        def forward(ctx, t):
            t.clamp_(min=0)
            ctx.mark_dirty(t)
            ctx.save_for_backward(t)
            return t

        @staticmethod
        def backward(ctx, g):
            (t,) = ctx.saved_tensors
            return g * (t > 0)

    a = lib.tensor([-1.0, 2.0], requires_grad=True)
    b = a * 3
    ReluInPlace.apply(b)
    (b * b).sum().backward()
    seen = {"a.grad": a.grad.tolist()}
    b = a * 3
    ReluInPlace.apply(b)
    b.add_(1)  # changes the output the Function saved
    seen["modified afterwards"] = _version_error_text(_outcome(lambda: b.sum().backward()))
    return seen


@pytest.mark.parametrize("scenario", [_dirty_input_rebased, _dirty_input_not_requiring_grad,
                                      _dirty_output_saved_for_backward])
def test_mark_dirty_rebases_the_input_in_place_as_torch(scenario):
    ours, theirs = _side_by_side(scenario)
    assert ours == theirs


def _old_graph_saved_dirty_input(lib, through_view):
    a = lib.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    b = a * 3
    v = b[:2]
    saved = v if through_view else b
    d = saved * saved  # saves the tensor the Function will modify
    _double_in_place(lib).apply(b)
    seen = {"view version": v._version, "base version": b._version, "view values": v.tolist()}
    seen["backward"] = _version_error_text(_outcome(lambda: d.sum().backward()))
    return seen


@pytest.mark.parametrize("through_view", [False, True], ids=["input", "view_of_input"])
def test_old_graph_that_saved_a_dirty_input_refuses_backward_as_torch(through_view):
    ours, theirs = _side_by_side(lambda lib: _old_graph_saved_dirty_input(lib, through_view))
    assert ours == theirs


@pytest.mark.parametrize("make_input", [
    lambda lib: lib.tensor([1.0, 2.0], requires_grad=True),
    lambda lib: lib.tensor([1.0, 2.0], requires_grad=True)[:1],
], ids=["leaf", "view_of_leaf"])
def test_mark_dirty_on_a_leaf_requiring_grad_raises_as_torch(make_input):
    ours, theirs = _side_by_side(lambda lib: _outcome(lambda: _double_in_place(lib).apply(make_input(lib))))
    assert ours == theirs and ours.startswith("RuntimeError: a ")


def _dirty_but_not_returned(lib):
    class Scale(lib.autograd.Function):
        @staticmethod
        def forward(ctx, t):
            t.mul_(2)
            ctx.mark_dirty(t)
            return t * 1

        @staticmethod
        def backward(ctx, g):
            return g * 2

    return _outcome(lambda: Scale.apply(lib.tensor([1.0, 2.0], requires_grad=True) * 3))


def test_mark_dirty_of_a_tensor_not_returned_raises_as_torch():
    ours, theirs = _side_by_side(_dirty_but_not_returned)
    assert ours == theirs and "must all be outputs of the Function" in ours


def test_mark_dirty_on_a_view_rewrites_the_base_history_as_torch():
    def scenario(lib):
        a = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
        b = a * 3
        view = b[1:]
        out = _double_in_place(lib).apply(view)
        seen = {"same object": out is view, "values": b.tolist(), "version": b._version}
        (lib.tensor([5.0, 7.0, 11.0]) * b).sum().backward()  # through the base: the Function's backward counts
        seen["a.grad"] = a.grad.tolist()
        return seen

    ours, theirs = _side_by_side(scenario)
    assert ours == theirs


def test_input_returned_as_is_then_base_modified_in_place_raises_as_torch():
    def scenario(lib):
        a = lib.tensor([1.0, 2.0], requires_grad=True)
        b = a * 3
        out = _identity(lib).apply(b)
        b.mul_(2)
        return _outcome(lambda: out.sum().backward())

    ours, theirs = _side_by_side(scenario)
    assert ours == theirs and "created inside a custom Function" in ours


@pytest.mark.parametrize("leaf", [False, True], ids=["non_leaf", "leaf"])
def test_input_returned_without_mark_dirty_is_a_new_alias_as_torch(leaf):
    def scenario(lib):
        a = lib.tensor([1.0, 2.0], requires_grad=True)
        b = a if leaf else a * 3
        out = _identity(lib).apply(b)
        seen = {"same object": out is b, "alias of input": out._base is b, "shares data": out.data_ptr() == b.data_ptr(),
                "out grad_fn": _node_name(out), "input grad_fn": _node_name(b)}
        (out.sum() + b.sum()).backward()
        seen["a.grad"] = a.grad.tolist()
        with lib.no_grad():
            b.add_(1)
        seen["versions"] = (out._version, b._version)
        return seen

    ours, theirs = _side_by_side(scenario)
    assert ours == theirs


@pytest.mark.parametrize("make_output,grad_of_input", [
    (lambda t: t.view(2, 2), lambda lib, g: g.reshape(4) * 2),
    (lambda t: t[1:], lambda lib, g: lib.cat([lib.zeros(1), g * 2])),
], ids=["view", "slice"])
def test_output_that_is_a_view_of_an_input_as_torch(make_output, grad_of_input):
    def scenario(lib):
        a = lib.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
        b = a * 3
        out = _identity(lib, make_output, grad_of_input).apply(b)
        seen = {"base": out._base is b, "grad_fn": _node_name(out), "version shared": out._version == b._version}
        seen["grad"] = _outcome(lambda: lib.autograd.grad(out.sum(), a)[0].tolist())
        return seen

    ours, theirs = _side_by_side(scenario)
    assert ours == theirs


def _dirty_input_and_a_view_of_it_returned(lib):
    class DoubleAndView(lib.autograd.Function):
        @staticmethod
        def forward(ctx, t):
            t.mul_(2)
            ctx.mark_dirty(t)
            return t, t.view(2, 2)

        @staticmethod
        def backward(ctx, g, g_view):
            return g * 2 + g_view.reshape(4)

    a = lib.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    b = a * 3
    out, view = DoubleAndView.apply(b)
    seen = {"same object": out is b, "view base": view._base is b, "grad_fns": (_node_name(b), _node_name(view)),
            "versions": (b._version, view._version)}
    (out.sum() + view.sum()).backward()
    seen["a.grad"] = a.grad.tolist()
    return seen


def test_dirty_input_returned_with_a_view_of_it_as_torch():
    ours, theirs = _side_by_side(_dirty_input_and_a_view_of_it_returned)
    assert ours == theirs


def _non_differentiable_and_unmaterialized(lib):
    class SplitSign(lib.autograd.Function):
        @staticmethod
        def forward(ctx, t):
            ctx.mark_non_differentiable(t)  # the returned input comes back detached
            ctx.set_materialize_grads(False)
            return t * 2, t, (t > 0).float()

        @staticmethod
        def backward(ctx, g, g_input, g_sign):
            ctx.seen = (g is None, g_input is None, g_sign is None)
            return g * 2

    a = lib.tensor([-1.0, 2.0], requires_grad=True)
    doubled, same, sign = SplitSign.apply(a)
    seen = {"requires_grad": (doubled.requires_grad, same.requires_grad, sign.requires_grad),
            "same object": same is a, "shares version": same._version == a._version}
    doubled.sum().backward()
    seen["a.grad"] = a.grad.tolist()
    seen["grads that reached backward"] = doubled.grad_fn.seen
    return seen


def test_mark_non_differentiable_and_set_materialize_grads_as_torch():
    ours, theirs = _side_by_side(_non_differentiable_and_unmaterialized)
    assert ours == theirs

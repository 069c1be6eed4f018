"""User-defined autograd.Function and gradcheck."""

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

"""In-place ops on Tensor: version counters (shared with views), the checks
that keep backward from using overwritten values, and histories rebased onto
the out-of-place op so gradients come out as PyTorch's."""

import numpy as np
import pytest

import distnn
from op_check import requires_torch, torch


def _run_both(fn, *arrays):
    """``fn(lib, *leaves)`` under distnn and torch; returns both lists of leaf gradients."""
    grads = []
    for lib in (distnn, torch):
        leaves = [lib.tensor(np.asarray(a, dtype=np.float32), requires_grad=True) for a in arrays]
        fn(lib, *leaves).sum().backward()
        grads.append([leaf.grad.numpy() for leaf in leaves])
    return grads


@pytest.mark.parametrize("modify", [lambda y: y.add_(1), lambda y: y.mul_(2), lambda y: y.__setitem__(0, 3.0),
                                    lambda y: y.masked_fill_(y > 1, 0.0)])
@pytest.mark.parametrize("make", [lambda x: x.exp(), lambda x: x.sigmoid(), lambda x: x.tanh()])
def test_modifying_a_saved_output_breaks_backward(make, modify):
    x = distnn.tensor([0.5, 1.0, 2.0], requires_grad=True)
    y = make(x)
    modify(y)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_modifying_a_saved_input_breaks_backward():
    x = distnn.tensor([0.5, 1.0], requires_grad=True)
    h = x * 1
    y = h * h
    h.add_(1)
    with pytest.raises(RuntimeError, match="is at version 1; expected version 0"):
        y.sum().backward()


@pytest.mark.parametrize("modify", [lambda x: x.add_(1), lambda x: x.mul_(2), lambda x: x.zero_(),
                                    lambda x: x.__setitem__(0, 1.0), lambda x: x.fill_(2.0),
                                    lambda x: x.masked_fill_(x > 0, 1.0), lambda x: x.clamp_(min=0)])
def test_inplace_on_leaf_requiring_grad(modify):
    x = distnn.tensor([1.0, -2.0, 3.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        modify(x)
    assert x._version == 0
    with distnn.no_grad():
        modify(x)
    assert x._version == 1 and x.grad_fn is None and x.requires_grad


@requires_torch
def test_setitem_gradient_is_zero_at_written_positions():
    def fn(lib, x):
        y = x * 2
        y[0] = 5
        return y
    ours, theirs = _run_both(fn, [1.0, 2.0, 3.0])
    assert ours[0].tolist() == [0.0, 2.0, 2.0]
    np.testing.assert_allclose(ours[0], theirs[0])


@requires_torch
@pytest.mark.parametrize("key,n_values", [(1, 2), ((slice(None), 0), 3), ([0, 0, 2], 2), ("mask", 4), ((2, 1), 1)])
def test_setitem_with_value_requiring_grad(key, n_values):
    def fn(lib, x, v):
        y = x * 2
        y[(x > 0) if key == "mask" else key] = (v * 3)[:n_values]  # (1,) into one element: leading 1 dropped
        return y * y
    x = [[1.0, -2.0], [3.0, 4.0], [-5.0, 6.0]]
    ours, theirs = _run_both(fn, x, [0.5, 1.5, 2.5, 3.5])
    for o, t in zip(ours, theirs):
        np.testing.assert_allclose(o, t, rtol=1e-6)


def test_setitem_on_tensor_without_grad_makes_it_require_grad():
    w = distnn.tensor([2.0, 3.0], requires_grad=True)
    y = distnn.zeros(4)
    y[1:3] = w * 2
    assert y.requires_grad and y.grad_fn.name() == "IndexPutBackward0"
    (y * distnn.tensor([1.0, 10.0, 100.0, 1000.0])).sum().backward()
    assert w.grad.tolist() == [20.0, 200.0]


@requires_torch
@pytest.mark.parametrize("op", ["add_", "sub_", "mul_", "div_"])
def test_inplace_arithmetic_with_operand_requiring_grad(op):
    def fn(lib, x, z):
        y = x + 1
        getattr(y, op)(z * 2)
        return y * y
    ours, theirs = _run_both(fn, [1.0, 2.0, 3.0], [0.5, -1.0, 2.0])
    for o, t in zip(ours, theirs):
        np.testing.assert_allclose(o, t, rtol=1e-6)


@requires_torch
def test_chained_inplace_ops_match_torch():
    def fn(lib, x, z):
        y = x.exp() * 1
        y.add_(z)
        y[1] = z[0] * 4
        y.masked_fill_(y > 100, 0.0)
        return y * x
    ours, theirs = _run_both(fn, [0.1, 0.2, 5.0], [1.0, 2.0, 3.0])
    for o, t in zip(ours, theirs):
        np.testing.assert_allclose(o, t, rtol=1e-6)


def test_views_share_the_version_counter():
    x = distnn.zeros(2, 3)
    v = x[0]
    w = x[:, 1:]
    v.add_(1)
    assert x._version == v._version == w._version == 1
    assert x.tolist() == [[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]
    w[1] = 7.0
    assert x._version == 2 and x[1].tolist() == [0.0, 7.0, 7.0]
    advanced = x[[0]]
    advanced.add_(1)
    assert x._version == 2 and advanced._version == 1


def test_modifying_a_view_invalidates_what_the_base_saved():
    x = distnn.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    y = (x * 1).exp()
    view_of_out = y.detach()[0]
    view_of_out.zero_()  # detach shares the version counter, as in PyTorch
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_data_update_pattern_of_hand_written_sgd():
    p = distnn.tensor([1.0, 2.0], requires_grad=True)
    (p * p).sum().backward()
    p.data -= 0.1 * p.grad
    assert np.allclose(p.tolist(), [0.8, 1.6])
    assert p.requires_grad and p.grad_fn is None
    p.grad.zero_()
    (p * 3).sum().backward()
    assert p.grad.tolist() == [3.0, 3.0]


def test_no_grad_update_of_parameter():
    p = distnn.tensor([1.0, 2.0], requires_grad=True)
    (p * p).sum().backward()
    with distnn.no_grad():
        p -= 0.5 * p.grad
        p[0] = 0.0
    assert p.tolist() == [0.0, 0.0] and p._version == 2 and p.grad_fn is None


INPLACE_ARITHMETIC = [lambda t, o: t.add_(o), lambda t, o: t.sub_(o), lambda t, o: t.mul_(o),
                      lambda t, o: t.div_(o), lambda t, o: t.pow_(o), lambda t, o: t.sub_(o, alpha=2)]


@requires_torch
@pytest.mark.parametrize("op", INPLACE_ARITHMETIC)
@pytest.mark.parametrize("other", [0.5, 3, "tensor", "broadcast"])
@pytest.mark.parametrize("requires_grad", [False, True])
def test_unrecorded_inplace_arithmetic_matches_torch(op, other, requires_grad):
    """Without a graph to record (no_grad, or nothing requiring grad) the array is
    written directly; values, dtype, identity and the version bump must be torch's."""
    results = []
    for lib in (distnn, torch):
        t = lib.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], requires_grad=requires_grad)
        o = {"tensor": lib.tensor([[0.5, 1.0, 2.0], [1.0, 0.5, 0.25]]),
             "broadcast": lib.tensor([2.0, 1.0, 0.5])}.get(other, other)
        data_before = t.data_ptr()
        with lib.no_grad():
            out = op(t, o)
        assert out is t and t.data_ptr() == data_before and t.grad_fn is None
        results.append((t.detach().numpy().copy(), str(t.dtype), t._version))
    assert results[0][1:] == results[1][1:]
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-6)


def test_unrecorded_inplace_arithmetic_refuses_a_result_it_cannot_hold():
    t = distnn.tensor([1, 2, 3])
    with pytest.raises(RuntimeError, match="result type of subtract with float64 can't be cast to the desired "
                                           "output type int64"):
        t -= distnn.tensor([0.5, 0.5, 0.5], dtype=distnn.float64)
    assert t.tolist() == [1, 2, 3] and t._version == 0


def test_recorded_inplace_arithmetic_still_refuses_a_leaf():
    p = distnn.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="a leaf Variable that requires grad is being used in an in-place"):
        p -= 1.0


def test_setitem_under_no_grad_accepts_tensor_keys_and_values():
    x = distnn.arange(6.0).reshape(2, 3)
    x[distnn.tensor([True, False])] = distnn.tensor([9.0, 8.0, 7.0])
    x[1, distnn.tensor([0, 2])] = -1.0
    assert x.tolist() == [[9.0, 8.0, 7.0], [-1.0, 4.0, -1.0]]


def test_inplace_op_that_saves_its_input_can_backprop():
    x = distnn.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    y.mul_(3)
    y.sum().backward()
    assert x.grad.tolist() == [6.0, 6.0]


def test_masked_fill_inplace_broadcasts_the_mask():
    x = distnn.zeros(2, 3)
    x.masked_fill_(distnn.tensor([True, False, True]), 1.0)
    assert x.tolist() == [[1.0, 0.0, 1.0], [1.0, 0.0, 1.0]]


def test_zero_inplace_sends_zero_gradient_back():
    x = distnn.tensor([0.5, 1.0], requires_grad=True)
    y = x * 2
    y.zero_()
    y.sum().backward()
    assert x.grad is not None and x.grad.tolist() == [0.0, 0.0]


@pytest.mark.parametrize("operator, method", [("__iadd__", "add_"), ("__isub__", "sub_"),
                                              ("__imul__", "mul_"), ("__itruediv__", "div_")])
@pytest.mark.parametrize("other", [0.5, 2, "tensor"])
def test_inplace_operators_match_their_methods(operator, method, other):
    values = np.arange(1, 7, dtype=np.float32).reshape(2, 3)
    if other == "tensor":
        other = distnn.tensor(values[0] + 1)
    a, b = distnn.tensor(values), distnn.tensor(values)
    assert getattr(a, operator)(other) is a
    getattr(b, method)(other)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert a._version == b._version == 1


def test_inplace_operator_refuses_a_lossy_cast():
    t = distnn.tensor([1, 2])
    with pytest.raises(RuntimeError, match="can't be cast to the desired output type"):
        t -= 0.5


@requires_torch
@pytest.mark.parametrize("shape", [(2, 3), (3,), ()])
def test_t_inplace_matches_torch(shape):
    """t_ swaps the dims of the tensor itself (its data stays put), bumps its version and,
    recorded, gives it t()'s node; gradients as torch's."""
    data = np.arange(1, 1 + int(np.prod(shape)), dtype=np.float32).reshape(shape)
    results = []
    for lib in (distnn, torch):
        x = lib.tensor(data, requires_grad=True)
        y = x * 1
        assert y.t_() is y
        assert y._version == 1 and y.grad_fn.name() == "TBackward1"
        (y * lib.tensor(np.arange(y.numel(), dtype=np.float32).reshape(tuple(y.shape)))).sum().backward()
        z = lib.tensor(data)
        z.t_()
        results.append((tuple(y.shape), y.detach().numpy(), x.grad.numpy(), z.numpy(), z._version))
    for ours, theirs in zip(*results):
        np.testing.assert_array_equal(ours, theirs)


def test_t_inplace_of_a_view_keeps_the_base():
    base = distnn.arange(6.0).reshape(2, 3)
    view = base[:, :2]
    view.t_()
    assert view.tolist() == [[0.0, 3.0], [1.0, 4.0]] and base.shape == (2, 3)
    assert base._version == view._version == 1
    view[0, 1] = 9.0  # still a view of base's memory
    assert base[1, 0].item() == 9.0


def test_t_inplace_of_a_recorded_view_sends_gradients_to_the_base():
    x = distnn.arange(6.0).reshape(2, 3).requires_grad_(True)
    view = (x * 1)[:, 1:]
    view.t_()
    assert view.grad_fn.name() == "TBackward1" and view.shape == (2, 2)
    (view * distnn.tensor([[1.0, 2.0], [3.0, 4.0]])).sum().backward()
    assert x.grad.tolist() == [[0.0, 1.0, 3.0], [0.0, 2.0, 4.0]]


def test_t_inplace_errors_as_torch():
    with pytest.raises(RuntimeError, match=r"^t_\(\) expects a tensor with <= 2 dimensions, but self is 3D$"):
        distnn.ones(2, 2, 2).t_()
    leaf = distnn.ones(2, 3, requires_grad=True)
    with pytest.raises(RuntimeError, match="^a leaf Variable that requires grad is being used in an in-place"):
        leaf.t_()
    with pytest.raises(RuntimeError, match="^a view of a leaf Variable that requires grad is being used"):
        leaf[:, :2].t_()
    assert leaf.shape == (2, 3) and leaf._version == 0
    with distnn.no_grad():
        leaf.t_()
    assert leaf.shape == (3, 2) and leaf.is_leaf and leaf.requires_grad


@requires_torch
@pytest.mark.parametrize("name", ["tril_", "triu_"])
@pytest.mark.parametrize("diagonal", [0, 1, -1])
def test_triangle_inplace_matches_torch(name, diagonal):
    data = np.arange(1, 13, dtype=np.float32).reshape(3, 4)
    results = []
    for lib in (distnn, torch):
        x = lib.tensor(data, requires_grad=True)
        y = x * x
        assert getattr(y, name)(diagonal) is y and y._version == 1
        y.sum().backward()
        ints = lib.tensor(data.astype(np.int64))
        getattr(ints, name)(diagonal=diagonal)
        results.append((y.detach().numpy(), x.grad.numpy(), ints.numpy(), y.grad_fn.name()))
    for ours, theirs in zip(*results):
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("name", ["tril", "triu"])
def test_triangle_inplace_errors(name):
    with pytest.raises(RuntimeError, match=f"^{name}: input tensor must have at least 2 dimensions$"):
        getattr(distnn.ones(3), name + "_")()
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        getattr(distnn.ones(2, 2, requires_grad=True), name + "_")()

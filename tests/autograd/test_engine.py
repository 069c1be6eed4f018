"""The backward engine: accumulation, retain_graph, hooks, grad(), deep graphs."""

import numpy as np
import pytest

import distnn
from distnn import autograd


def leaf(values, dtype=distnn.float32):
    return distnn.tensor(values, dtype=dtype, requires_grad=True)


def test_gradient_accumulates_across_backward_calls():
    x = leaf([1.0, 2.0])
    (x * 3).sum().backward()
    (x * 3).sum().backward()
    assert x.grad.tolist() == [6.0, 6.0]


def test_shared_subexpression_sums_both_paths():
    x = leaf([2.0])
    y = x * x
    z = y + y * 3  # dz/dx = 4 * 2x
    z.backward()
    assert x.grad.item() == pytest.approx(16.0)


def test_broadcast_gradient_is_reduced_to_input_shape():
    a = leaf(np.ones((3, 1)))
    b = leaf(np.ones((4,)))
    (a * b).sum().backward()
    assert a.grad.shape == (3, 1) and a.grad.tolist() == [[4.0]] * 3
    assert b.grad.shape == (4,) and b.grad.tolist() == [3.0] * 4


def test_gradient_keeps_input_dtype():
    a = leaf([1.0, 2.0], dtype=distnn.float64)
    b = leaf([1.0, 2.0])
    (a * b).sum().backward()
    assert a.grad.dtype == distnn.float64 and b.grad.dtype == distnn.float32


def test_nonscalar_backward_needs_gradient():
    x = leaf([1.0, 2.0])
    with pytest.raises(RuntimeError, match="only for scalar outputs"):
        (x * 2).backward()
    (x * 2).backward(distnn.tensor([1.0, 10.0]))
    assert x.grad.tolist() == [2.0, 20.0]


def test_backward_on_tensor_without_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        distnn.ones(2).sum().backward()


def test_second_backward_through_freed_graph_raises():
    x = leaf([1.0, 2.0])
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y.backward()


def test_retain_graph_allows_second_backward():
    x = leaf([1.0, 2.0])
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    assert x.grad.tolist() == [4.0, 8.0]


def test_deep_chain_is_not_recursive():
    x = leaf([1.0])
    y = x
    for _ in range(10000):
        y = y * 1.0001
    y.backward()
    assert x.grad.item() == pytest.approx(1.0001 ** 10000, rel=1e-3)


def test_tensor_hooks_modify_gradient_and_remove():
    x = leaf([1.0, 2.0])
    y = x * 2
    seen = []
    handle = y.register_hook(lambda g: seen.append(g.tolist()) or g * 10)
    x.register_hook(lambda g: g + 1)
    y.sum().backward()
    assert seen == [[1.0, 1.0]]
    assert x.grad.tolist() == [21.0, 21.0]
    handle.remove()
    x.grad = None
    (x * 2).sum().backward()
    assert x.grad.tolist() == [3.0, 3.0]


def test_retain_grad_on_intermediate():
    x = leaf([1.0, 2.0])
    y = x * 3
    y.retain_grad()
    (y * y).sum().backward()
    assert y.grad.tolist() == [6.0, 12.0]


def test_post_accumulate_grad_hook_sees_final_grad():
    x = leaf([1.0])
    seen = []
    x.register_post_accumulate_grad_hook(lambda t: seen.append(t.grad.item()))
    (x * 2 + x * 3).sum().backward()
    assert seen == [5.0]


def test_leaf_grad_is_not_aliased_between_parameters():
    a, b = leaf([1.0, 1.0]), leaf([1.0, 1.0])
    (a + b).sum().backward()
    a.grad.mul_(100)
    assert b.grad.tolist() == [1.0, 1.0]


def test_autograd_grad_does_not_touch_dot_grad():
    x = leaf([1.0, 2.0])
    y = (x ** 2).sum()
    (g,) = autograd.grad(y, x)
    assert g.tolist() == [2.0, 4.0] and x.grad is None


def test_autograd_grad_of_intermediate_and_unused():
    x, unused = leaf([3.0]), leaf([1.0])
    h = x * 2
    out = (h * h).sum()
    gh, gu = autograd.grad(out, [h, unused], allow_unused=True)
    assert gh.tolist() == [12.0] and gu is None
    with pytest.raises(RuntimeError, match="allow_unused"):
        autograd.grad((x * 2).sum(), [x, unused])


def test_no_grad_and_decorators():
    x = leaf([1.0])
    with distnn.no_grad():
        assert not (x * 2).requires_grad
        with distnn.enable_grad():
            assert (x * 2).requires_grad

    @distnn.no_grad()
    def f():
        return x * 2

    assert not f().requires_grad
    with distnn.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    assert (x * 2).requires_grad and distnn.is_grad_enabled()


def test_detach_shares_data_but_not_graph():
    x = leaf([1.0, 2.0])
    d = (x * 2).detach()
    assert not d.requires_grad and d.grad_fn is None


def test_node_graph_is_inspectable():
    x = leaf([1.0])
    y = (x * 2).exp()
    assert y.grad_fn.name() == "ExpBackward0"
    (mul_node, nr), = y.grad_fn.next_functions
    assert mul_node.name() == "MulBackward0" and nr == 0
    assert type(mul_node.next_functions[0][0]).__name__ == "AccumulateGrad"
    assert mul_node.next_functions[1] == (None, 0)


def _hook_order(lib):
    """Which tensors' gradient hooks fire, in order, for one small graph."""
    x = lib.tensor([1.0, 2.0], requires_grad=True)
    w = lib.tensor([3.0, 4.0], requires_grad=True)
    a = x * 2
    b = a * 3
    loss = (b * w).sum()
    order = []
    for name, t in (("x", x), ("w", w), ("a", a), ("b", b)):
        t.register_hook(lambda g, name=name: order.append(name))
    loss.backward()
    return order


def test_nodes_run_latest_first_and_leaves_as_soon_as_ready():
    # PyTorch's order: w's accumulation is ready after the first Mul and runs
    # before the older nodes; then the chain, latest-created first.
    assert _hook_order(distnn) == ["w", "b", "a", "x"]
    torch = pytest.importorskip("torch")
    assert _hook_order(distnn) == _hook_order(torch)


def test_backward_frees_saved_arrays_and_their_version_records():
    x = leaf([1.0, 2.0])
    y = x.exp()
    node = y.grad_fn
    assert node._saved and node._saved_versions
    y.sum().backward()
    assert node._saved is None and node._saved_versions == ()


@pytest.mark.parametrize("retain_graph", [False, True])
def test_leaf_accumulator_survives_backward(retain_graph):
    x = leaf([1.0, 2.0])
    (x * 2).sum().backward(retain_graph=retain_graph)
    accumulator = x._accumulator
    (x * 3).sum().backward()
    assert x._accumulator is accumulator
    assert x.grad.tolist() == [5.0, 5.0]


@pytest.mark.parametrize("make", [
    lambda x: x.sum(),                                 # a root needing its scalar gradient
    lambda x: (x * x).sum(),                           # one input used twice by one op
    lambda x: (x[:, :2] * 2).sum() + x[:, 1:].sum(),   # two views of one gradient
    lambda x: (x.unsqueeze(0) + x).sum(),              # broadcast reduced back by the engine
    lambda x: (x.double() * 3).sum(),                  # gradient cast back to float32
    lambda x: sum(r.exp().sum() for r in x.unbind(0)),  # a multi-output op among single ones
])
def test_hooked_nodes_give_the_gradients_of_plain_ones(make):
    """A node with a hook runs through the engine's general step (run_hooked), the
    others straight through their own run: pass-through hooks on every node must
    change nothing."""
    values = np.arange(6, dtype=np.float32).reshape(2, 3) / 7
    plain = leaf(values)
    make(plain).backward()
    hooked = leaf(values)
    out = make(hooked)
    seen, stack = set(), [out.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        node.register_prehook(lambda grads: None)
        node.register_hook(lambda grad_inputs, grad_outputs: None)
        stack.extend(fn for fn, _ in node.next_functions)
    out.backward()
    assert len(seen) >= 2  # the hooks were on the graph's nodes, the leaf's included
    assert plain.grad.dtype == hooked.grad.dtype == distnn.float32
    np.testing.assert_array_equal(plain.grad.numpy(), hooked.grad.numpy())


def test_op_returning_too_few_gradients_is_reported():
    from distnn.autograd.function import Op

    class Bad(Op):
        @staticmethod
        def forward(ctx, a, b):
            return a + b

        @staticmethod
        def backward(ctx, g):
            return g

    a = leaf([1.0])
    with pytest.raises(RuntimeError, match=r"function BadBackward0 returned an incorrect number of gradients "
                                           r"\(expected 2, got 1\)"):
        Bad.apply(a, a).sum().backward()


@pytest.mark.parametrize("split", [lambda x: x.unbind(0), lambda x: x.split(2), lambda x: x.chunk(3)])
def test_view_ops_with_no_or_one_output(split):
    x = leaf(np.zeros((0, 3)))
    pieces = split(x)
    assert all(p.shape[1:] == (3,) for p in pieces)
    y = leaf(np.arange(3.0).reshape(1, 3))
    (piece,) = split(y)
    (piece * 2).sum().backward()
    assert y.grad.tolist() == [[2.0, 2.0, 2.0]]


@pytest.mark.parametrize("make", [
    lambda x, w: (x * w).sum() + (w * 2).sum(),   # a leaf reached by two edges
    lambda x, w: (x.t() * w.t()).sum(),           # non-contiguous leaf gradients, copied
    lambda x, w: ((x * 3).relu() * w).sum(),
])
@pytest.mark.parametrize("existing_grad", [False, True])
def test_leaf_summed_in_the_engine_matches_the_accumulate_node(make, existing_grad):
    """A leaf is summed into .grad while its gradient is sent, and a post-accumulate hook
    then sees that .grad: the same result as without the hook."""
    values = np.arange(6, dtype=np.float32).reshape(2, 3) / 7
    results = []
    for hooked in (False, True):
        x, w = leaf(values), leaf(values[::-1].copy())
        if existing_grad:
            x.grad, w.grad = distnn.ones(2, 3), distnn.ones(2, 3)
        seen = {}
        if hooked:
            for name, t in (("x", x), ("w", w)):
                t.register_post_accumulate_grad_hook(lambda t, name=name: seen.setdefault(name, t.grad.numpy().copy()))
        make(x, w).backward()
        if hooked:
            assert seen.keys() == {"x", "w"}
            np.testing.assert_array_equal(seen["x"], x.grad.numpy())
            np.testing.assert_array_equal(seen["w"], w.grad.numpy())
        for t in (x, w):
            assert t.grad._data.flags.c_contiguous and t.grad._data.flags.writeable
        results.append((x.grad.numpy(), w.grad.numpy()))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


def test_scalar_backward_entry_matches_an_explicit_gradient():
    values = np.arange(6, dtype=np.float32).reshape(2, 3) / 7
    implicit, explicit = leaf(values), leaf(values)
    (implicit.exp() * 2).sum().backward()
    loss = (explicit.exp() * 2).sum()
    autograd.backward([loss], [distnn.tensor(1.0)])
    np.testing.assert_array_equal(implicit.grad.numpy(), explicit.grad.numpy())


@pytest.mark.parametrize("make, message", [
    (lambda: (leaf([1.0, 2.0]) * 2), "grad can be implicitly created only for scalar outputs"),
    (lambda: distnn.tensor(1.0), "element 0 of tensors does not require grad"),
])
def test_scalar_backward_entry_keeps_the_errors(make, message):
    with pytest.raises(RuntimeError, match=message):
        make().backward()


@pytest.mark.parametrize("kind", ["post", "pre", "tensor"])
def test_node_hooks_fire_and_a_removed_hook_leaves_the_plain_result(kind):
    # Nodes with (or once with) a hook take the engine's general path, the rest its
    # shortcut; both must give the same gradients.
    def run(hook_kind, remove):
        x = leaf([1.0, -2.0, 3.0])
        h = x * 2
        y = h.relu()
        seen = []
        if hook_kind == "post":
            handle = y.grad_fn.register_hook(lambda gi, go: seen.append(gi[0].numpy().copy()))
        elif hook_kind == "pre":
            handle = y.grad_fn.register_prehook(lambda go: (go[0] * 10,))
        elif hook_kind == "tensor":
            handle = h.register_hook(lambda g: g + 1)
        if remove and hook_kind is not None:
            handle.remove()
        (y * y).sum().backward()
        return x.grad.numpy(), seen

    plain, _ = run(None, False)
    removed, seen_removed = run(kind, True)
    np.testing.assert_array_equal(removed, plain)
    assert seen_removed == []
    hooked, seen = run(kind, False)
    expected = {"post": plain, "pre": plain * 10, "tensor": plain + 2}[kind]
    np.testing.assert_allclose(hooked, expected)
    if kind == "post":
        assert len(seen) == 1

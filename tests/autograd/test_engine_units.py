"""The engine on hand-built graphs: nodes from node.py and tensors from tensor.py
only, no op involved, so each engine rule is tested by itself."""

import numpy as np
import pytest

from distnn.autograd import engine
from distnn.autograd.engine import queue_callback, reduction_axes, run_backward, sum_to_shape
from distnn.autograd.node import AccumulateGrad, Node, _sequence
from distnn.tensor import _wrap


def leaf(values, dtype=np.float32):
    t = _wrap(np.array(values, dtype=dtype), requires_grad=True)
    t._accumulator = AccumulateGrad(t)
    return t


def edge(target, shape=None, dtype=np.float32):
    """An edge to a leaf (its accumulator) or to another node's output 0."""
    if isinstance(target, Node):
        return (target, 0, shape, np.dtype(dtype))
    return (target._accumulator, 0, target._data.shape, target._data.dtype)


class Scale(Node):
    """Sends its output gradient times one factor along each edge, logging that it ran."""

    def __init__(self, edges, factors, log=None, name=""):
        self._next, self._factors, self._log, self._name = tuple(edges), factors, log, name
        self._saved = ("something saved",)
        self._seq = next(_sequence)

    def run(self, grads):
        if grads[0] is None:  # the engine's contract: None where no gradient arrived
            return (None,) * len(self._next)
        if self._log is not None:
            self._log.append(self._name)
        return tuple(None if f is None else grads[0] * f for f in self._factors)


def root(node, grad):
    return [(node, 0, np.asarray(grad, dtype=np.float32))]


def test_two_paths_into_one_leaf_are_summed():
    x = leaf([1.0, 2.0])
    a = Scale([edge(x)], [2.0])
    b = Scale([edge(x)], [5.0])
    top = Scale([edge(a, (2,)), edge(b, (2,))], [1.0, 1.0])
    run_backward(root(top, [1.0, 10.0]))
    np.testing.assert_array_equal(x.grad._data, [7.0, 70.0])


def test_gradients_are_reduced_to_the_edge_shape_and_cast_to_its_dtype():
    x = leaf([1.0, 2.0, 3.0], dtype=np.float64)
    node = Scale([edge(x)], [1.0])
    run_backward(root(node, np.ones((2, 3))))  # a broadcast (2, 3) gradient for a (3,) input
    assert x.grad._data.dtype == np.float64
    np.testing.assert_array_equal(x.grad._data, [2.0, 2.0, 2.0])


def test_nodes_run_latest_created_first_and_leaves_as_soon_as_ready():
    log = []
    x, y = leaf([1.0]), leaf([1.0])
    y.register_post_accumulate_grad_hook(lambda t: log.append("y accumulated"))
    early = Scale([edge(x)], [1.0], log, "early")
    late = Scale([edge(y)], [1.0], log, "late")
    top = Scale([edge(early, (1,)), edge(late, (1,))], [1.0, 1.0], log, "top")
    run_backward(root(top, [1.0]))
    assert log == ["top", "late", "y accumulated", "early"]


def test_one_array_sent_along_two_edges_is_not_shared_by_two_leaves():
    x, y = leaf([1.0, 2.0]), leaf([3.0, 4.0])

    class Both(Scale):
        def run(self, grads):
            return grads[0], grads[0]  # the very same array twice

    node = Both([edge(x), edge(y)], None)
    run_backward(root(node, [1.0, 1.0]))
    assert not np.shares_memory(x.grad._data, y.grad._data)
    x.grad._data += 1
    np.testing.assert_array_equal(y.grad._data, [1.0, 1.0])


def test_a_numpy_scalar_gradient_becomes_a_zero_dim_array():
    x = leaf(1.0)

    class Scalar(Scale):
        def run(self, grads):
            return (np.float32(grads[0].sum() * 3),)

    run_backward(root(Scalar([edge(x)], None), 2.0))
    assert type(x.grad._data) is np.ndarray and x.grad._data.shape == () and x.grad.item() == 6.0


def test_capture_returns_the_gradient_reaching_a_node_and_leaves_grad_untouched():
    x = leaf([1.0])
    mid = Scale([edge(x)], [3.0])
    top = Scale([edge(mid, (1,))], [2.0])
    captured = run_backward(root(top, [1.0]), capture={(mid, 0): 1, (x._accumulator, 0): 0})
    np.testing.assert_array_equal(captured[1], [2.0])
    np.testing.assert_array_equal(captured[0], [6.0])
    assert x.grad is None


def test_no_gradient_on_an_edge_still_releases_its_node():
    log = []
    x = leaf([1.0])
    below = Scale([edge(x)], [1.0], log, "below")
    top = Scale([edge(below, (1,))], [None], log, "top")  # sends nothing, but is done with `below`
    run_backward(root(top, [1.0]))
    assert log == ["top"]  # `below` had no gradient to run on, and its leaf got none
    assert x.grad is None


@pytest.mark.parametrize("retain", [False, True])
def test_saved_values_are_released_unless_the_graph_is_retained(retain):
    node = Scale([edge(leaf([1.0]))], [1.0])
    run_backward(root(node, [1.0]), retain_graph=retain)
    assert (node._saved == ("something saved",)) is retain
    assert node._freed is not retain


def test_callbacks_run_after_every_node_in_order_and_may_queue_more():
    log = []

    class Queues(Scale):
        def run(self, grads):
            queue_callback(lambda: (log.append("first"), queue_callback(lambda: log.append("third"))))
            queue_callback(lambda: log.append("second"))
            return super().run(grads)

    x = leaf([1.0])
    top = Queues([edge(Scale([edge(x)], [1.0], log, "below"), (1,))], [1.0], log, "top")
    run_backward(root(top, [1.0]))
    assert log == ["top", "below", "first", "second", "third"]
    with pytest.raises(RuntimeError, match="only be called during the backward pass"):
        queue_callback(lambda: None)


def test_a_failing_node_leaves_no_callback_queue_behind():
    class Fails(Scale):
        def run(self, grads):
            queue_callback(lambda: pytest.fail("a callback of a failed pass ran"))
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        run_backward(root(Fails([edge(leaf([1.0]))], [1.0]), [1.0]))
    assert engine._callbacks.queue is None


def test_reduction_axes_and_sum_to_shape():
    assert reduction_axes((4, 2, 3), (2, 1)) == (0, 2)
    assert reduction_axes((2, 3), (2, 3)) == ()
    np.testing.assert_array_equal(sum_to_shape(np.ones((4, 2, 3)), (2, 1)), [[12.0], [12.0]])
    with pytest.raises(RuntimeError, match=r"gradient of shape \[3\] is not broadcast-compatible"):
        reduction_axes((3,), (2,))
    with pytest.raises(RuntimeError, match=r"cannot be reduced to shape \[1, 3\]"):
        reduction_axes((3,), (1, 3))

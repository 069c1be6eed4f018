"""Views and in-place ops against PyTorch: a view whose base was modified in place
backprops through the base's new history, and an in-place op on a view rewrites its
base's history (autograd/views.py)."""

import numpy as np
import pytest

import distnn

torch = pytest.importorskip("torch")


def _base_modified_after_view(lib, a):
    b = a * 3
    view = b[:2]
    b.mul_(2)
    return (view * lib.tensor([1.0, 5.0])).sum()


def _view_modified_in_place(lib, a):
    b = a * 3
    b[:2].mul_(lib.tensor([2.0, 3.0]))
    b[2:].add_(a[:2] ** 2)
    return (b * b).sum()


def _view_of_a_constant_takes_a_gradient(lib, a):
    b = lib.zeros(4)
    b[1:3].add_(a[:2] * a[2:])
    return (b * b).sum()


def _view_of_a_view(lib, a):
    b = (a * 1).view(2, 2)
    row = b[0]
    b.t()[1].mul_(3)
    return (row * row).sum()


def _transposed_view_exp(lib, a):
    b = a * 2
    b.view(2, 2).t()[0].exp_()
    return (b ** 2).sum()


def _assignment_through_a_view(lib, a):
    b = a * 2
    b.view(2, 2)[:, 1] = a[:2] ** 2
    return (b * lib.tensor([1.0, 2.0, 3.0, 4.0])).sum()


def _view_used_before_and_after(lib, a):
    b = a * 2
    view = b[1:3]
    first = view.sum() * 3  # saves nothing the in-place op below would invalidate
    b.mul_(a)
    return first + (view * 10).sum()


CASES = [_base_modified_after_view, _view_modified_in_place, _view_of_a_constant_takes_a_gradient,
         _view_of_a_view, _transposed_view_exp, _assignment_through_a_view, _view_used_before_and_after]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__.strip("_") for c in CASES])
def test_gradients_through_views_and_in_place_ops_match_torch(case):
    results = []
    for lib in (distnn, torch):
        a = lib.tensor([0.5, -1.0, 1.5, 2.0], requires_grad=True)
        loss = case(lib, a)
        loss.backward()
        results.append((loss.item(), a.grad.numpy().copy()))
    (ours, our_grad), (theirs, their_grad) = results
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    np.testing.assert_allclose(our_grad, their_grad, rtol=1e-6)


def test_view_takes_the_base_history_after_an_in_place_op_on_the_base():
    a = distnn.tensor([1.0, 2.0], requires_grad=True)
    b = a * 3
    view = b[:1]
    b.mul_(2)
    assert view.grad_fn.name() == "SliceBackward0"  # regenerated on use, not the old one
    (view * 1).sum().backward()
    assert a.grad.tolist() == [6.0, 0.0]


@pytest.mark.parametrize("lib", [distnn, torch], ids=["distnn", "torch"])
def test_in_place_on_a_view_of_a_leaf_raises(lib):
    a = lib.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="a view of a leaf Variable that requires grad"):
        a[:1].mul_(2)


@pytest.mark.parametrize("lib", [distnn, torch], ids=["distnn", "torch"])
def test_in_place_on_one_of_several_views_raises(lib):
    b = lib.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True) * 2
    first, _ = b.split(2)
    with pytest.raises(RuntimeError, match="returns multiple views"):
        first.mul_(2)


def test_in_place_on_an_expanded_view_raises():
    b = distnn.tensor([1.0], requires_grad=True) * 2
    with pytest.raises(RuntimeError, match="more than one element of the written-to tensor"):
        b.expand(3).mul_(2)


def test_in_place_on_a_view_made_without_grad_raises():
    b = distnn.tensor([1.0, 2.0], requires_grad=True) * 2
    with distnn.no_grad():
        view = b[:1]
    with pytest.raises(RuntimeError, match="created in no_grad mode"):
        view.mul_(distnn.tensor([3.0], requires_grad=True))


def test_in_place_on_a_view_without_recording_writes_through():
    b = distnn.tensor([1.0, 2.0, 3.0])
    b[1:].mul_(2)
    assert b.tolist() == [1.0, 4.0, 6.0]

"""embedding and one_hot (whose public home is nn.functional) against gradcheck and
PyTorch: gradient accumulation, padding_idx, max_norm and their errors."""

import numpy as np
import pytest

import distnn
from distnn.ops import embedding as embedding_ops
from op_check import check_op, const, make_input, requires_torch, torch


def F(lib):
    """Where embedding/one_hot live: ``torch.nn.functional`` or our embedding ops."""
    return embedding_ops if lib is distnn else lib.nn.functional


@pytest.mark.parametrize("kwargs", [{}, {"padding_idx": 2}, {"padding_idx": -1}, {"scale_grad_by_freq": True}])
@pytest.mark.parametrize("idx", [[[0, 2, 0], [4, 2, 2]], [3], 1])
def test_embedding(kwargs, idx):
    # padding_idx and scale_grad_by_freq change the gradient on purpose: torch is the only reference
    check_op(lambda lib, w: F(lib).embedding(const(lib, idx), w, **kwargs), [make_input((5, 3))],
             gradcheck=not kwargs)


def test_embedding_gradient_accumulates_and_skips_padding():
    w = distnn.ones(4, 2, requires_grad=True)
    out = embedding_ops.embedding(distnn.tensor([[1, 1], [0, 1]]), w, padding_idx=0)
    assert out.grad_fn.name() == "EmbeddingBackward0" and out.shape == (2, 2, 2)
    out.sum().backward()
    assert w.grad[:, 0].tolist() == [0.0, 3.0, 0.0, 0.0]


@requires_torch
def test_embedding_max_norm_renormalises_weight_like_torch():
    w_np = make_input((5, 3), low=-3, high=3).astype(np.float32)
    idx = [[0, 3], [3, 4]]
    ours_w, theirs_w = distnn.tensor(w_np, requires_grad=True), torch.tensor(w_np, requires_grad=True)
    ours = embedding_ops.embedding(distnn.tensor(idx), ours_w, max_norm=1.0)
    theirs = torch.nn.functional.embedding(torch.tensor(idx), theirs_w, max_norm=1.0)
    np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours_w.detach().numpy(), theirs_w.detach().numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("call,error,match", [
    (lambda w: embedding_ops.embedding(distnn.tensor([0.0]), w), RuntimeError, "Long, Int"),
    (lambda w: embedding_ops.embedding(distnn.tensor([5]), w), IndexError, "index out of range"),
    (lambda w: embedding_ops.embedding(distnn.tensor([-1]), w), IndexError, "index out of range"),
    (lambda w: embedding_ops.embedding(distnn.tensor([0]), w, padding_idx=5), ValueError, "within num_embeddings"),
    (lambda w: embedding_ops.embedding(distnn.tensor([0]), w[0]), RuntimeError, "weight.ndim == 2"),
])
def test_embedding_errors(call, error, match):
    with pytest.raises(error, match=match):
        call(distnn.zeros(5, 3))


@requires_torch
@pytest.mark.parametrize("values,num_classes", [([0, 2, 1], -1), ([[0, 1], [3, 3]], 5), ([], 3), (2, 4)])
def test_one_hot_matches_torch(values, num_classes):
    ours = embedding_ops.one_hot(distnn.tensor(values, dtype=distnn.int64), num_classes)
    theirs = torch.nn.functional.one_hot(torch.tensor(values, dtype=torch.int64), num_classes)
    assert ours.dtype == distnn.int64 and tuple(ours.shape) == tuple(theirs.shape)
    assert ours.tolist() == theirs.tolist()


@pytest.mark.parametrize("values,num_classes,match", [([0, 3], 2, "smaller than num_classes"),
                                                      ([-1], 3, "non-negative"), ([], -1, "empty tensor")])
def test_one_hot_errors(values, num_classes, match):
    with pytest.raises(RuntimeError, match=match):
        embedding_ops.one_hot(distnn.tensor(values, dtype=distnn.int64), num_classes)


def test_one_hot_requires_int64():
    with pytest.raises(RuntimeError, match="LongTensor"):
        embedding_ops.one_hot(distnn.tensor([0, 1], dtype=distnn.int32))

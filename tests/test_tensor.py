"""Tensor basics: creation, dtypes, metadata, repr, conversion, seeding."""

import numpy as np
import pytest

import distnn


def test_default_dtypes():
    assert distnn.tensor([1.0, 2.0]).dtype == distnn.float32
    assert distnn.tensor([1, 2]).dtype == distnn.int64
    assert distnn.tensor([True]).dtype == distnn.bool
    assert distnn.zeros(2).dtype == distnn.float32
    assert distnn.randn(2, 3).dtype == distnn.float32
    assert distnn.arange(5).dtype == distnn.int64 and distnn.arange(0, 1, 0.25).dtype == distnn.float32
    assert distnn.from_numpy(np.zeros(2)).dtype == distnn.float64


def test_size_prints_like_torch():
    x = distnn.zeros(1, 10)
    assert repr(x.size()) == "torch.Size([1, 10])" and x.shape == (1, 10)
    assert x.size(1) == 10 and x.size(-1) == 10 and x.dim() == 2 and x.numel() == 10


@pytest.mark.parametrize("make,expected", [
    (lambda: distnn.tensor([1.0, 2.0, 3.0]), "tensor([1., 2., 3.])"),
    (lambda: distnn.tensor([0.1, -2.5]), "tensor([ 0.1000, -2.5000])"),
    (lambda: distnn.tensor(2.3728), "tensor(2.3728)"),
    (lambda: distnn.tensor([1, 2]), "tensor([1, 2])"),
    (lambda: distnn.tensor([1, 2], dtype=distnn.int32), "tensor([1, 2], dtype=torch.int32)"),
    (lambda: distnn.tensor([1.0], requires_grad=True), "tensor([1.], requires_grad=True)"),
    (lambda: distnn.tensor([1.0], requires_grad=True) * 2, "tensor([2.], grad_fn=<MulBackward0>)"),
    (lambda: distnn.zeros(0), "tensor([])"),
    (lambda: distnn.ones(2, 2, dtype=distnn.float64), "tensor([[1., 1.],\n        [1., 1.]], dtype=torch.float64)"),
])
def test_repr_matches_torch_format(make, expected):
    assert repr(make()) == expected


def test_manual_seed_reproduces_numbers():
    distnn.manual_seed(42)
    a = distnn.randn(5)
    distnn.manual_seed(42)
    b = distnn.randn(5)
    assert a.tolist() == b.tolist()
    g = distnn.Generator().manual_seed(1)
    assert distnn.rand(3, generator=g).tolist() == distnn.rand(3, generator=distnn.Generator().manual_seed(1)).tolist()


def test_legacy_constructors():
    assert distnn.LongTensor([3]).dtype == distnn.int64
    assert distnn.FloatTensor(2, 3).shape == (2, 3)
    assert distnn.FloatTensor([1, 2]).dtype == distnn.float32
    assert distnn.Tensor(2, 2).dtype == distnn.float32


def test_item_tolist_numpy():
    x = distnn.tensor([[1.5]])
    assert x.item() == 1.5 and x.tolist() == [[1.5]]
    with pytest.raises(RuntimeError, match="cannot be converted to Scalar"):
        distnn.ones(2).item()
    with pytest.raises(RuntimeError, match="requires grad"):
        distnn.ones(2, requires_grad=True).numpy()


def test_to_and_casts():
    x = distnn.tensor([1.5, 2.5], requires_grad=True)
    d = x.double()
    assert d.dtype == distnn.float64 and d.grad_fn is not None
    d.sum().backward()
    assert x.grad.dtype == distnn.float32 and x.grad.tolist() == [1.0, 1.0]
    assert x.long().dtype == distnn.int64 and x.to(distnn.float16).dtype == distnn.float16
    assert x.to("cpu") is x


def test_requires_grad_only_on_floats():
    with pytest.raises(RuntimeError, match="floating point"):
        distnn.tensor([1, 2]).requires_grad_()


def test_format_of_scalar_tensor():
    assert f"{distnn.tensor(1.23456):.2f}" == "1.23"

"""``Parameter``: a leaf tensor that shares storage and version with the tensor it
wraps, its flags, deepcopy and repr, compared with PyTorch where it defines the answer."""

import copy

import pytest

import distnn
from distnn.nn import Parameter
from op_check import requires_torch, torch

def test_parameter_shares_storage_and_version_with_its_tensor():
    t = distnn.zeros(3)
    p = Parameter(t)
    t.add_(1)
    assert p.tolist() == [1.0, 1.0, 1.0]
    assert p._version == t._version == 1
    assert p.is_leaf and p.requires_grad and p.grad_fn is None
    assert isinstance(p, distnn.Tensor)


@pytest.mark.parametrize("requires_grad", [True, False])
def test_parameter_flags(requires_grad):
    p = Parameter(distnn.ones(2, 2), requires_grad=requires_grad)
    assert p.requires_grad is requires_grad


def test_parameter_from_non_leaf_is_a_new_leaf():
    x = distnn.ones(2, requires_grad=True)
    p = Parameter(x * 2)
    assert p.is_leaf and p.grad_fn is None and p.requires_grad


def test_ops_on_parameter_return_plain_tensors():
    p = Parameter(distnn.ones(2))
    for out in (p + 1, p * p, p.data, p.detach(), p.sum()):
        assert type(out) is distnn.Tensor


def test_parameter_of_integer_dtype_cannot_require_grad():
    with pytest.raises(RuntimeError, match="floating point"):
        Parameter(distnn.zeros(2, dtype=distnn.int64))
    assert not Parameter(distnn.zeros(2, dtype=distnn.int64), requires_grad=False).requires_grad


def test_parameter_rejects_non_tensor():
    with pytest.raises(TypeError, match="Expect: Parameter"):
        Parameter([1.0, 2.0])


def test_parameter_deepcopy_is_independent():
    p = Parameter(distnn.ones(3))
    q = copy.deepcopy(p)
    assert type(q) is Parameter and q.requires_grad
    with distnn.no_grad():
        p.add_(1)
    assert q.tolist() == [1.0, 1.0, 1.0]


@requires_torch
@pytest.mark.parametrize("values,dtype,requires_grad", [
    ([[1.5, -2.0], [3.25, 0.0]], "float32", True),
    ([1.0, 2.0, 3.0], "float64", False),
    ([], "float32", True),
])
def test_parameter_repr_matches_torch(values, dtype, requires_grad):
    ours = Parameter(distnn.tensor(values, dtype=getattr(distnn, dtype)), requires_grad)
    theirs = torch.nn.Parameter(torch.tensor(values, dtype=getattr(torch, dtype)), requires_grad)
    assert repr(ours) == repr(theirs)

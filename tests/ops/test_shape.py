"""Shape ops: gradcheck and torch comparison (contiguous and non-contiguous
inputs, negative dims), view semantics (shared memory and version counter),
node names as PyTorch prints them, and PyTorch's error messages."""

import numpy as np
import pytest

import distnn
from op_check import check_op, make_input, requires_torch

try:
    import torch
except ImportError:
    torch = None

X = make_input((2, 3, 4))

# view() needs strides that allow it, so these run on contiguous inputs only (as in PyTorch)
VIEW_CASES = [
    lambda lib, x: x.view(6, 4), lambda lib, x: x.view(-1), lambda lib, x: x.view((4, -1)),
    lambda lib, x: x.view(lib.Size([2, 12])), lambda lib, x: x.view_as(x.reshape(4, 6)),
    lambda lib, x: x.mT.view(2, 2, 2, 3),
]

UNARY_CASES = [
    lambda lib, x: x.reshape(4, 6), lambda lib, x: x.reshape(-1, 2),
    lambda lib, x: lib.reshape(x, (3, 8)), lambda lib, x: x.mT.reshape(-1), lambda lib, x: x.flatten(),
    lambda lib, x: x.flatten(1), lambda lib, x: lib.flatten(x, 0, -2), lambda lib, x: x.unflatten(-1, (2, 2)),
    lambda lib, x: x.unflatten(1, (3, -1)), lambda lib, x: x[:1].squeeze(), lambda lib, x: x[:1].squeeze(0),
    lambda lib, x: x[:1, :, :1].squeeze((0, -1)), lambda lib, x: x.squeeze(1), lambda lib, x: x.unsqueeze(0),
    lambda lib, x: x.unsqueeze(-1), lambda lib, x: lib.unsqueeze(x, 2), lambda lib, x: x[:, :1].expand(2, 5, 4),
    lambda lib, x: x[:1].expand(3, -1, -1, -1), lambda lib, x: x.repeat(2, 1, 3), lambda lib, x: x.repeat(2, 1, 1, 2),
    lambda lib, x: x.tile(2), lambda lib, x: lib.tile(x, (2, 1, 1, 1)), lambda lib, x: x.transpose(0, -1),
    lambda lib, x: lib.transpose(x, 1, 2), lambda lib, x: x.swapaxes(0, 1), lambda lib, x: x.permute(2, 0, 1),
    lambda lib, x: x.permute((-1, 1, 0)), lambda lib, x: lib.permute(x, (1, 2, 0)), lambda lib, x: x[0].t(),
    lambda lib, x: x[0].T, lambda lib, x: x.mT, lambda lib, x: lib.movedim(x, 0, -1),
    lambda lib, x: x.movedim((0, 1), (2, 0)), lambda lib, x: x.flip(0), lambda lib, x: x.flip(-1, 1),
    lambda lib, x: lib.flip(x, (0, 2)), lambda lib, x: x[0, 0, 0].flip(0), lambda lib, x: x.squeeze(()),
    lambda lib, x: x.narrow(1, 1, 2), lambda lib, x: x.narrow(-1, -3, 2),
    lambda lib, x: x.split(2, -1), lambda lib, x: x.split(1), lambda lib, x: lib.split(x, [1, 2], 1),
    lambda lib, x: x.split([3, 1], dim=2), lambda lib, x: x.chunk(2, 1), lambda lib, x: x.chunk(3, -1),
    lambda lib, x: x.unbind(1), lambda lib, x: lib.unbind(x, -1),
    lambda lib, x: x.reshape_as(x.reshape(6, 4)), lambda lib, x: x[:1].expand_as(x),
]


@pytest.mark.parametrize("case", range(len(UNARY_CASES)))
def test_unary_shape_ops(case):
    check_op(UNARY_CASES[case], [X])


@pytest.mark.parametrize("case", range(len(VIEW_CASES)))
def test_view(case):
    check_op(VIEW_CASES[case], [X], layouts=("contiguous",))


TINY_CASES = [(lambda lib, x: x.view(-1), ()), (lambda lib, x: x.unsqueeze(0), ()),
              (lambda lib, x: x.flatten(), ()), (lambda lib, x: x.expand(3, 1), ()),
              (lambda lib, x: x.reshape(1, 1), ()), (lambda lib, x: x.t(), (1,)), (lambda lib, x: x.T, (1,)),
              (lambda lib, x: x.squeeze(), (1,)), (lambda lib, x: x.squeeze(0), (1,)),
              (lambda lib, x: x.view(-1), (1,)), (lambda lib, x: x.expand(2, 3), (1,))]
TINY_CASES += [(lambda lib, x: x.t(), ()), (lambda lib, x: x.T, ()), (lambda lib, x: x.squeeze(), ())]


@pytest.mark.filterwarnings("ignore::UserWarning")  # torch warns about x.T on non-matrices
@pytest.mark.parametrize("fn,shape", TINY_CASES)
def test_tiny_tensors(fn, shape):
    check_op(fn, [make_input(shape)])


# --- view semantics -------------------------------------------------------------

VIEWS = {
    "view": lambda x: x.view(-1), "reshape": lambda x: x.reshape(4, 6), "flatten": lambda x: x.flatten(),
    "transpose": lambda x: x.transpose(0, 1), "permute": lambda x: x.permute(2, 1, 0),
    "squeeze": lambda x: x.unsqueeze(0).squeeze(0), "unsqueeze": lambda x: x.unsqueeze(1),
    "expand": lambda x: x[:, :1].expand(2, 3, 4), "narrow": lambda x: x.narrow(2, 1, 2),
    "split": lambda x: x.split(1)[1], "chunk": lambda x: x.chunk(2, 2)[0], "unbind": lambda x: x.unbind(1)[2],
    "t": lambda x: x[0].t(), "unflatten": lambda x: x.unflatten(2, (2, 2)), "movedim": lambda x: x.movedim(0, 2),
}


@pytest.mark.parametrize("name", sorted(VIEWS))
def test_view_ops_share_memory_and_version(name):
    x = distnn.arange(24.0).reshape(2, 3, 4)
    v = VIEWS[name](x)
    assert np.shares_memory(v._data, x._data)
    assert v._base is x._base
    before = x._version
    x.add_(1)
    assert v._version == x._version == before + 1


@pytest.mark.parametrize("fn", [lambda x: x.transpose(0, 1).reshape(-1), lambda x: x.flip(0),
                                lambda x: x.repeat(1, 1, 1), lambda x: distnn.cat([x, x]),
                                lambda x: distnn.stack([x]), lambda x: x.mT.flatten()])
def test_copying_ops_do_not_alias(fn):
    x = distnn.arange(24.0).reshape(2, 3, 4)
    out = fn(x)
    assert not np.shares_memory(out._data, x._data)
    x.add_(1)
    assert out._version == 0


def test_backward_refuses_view_whose_base_was_modified():
    w = distnn.ones(2, 3, requires_grad=True)
    x = w * 1
    v = x.view(-1)
    y = v * v
    x.add_(1)  # v shares x's memory and version counter
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


@requires_torch
@pytest.mark.parametrize("fn", UNARY_CASES + VIEW_CASES + [lambda lib, x: lib.cat([x, x]), lambda lib, x: lib.stack([x, x])])
def test_node_names_match_torch(fn):
    def first(out):
        return out[0] if isinstance(out, (tuple, list)) else out
    ours = first(fn(distnn, distnn.from_numpy(X.astype(np.float32)).requires_grad_()))
    theirs = first(fn(torch, torch.from_numpy(X.astype(np.float32)).requires_grad_()))
    if theirs.grad_fn.name() == "SelectBackward0":  # x[0] before the op under test
        return
    assert ours.grad_fn.name() == theirs.grad_fn.name()


# --- errors ---------------------------------------------------------------------

ERRORS = [
    (lambda x: x.view(5, -1), RuntimeError, r"shape '\[5, -1\]' is invalid for input of size 24"),
    (lambda x: x.view(2, 3), RuntimeError, r"shape '\[2, 3\]' is invalid for input of size 24"),
    (lambda x: x.reshape(-1, -1), RuntimeError, "only one dimension can be inferred"),
    (lambda x: x.transpose(0, 1).view(-1), RuntimeError, "view size is not compatible with input tensor's size"),
    (lambda x: x.view(2, -2, 3), RuntimeError, "invalid shape dimension -2"),
    (lambda x: x.permute(0, 1), RuntimeError, r"input.dim\(\) = 3 is not equal to len\(dims\) = 2"),
    (lambda x: x.permute(0, 0, 1), RuntimeError, "duplicate dims are not allowed"),
    (lambda x: x.squeeze((0, -3)), RuntimeError, "dim 0 appears multiple times in the list of dims"),
    (lambda x: x.flip((2, 1, -1)), RuntimeError, "dim 2 appears multiple times in the list of dims"),
    (lambda x: distnn.cat([x, distnn.ones(2, 4, 4)], 0), RuntimeError,
     "Sizes of tensors must match except in dimension 0. Expected size 3 but got size 4 for tensor number 1"),
    (lambda x: distnn.cat([x, distnn.ones(2, 3)]), RuntimeError,
     "Tensors must have same number of dimensions: got 3 and 2"),
    (lambda x: distnn.cat([]), ValueError, "expected a non-empty list of Tensors"),
    (lambda x: distnn.stack([x, distnn.ones(2, 3, 5)]), RuntimeError,
     r"stack expects each tensor to be equal size, but got \[2, 3, 4\] at entry 0 and \[2, 3, 5\] at entry 1"),
    (lambda x: x.expand(3, 3, 4), RuntimeError,
     r"expanded size of the tensor \(3\) must match the existing size \(2\) at non-singleton dimension 0"),
    (lambda x: x.expand(3, 4), RuntimeError, r"number of sizes provided \(2\) must be greater or equal"),
    (lambda x: x.repeat(2), RuntimeError, "Number of dimensions of repeat dims can not be smaller"),
    (lambda x: x.squeeze(5), IndexError, r"Dimension out of range \(expected to be in range of \[-3, 2\], but got 5\)"),
    (lambda x: x.unsqueeze(4), IndexError, r"expected to be in range of \[-4, 3\], but got 4"),
    (lambda x: x.flatten(2, 1), RuntimeError, "start_dim cannot come after end_dim"),
    (lambda x: x.unflatten(1, (2, 2)), RuntimeError, r"Provided sizes \[2, 2\] don't multiply up to the size of dim 1 \(3\)"),
    (lambda x: x.split(0), RuntimeError, "split_size can only be 0 if dimension size is 0"),
    (lambda x: x.split([1, 2], 0), RuntimeError, r"split_sizes to sum exactly to 2 .* got split_sizes=\[1, 2\]"),
    (lambda x: x.chunk(0), RuntimeError, "chunk expects `chunks` to be greater than 0, got: 0"),
    (lambda x: x.narrow(1, 2, 2), RuntimeError, r"start \(2\) \+ length \(2\) exceeds dimension size \(3\)"),
    (lambda x: x.t(), RuntimeError, "t\\(\\) expects a tensor with <= 2 dimensions, but self is 3D"),
    (lambda x: x.transpose(0, 3), IndexError, r"expected to be in range of \[-3, 2\], but got 3"),
]


@pytest.mark.parametrize("call,exc,message", ERRORS)
def test_errors(call, exc, message):
    with pytest.raises(exc, match=message):
        call(distnn.ones(2, 3, 4))


@requires_torch
@pytest.mark.parametrize("call,exc,message", ERRORS)
def test_error_text_equals_torch(call, exc, message):
    """Same exception type and text as PyTorch (the same lambda runs on both)."""
    import re
    with pytest.raises(exc) as ours:
        call(distnn.ones(2, 3, 4))
    src = call.__code__
    names = src.co_names
    if "distnn" in names:  # rebind the module name for the torch run
        torch_call = type(call)(src, {**call.__globals__, "distnn": torch})
    else:
        torch_call = call
    with pytest.raises(BaseException) as theirs:
        torch_call(torch.ones(2, 3, 4))
    assert type(ours.value) is type(theirs.value) or issubclass(type(theirs.value), type(ours.value))
    assert re.sub(r"\s+", " ", str(ours.value)) == re.sub(r"\s+", " ", str(theirs.value))

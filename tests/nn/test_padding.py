"""The padding layers (constant, zero, reflection, replication, circular; 1d/2d/3d)
against PyTorch: reprs, the padding tuples they keep, outputs and input gradients on
batched and unbatched input, and the errors for input PyTorch refuses."""

import numpy as np
import pytest

import distnn
from layer_check import compare_module, make_pair, requires_torch, torch
from op_check import make_input

CASES = [
    ("ConstantPad1d", (2, 3.5), (2, 3, 4)),
    ("ConstantPad1d", ((1, -1), -1.0), (3, 4)),  # a negative amount crops
    ("ConstantPad2d", ((1, 0, 2, 1), -2), (2, 3, 4, 5)),
    ("ConstantPad2d", (1, 0.5), (3, 4)),
    ("ConstantPad3d", ((1, 0, 0, 2, 1, 1), 1.5), (1, 2, 3, 2, 2)),
    ("ZeroPad1d", ((0, 2),), (2, 3)),
    ("ZeroPad2d", (1,), (2, 3, 4, 5)),
    ("ZeroPad2d", ([1, 2, 3, 4],), (3, 4)),
    ("ZeroPad2d", ((-1, 1, 0, 2),), (1, 2, 3, 4)),
    ("ZeroPad3d", (1,), (2, 2, 2, 3)),
    ("ReflectionPad1d", (2,), (2, 3, 5)),
    ("ReflectionPad1d", ((3, 1),), (3, 4)),
    ("ReflectionPad2d", (2,), (2, 3, 4, 5)),
    ("ReflectionPad2d", ((1, 2, 3, 0),), (2, 4, 5)),
    ("ReflectionPad3d", ((1, 0, 2, 1, 0, 1),), (1, 2, 3, 3, 3)),
    ("ReplicationPad1d", ((1, 4),), (2, 3, 4)),
    ("ReplicationPad1d", (2,), (3, 4)),
    ("ReplicationPad2d", ((3, 1, 0, 2),), (2, 3, 4, 5)),
    ("ReplicationPad2d", (2,), (3, 2, 2)),
    ("ReplicationPad3d", (1,), (2, 2, 3, 2)),
    ("CircularPad1d", ((2, 1),), (2, 3, 4)),
    ("CircularPad2d", (1,), (2, 3, 3)),
    ("CircularPad3d", ((1, 0, 0, 1, 1, 1),), (1, 2, 2, 3, 2)),
]


@requires_torch
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}{c[1]}{list(c[2])}".replace(" ", ""))
def test_matches_torch(case):
    name, args, shape = case
    ours, theirs = make_pair(name, *args)
    assert repr(ours) == repr(theirs)
    assert ours.padding == theirs.padding
    assert list(ours.state_dict()) == []
    compare_module(ours, theirs, [make_input(shape, seed=3).astype(np.float32)])


@requires_torch
@pytest.mark.parametrize("name,args,shape", [
    ("ReflectionPad1d", (1,), (3,)),
    ("ReflectionPad2d", (1,), (3, 3)),
    ("ReflectionPad2d", (1,), (2, 2, 2, 3, 3)),
    ("ReflectionPad2d", (1,), (3,)),  # more padding than dims
    ("ReflectionPad1d", ((1, 2, 3),), (2, 3, 4)),  # odd padding length
    ("ReplicationPad1d", (1,), (3,)),
    ("ReplicationPad3d", (1,), (2, 2)),
    ("CircularPad1d", (1,), (3,)),
    ("CircularPad2d", (1,), (3, 3)),
    ("CircularPad3d", (1,), (2, 2, 2, 2, 2, 2)),
    ("ZeroPad2d", (1,), (3,)),
])
def test_refused_input_as_torch(name, args, shape):
    ours, theirs = make_pair(name, *args)
    x = make_input(shape).astype(np.float32)
    with pytest.raises(Exception) as expected:
        theirs(torch.from_numpy(x))
    with pytest.raises(type(expected.value)) as got:
        ours(distnn.from_numpy(x))
    if isinstance(expected.value, (ValueError, NotImplementedError)):  # the layers' own checks
        assert str(got.value) == str(expected.value)


@requires_torch
def test_reflection_pad_at_the_limit_as_torch():
    x = make_input((1, 2, 3)).astype(np.float32)
    ours, theirs = make_pair("ReflectionPad1d", 3)  # reflection needs padding < size
    with pytest.raises(RuntimeError):
        theirs(torch.from_numpy(x))
    with pytest.raises(RuntimeError):
        ours(distnn.from_numpy(x))
    compare_module(*make_pair("ReflectionPad1d", 2), [x])


@requires_torch
def test_replication_pad_wider_than_input_as_torch():
    compare_module(*make_pair("ReplicationPad1d", (4, 1)), [make_input((1, 2, 3)).astype(np.float32)])


NEGATIVE = [(-1, 2), (2, -2), (-1, -1), (0, -3), (-2, 1, 2, -1), (3, -1, -1, 2), (-1, 0, 0, -2)]


@requires_torch
@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("pads", NEGATIVE, ids=str)
def test_negative_index_padding_crops_as_torch(mode, pads):
    """A negative amount crops: reflect and replicate still mirror or repeat the original
    edge, circular wraps around what is left; gradients fold back the same way."""
    x = make_input((2, 5, 6) if len(pads) == 2 else (2, 3, 5, 6)).astype(np.float64)
    g = np.random.default_rng(1).standard_normal(torch.nn.functional.pad(torch.tensor(x), pads, mode=mode).shape)
    ours, theirs = distnn.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out, expected = distnn.nn.functional.pad(ours, pads, mode=mode), torch.nn.functional.pad(theirs, pads, mode=mode)
    out.backward(distnn.tensor(g))
    expected.backward(torch.tensor(g))
    np.testing.assert_allclose(out.detach().numpy(), expected.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=1e-12)
    assert distnn.autograd.gradgradcheck(lambda a: distnn.nn.functional.pad(a, pads, mode=mode),
                                         (distnn.tensor(x[:1], requires_grad=True),))


def test_cropping_a_whole_dim_is_refused():
    with pytest.raises(RuntimeError, match=r"negative padding \(-2, -1\) crops all of dimension 2"):
        distnn.nn.functional.pad(distnn.ones(1, 1, 3), (-2, -1), mode="reflect")

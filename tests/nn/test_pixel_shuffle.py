"""``F.pixel_shuffle`` / ``F.pixel_unshuffle`` (gradcheck, double backward and PyTorch
on contiguous and non-contiguous input) and the ``PixelShuffle`` / ``PixelUnshuffle``
layers against PyTorch, errors included."""

import numpy as np
import pytest

import distnn
import distnn.nn.functional as F
from layer_check import compare_module, make_pair, requires_torch, torch
from op_check import check_op, make_input

SHUFFLE = [((1, 4, 2, 3), 2), ((2, 18, 2, 2), 3), ((8, 3, 2), 2), ((2, 3, 4, 2, 1), 2), ((2, 5, 3, 2), 1)]
UNSHUFFLE = [((1, 1, 4, 6), 2), ((2, 2, 6, 3), 3), ((3, 4, 2), 2), ((2, 1, 3, 2, 4), 2), ((1, 2, 3, 3), 1)]


@pytest.mark.parametrize("shape,r", SHUFFLE, ids=str)
def test_pixel_shuffle(shape, r):
    check_op(lambda lib, x: lib.nn.functional.pixel_shuffle(x, r), [make_input(shape)])


@pytest.mark.parametrize("shape,r", UNSHUFFLE, ids=str)
def test_pixel_unshuffle(shape, r):
    check_op(lambda lib, x: lib.nn.functional.pixel_unshuffle(x, r), [make_input(shape)])


def test_empty_batch():
    # (PyTorch's own backward of an empty pixel_shuffle fails, so only the forward is compared)
    out = F.pixel_shuffle(distnn.zeros(0, 4, 2, 3), 2)
    assert tuple(out.shape) == (0, 1, 4, 6)
    assert tuple(F.pixel_unshuffle(out, 2).shape) == (0, 4, 2, 3)


@pytest.mark.parametrize("shape,r", [((2, 8, 3, 5), 2), ((9, 2, 2), 3)])
def test_unshuffle_inverts_shuffle(shape, r):
    x = distnn.from_numpy(make_input(shape, dtype=np.float32))
    np.testing.assert_array_equal(F.pixel_unshuffle(F.pixel_shuffle(x, r), r).numpy(), x.numpy())


@requires_torch
@pytest.mark.parametrize("name,factor,shape", [("PixelShuffle", 2, (2, 8, 3, 3)), ("PixelShuffle", 3, (9, 2, 1)),
                                               ("PixelUnshuffle", 2, (2, 3, 4, 6)),
                                               ("PixelUnshuffle", 3, (1, 3, 3))])
def test_layers_match_torch(name, factor, shape):
    ours, theirs = make_pair(name, factor)
    assert repr(ours) == repr(theirs)
    assert list(ours.state_dict()) == []
    compare_module(ours, theirs, [make_input(shape, seed=4).astype(np.float32)])


@requires_torch
@pytest.mark.parametrize("fn,shape,factor", [
    ("pixel_shuffle", (4, 2), 2),
    ("pixel_shuffle", (5, 2, 2), 2),
    ("pixel_shuffle", (4, 2, 2), 0),
    ("pixel_shuffle", (4, 2, 2), -2),
    ("pixel_shuffle", (4, 2, 2), 2.0),
    ("pixel_shuffle", (4, 2, 2), True),
    ("pixel_unshuffle", (4, 2), 2),
    ("pixel_unshuffle", (4, 3, 2), 2),
    ("pixel_unshuffle", (4, 2, 3), 2),
    ("pixel_unshuffle", (4, 2, 2), 0),
    ("pixel_unshuffle", (4, 2, 2), 1.5),
])
def test_errors_match_torch(fn, shape, factor):
    x = make_input(shape).astype(np.float32)
    with pytest.raises(Exception) as expected:
        getattr(torch.nn.functional, fn)(torch.from_numpy(x), factor)
    with pytest.raises(type(expected.value)) as got:
        getattr(F, fn)(distnn.from_numpy(x), factor)
    assert str(got.value) == str(expected.value)

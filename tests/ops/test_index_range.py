"""A Python ``range`` as an index (alone, in a tuple, empty, stepped, reversed) reads
as the list of its ints, as in PyTorch: values and gradients against torch, and
assignment through it."""

import pytest

import distnn
from op_check import check_op, make_input, requires_torch, torch

KEYS = {
    "range": range(1, 3),
    "in_tuple": (range(1, 3),),
    "after_slice": (slice(None), range(1, 4)),
    "after_int": (0, range(2, 4)),
    "two_ranges": (range(0, 3, 2), range(1, 3)),
    "reversed": range(2, -1, -1),
    "empty": range(0),
    "with_ellipsis": (Ellipsis, range(1, 2)),
}


@pytest.mark.parametrize("name", list(KEYS))
def test_range_index_matches_torch(name):
    check_op(lambda lib, t: t[KEYS[name]], [make_input((3, 4, 2), seed=9)])


def test_range_index_is_the_list_index():
    x = distnn.arange(24.0).reshape(4, 6)
    assert x[range(1, 4, 2)].tolist() == x[[1, 3]].tolist()
    assert x[range(1, 4, 2)].grad_fn is None


@requires_torch
def test_range_assignment_matches_torch():
    def run(lib):
        x = lib.zeros(3, 5)
        x[1, range(0, 5, 2)] = 7.0
        x[range(2)] += 1.0
        return x.tolist()

    assert run(distnn) == run(torch)

"""How a double-backward case is written: ``case(id, fn, *inputs)`` with float64 leaves
made to keep gradgradcheck's finite differences off kinks and ties, constants (no
grad), and the index tensors and masks that cases close over.
"""

import numpy as np

import distnn
from op_check import DEVICE


def _leaf(array):
    return distnn.tensor(array, dtype=distnn.float64, device=DEVICE, requires_grad=True)


def uniform(shape, seed, low=-1.0, high=1.0):
    return _leaf(np.random.default_rng(seed).uniform(low, high, size=shape))


def _spread(shape, seed, low, high, kinks):
    n = int(np.prod(shape))
    step = (high - low) / n
    values = low + step * (np.arange(n) + 0.63)  # off-centre, so no two |values| tie either
    for k in kinks:
        near = np.abs(values - k) < step / 3
        values = np.where(near, k + np.where(values >= k, step, -step) / 3, values)
    return np.random.default_rng(seed).permutation(values).reshape(shape)


def spread(shape, seed, low=-1.0, high=1.0, kinks=(0.0,)):
    """Distinct values spread evenly over [low, high] in random order, none closer than a
    third of their spacing to a kink: no ties for max and pooling, no jump in the
    derivatives of relu, abs or clamp within a finite difference of any input."""
    return _leaf(_spread(shape, seed, low, high, kinks))


def apart(shape, seed, kinks=(0.0,), low=-1.5, high=1.5):
    """Two leaves x, y whose difference x - y is ``spread`` (off the ``kinks``): no ties
    for maximum and minimum, no kinks of l1, smooth l1 or huber losses."""
    x = np.random.default_rng(seed).uniform(-1, 1, size=shape)
    return _leaf(x), _leaf(x - _spread(shape, seed + 1, low, high, kinks))


def const(data, dtype=None):
    """A constant (no grad): class indices, masks, weights, running statistics."""
    return distnn.tensor(np.asarray(data), dtype=dtype, device=DEVICE)


def const64(shape, seed, low=0.5, high=1.5):
    return const(np.random.default_rng(seed).uniform(low, high, size=shape), distnn.float64)


def with_zeros(shape, seed, zeros, low=0.5, high=1.5):
    """``uniform`` magnitudes with random signs and exact zeros at the flat ``zeros``
    positions: for prod and cumprod, whose derivatives must stay exact at zeros."""
    rng = np.random.default_rng(seed)
    values = rng.uniform(low, high, size=shape) * rng.choice([-1.0, 1.0], size=shape)
    values.reshape(-1)[list(zeros)] = 0.0
    return _leaf(values)


def case(case_id, fn, *inputs):
    return case_id, fn, inputs


# index tensors and masks the cases of several families close over
ROWS = [2, 0, 2]  # repeated: gradients accumulate
MASK = np.array([[True, False, True, True], [False, False, True, False], [True, True, False, True]])
GATHER = [[0, 0], [1, 3], [2, 1]]
SCATTER = [[3, 0], [1, 2], [0, 3]]  # no repeats within a row: scatter's result is defined

LABELS = [1, 3, 0]
LABELS_4D = [[[0, 2], [1, 1]], [[2, 0], [0, 1]]]
EMBED_IDX = [[1, 3, 3], [0, 4, 1]]

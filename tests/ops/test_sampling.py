"""multinomial, tested statistically: sample frequencies match the probabilities (first
and second draws without replacement too), no repeats without replacement, zero weights
never drawn while any other is left; shapes, dtypes, seeding, and PyTorch's errors."""

import numpy as np
import pytest

import distnn
from op_check import torch

P = np.array([0.1, 0.2, 0.0, 0.3, 0.4])


def _frequencies(samples, categories):
    return np.bincount(samples.reshape(-1), minlength=categories) / samples.size


def _sigmas(p, n):
    """Six standard deviations of a frequency estimated from ``n`` draws (at least 1e-3)."""
    return np.maximum(6 * np.sqrt(p * (1 - p) / n), 1e-3)


@pytest.mark.parametrize("scale", [1.0, 7.5])  # probabilities or unnormalised weights
def test_with_replacement_frequencies_match(scale):
    distnn.manual_seed(0)
    samples = distnn.multinomial(distnn.tensor(P * scale), 200_000, replacement=True).numpy()
    assert samples.shape == (200_000,) and samples.dtype == np.int64
    freq = _frequencies(samples, len(P))
    assert freq[2] == 0.0
    np.testing.assert_array_less(np.abs(freq - P), _sigmas(P, samples.size))


def test_rows_are_separate_distributions():
    weights = np.array([[1.0, 0.0, 3.0], [0.0, 2.0, 2.0], [5.0, 0.0, 0.0]])
    distnn.manual_seed(1)
    samples = distnn.tensor(weights, dtype=distnn.float32).multinomial(50_000, True).numpy()
    assert samples.shape == (3, 50_000)
    for row, s in zip(weights, samples):
        p = row / row.sum()
        np.testing.assert_array_less(np.abs(_frequencies(s, 3) - p), _sigmas(p, s.size))


def test_without_replacement_first_and_second_draws_match():
    """Drawn without replacement, the second index is j with probability
    sum over i != j of p_i p_j / (1 - p_i)."""
    rows = 40_000
    distnn.manual_seed(2)
    samples = distnn.multinomial(distnn.tensor(np.tile(P, (rows, 1))), 3).numpy()
    assert samples.shape == (rows, 3)
    assert all(len(set(r)) == 3 for r in samples[:2000].tolist())
    assert (np.sort(samples, axis=1)[:, 1:] != np.sort(samples, axis=1)[:, :-1]).all()
    assert not (samples[:, :2] == 2).any()  # the zero weight only ever comes after the four others
    np.testing.assert_array_less(np.abs(_frequencies(samples[:, 0], 5) - P), _sigmas(P, rows))
    second = np.array([sum(P[i] * P[j] / (1 - P[i]) for i in range(5) if i != j) for j in range(5)])
    np.testing.assert_array_less(np.abs(_frequencies(samples[:, 1], 5) - second), _sigmas(second, rows))


def test_one_sample_and_every_category():
    distnn.manual_seed(3)
    one = distnn.multinomial(distnn.tensor(np.tile(P, (100_000, 1))), 1).numpy()
    assert one.shape == (100_000, 1)
    np.testing.assert_array_less(np.abs(_frequencies(one, 5) - P), _sigmas(P, one.size))
    every = distnn.multinomial(distnn.tensor(P), 5).numpy()
    assert sorted(every.tolist()) == [0, 1, 2, 3, 4] and every[-1] == 2
    assert distnn.multinomial(distnn.tensor([0.0, 1.0]), 2).tolist() == [1, 0]  # as torch
    assert distnn.multinomial(distnn.tensor([0.0, 1.0]), 3, True).tolist() == [1, 1, 1]


def test_seeded_and_generator_draws_repeat():
    p = distnn.tensor(P)
    distnn.manual_seed(7)
    first = [p.multinomial(4, True).tolist(), p.multinomial(3).tolist()]
    distnn.manual_seed(7)
    assert [p.multinomial(4, True).tolist(), p.multinomial(3).tolist()] == first
    draws = [distnn.multinomial(p, 10, True, generator=distnn.Generator().manual_seed(5)).tolist() for _ in range(2)]
    assert draws[0] == draws[1]
    assert distnn.multinomial(p, 50, True, generator=distnn.Generator().manual_seed(6)).tolist() != \
        distnn.multinomial(p, 50, True, generator=distnn.Generator().manual_seed(5)).tolist()


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_dtypes_and_shapes(dtype):
    weights = distnn.tensor([[1.0, 2.0], [3.0, 0.5]], dtype=getattr(distnn, dtype), requires_grad=dtype != "float16")
    out = distnn.multinomial(weights, 2)
    assert out.dtype == distnn.int64 and out.shape == (2, 2) and not out.requires_grad
    assert distnn.multinomial(distnn.ones(0, 3), 2, True).shape == (0, 2)


@pytest.mark.parametrize("weights,n,replacement,error,message", [
    ([-0.1, 1.0], 1, False, RuntimeError, "probability tensor contains either `inf`, `nan` or element < 0"),
    ([1.0, float("inf")], 1, False, RuntimeError, "probability tensor contains either `inf`, `nan` or element < 0"),
    ([1.0, float("nan")], 2, False, RuntimeError, "probability tensor contains either `inf`, `nan` or element < 0"),
    ([0.0, 0.0], 1, False, RuntimeError, "invalid multinomial distribution (sum of probabilities <= 0)"),
    ([[1.0, 1.0], [0.0, 0.0]], 1, True, RuntimeError, "invalid multinomial distribution (sum of probabilities <= 0)"),
    ([-0.1, 1.0, 1.0], 2, True, RuntimeError, "invalid multinomial distribution (encountering probability entry < 0)"),
    ([1.0, float("nan")], 2, True, RuntimeError,
     "invalid multinomial distribution (encountering probability entry < 0)"),
    ([1.0, float("inf")], 2, True, RuntimeError,
     "invalid multinomial distribution (encountering probability entry = infinity or NaN)"),
    ([[0.0, 0.0], [-1.0, 1.0]], 2, True, RuntimeError,
     "invalid multinomial distribution (sum of probabilities <= 0)"),
    ([0.0, 0.0, 0.0], 2, True, RuntimeError, "invalid multinomial distribution (sum of probabilities <= 0)"),
    (np.ones((2, 0)), 2, True, RuntimeError, "invalid multinomial distribution (sum of probabilities <= 0)"),
    (np.ones((2, 0)), 1, False, RuntimeError,
     "cannot sample n_sample > prob_dist.size(-1) samples without replacement"),
    ([0.1, 0.2, 0.7], 4, False, RuntimeError,
     "cannot sample n_sample > prob_dist.size(-1) samples without replacement"),
    ([0.1, 0.9], 0, False, RuntimeError, "cannot sample n_sample <= 0 samples"),
    ([0.1, 0.9], -1, True, RuntimeError, "cannot sample n_sample <= 0 samples"),
    (np.ones((2, 2, 2)), 1, False, RuntimeError, "prob_dist must be 1 or 2 dim"),
    (1.0, 1, False, RuntimeError, "prob_dist must be 1 or 2 dim"),
    (np.array([1, 2]), 1, False, RuntimeError, "multinomial only supports floating-point dtypes for input, got: Long"),
    ([0.1, 0.9], 1.5, False, TypeError, "multinomial(): argument 'num_samples' (position 2) must be int, not float"),
    ([0.1, 0.9], True, False, TypeError, "multinomial(): argument 'num_samples' (position 2) must be int, not bool"),
])
def test_errors_as_torch(weights, n, replacement, error, message):
    for lib in (distnn, torch) if torch is not None else (distnn,):
        with pytest.raises(error) as raised:
            lib.multinomial(lib.tensor(weights), n, replacement)
        assert str(raised.value) == message, lib.__name__

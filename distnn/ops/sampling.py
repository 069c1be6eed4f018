"""Drawing from categorical distributions: ``multinomial``, category indices (int64)
from rows of probabilities or unnormalised weights, with or without replacement,
drawn from the seeded generators of ``distnn.random``.

The draws follow PyTorch's CPU algorithms, and so its checks and errors: without
replacement (or for one sample) the ``num_samples`` largest ``weight / q`` with
``q ~ Exp(1)`` (the Gumbel-top-k trick); with replacement, uniform draws looked
up in each row's cumulative distribution. The numbers drawn are distnn's own, so
a seed gives other samples than the same seed in PyTorch.
"""

from .. import random as _random
from ..backend import array_module
from .common import int_argument, no_grad_result
from .reduce import _type_name
from .reduce_dims import _INT64
from .sorting import sorted_indices

__all__ = ["multinomial"]

TENSOR_METHODS = ("multinomial",)

_MAX_CATEGORIES = 2 ** 24  # PyTorch indexes categories in float32


def multinomial(input, num_samples, replacement=False, *, generator=None):
    """``num_samples`` category indices for each distribution in ``input`` (1-D: one,
    2-D: one per row), each index drawn with probability proportional to its weight;
    without ``replacement`` no index repeats within a row."""
    n = int_argument(num_samples, "multinomial", "num_samples", 2)
    data = input._data
    if not 1 <= data.ndim <= 2:
        raise RuntimeError("prob_dist must be 1 or 2 dim")
    if data.dtype.kind != "f":
        raise RuntimeError(f"multinomial only supports floating-point dtypes for input, got: "
                           f"{_type_name(data.dtype)}")
    if n <= 0:
        raise RuntimeError("cannot sample n_sample <= 0 samples")
    categories = data.shape[-1]
    if not replacement and n > categories:
        raise RuntimeError("cannot sample n_sample > prob_dist.size(-1) samples without replacement")
    if categories > _MAX_CATEGORIES:
        raise RuntimeError("number of categories cannot exceed 2^24")
    xp = array_module(data)
    rows = data.reshape((data.shape[0] if data.ndim == 2 else 1, categories)).astype("float64")
    if rows.shape[0] == 0:
        index = xp.zeros((0, n), _INT64)
    elif not replacement or n == 1:
        index = _gumbel_top_k(xp, rows, n, input.device, generator)
    else:
        index = _inverse_cdf(xp, rows, n, input.device, generator)
    return no_grad_result(index.reshape(data.shape[:-1] + (n,)))


def _gumbel_top_k(xp, rows, n, device, generator):
    """Each row's ``n`` largest ``weight / q``, ``q ~ Exp(1)``: a draw without replacement."""
    if not bool(xp.all(rows >= 0) & xp.all(rows < float("inf"))):  # NaN fails both
        raise RuntimeError("probability tensor contains either `inf`, `nan` or element < 0")
    if bool(xp.any(rows.sum(axis=1) == 0)):
        raise RuntimeError("invalid multinomial distribution (sum of probabilities <= 0)")
    scores = rows / _random.sample("exponential", rows.shape, "float64", device, generator)
    if n == 1:
        return xp.argmax(scores, axis=1, keepdims=True).astype(_INT64)
    return sorted_indices(xp, scores, 1, True)[:, :n]


def _inverse_cdf(xp, rows, n, device, generator):
    """``n`` draws with replacement per row: uniforms looked up in the row's cumulative
    weights. A zero weight adds an empty interval, so it is never drawn."""
    _check_distributions(xp, rows)
    cdf = xp.cumsum(rows, axis=1)
    cdf /= cdf[:, -1:]  # the last entry is exactly 1, above every uniform draw
    uniform = _random.sample("uniform", (rows.shape[0], n), "float64", device, generator)
    return xp.stack([xp.searchsorted(c, u, side="right") for c, u in zip(cdf, uniform)]).astype(_INT64)


def _check_distributions(xp, rows):
    """PyTorch's with-replacement checks, row by row, entry by entry: the first bad
    entry or empty row decides the error."""
    bad = ~(rows >= 0) | ~xp.isfinite(rows)
    empty = rows.sum(axis=1) <= 0
    failing = xp.nonzero(bad.any(axis=1) | empty)[0]
    if failing.size == 0:
        return
    row = int(failing[0])
    if not bool(bad[row].any()):
        raise RuntimeError("invalid multinomial distribution (sum of probabilities <= 0)")
    first = rows[row][int(xp.nonzero(bad[row])[0][0])]
    if not first >= 0:
        raise RuntimeError("invalid multinomial distribution (encountering probability entry < 0)")
    raise RuntimeError("invalid multinomial distribution (encountering probability entry = infinity or NaN)")

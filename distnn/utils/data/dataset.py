"""Dataset types, as in ``torch.utils.data``: map-style ``Dataset``,
``IterableDataset``, the wrappers ``TensorDataset``/``Subset``/``ConcatDataset``/
``ChainDataset``, and ``random_split``.

A dataset may also define ``_collated_getitems(indices)``, returning exactly what
``default_collate([self[i] for i in indices])`` would, in one vectorised step
(or ``NotImplemented`` to decline); the DataLoader uses it when the collate
function is the default one, so an in-memory dataset costs one fancy-index per
batch instead of one ``__getitem__`` per sample.
"""

import bisect
import itertools
import math
import warnings

import numpy as np

from ... import random as _random
from ...backend import move_to
from ...tensor import Tensor, _wrap

__all__ = ["Dataset", "IterableDataset", "TensorDataset", "Subset", "ConcatDataset",
           "ChainDataset", "random_split"]


class Dataset:
    """A map from keys (usually ``0..len-1``) to samples; subclasses define
    ``__getitem__`` and, for samplers that need it, ``__len__``."""

    def __class_getitem__(cls, item):  # ``Dataset[Tensor]`` in type hints, as torch's Generic allows
        return cls

    def __getitem__(self, index):
        raise NotImplementedError("Subclasses of Dataset should implement __getitem__.")

    def __add__(self, other):
        return ConcatDataset([self, other])


class IterableDataset(Dataset):
    """A stream of samples: subclasses define ``__iter__``. With ``num_workers > 0``
    every worker iterates its own copy; use ``get_worker_info()`` to shard."""

    def __iter__(self):
        raise NotImplementedError("Subclasses of IterableDataset should implement __iter__.")

    def __add__(self, other):
        return ChainDataset([self, other])


class TensorDataset(Dataset):
    """Samples are ``tuple(t[i] for t in tensors)``; all tensors share dim 0."""

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("Expect: at least one tensor, Actual: 0")
        for t in tensors:
            if not isinstance(t, Tensor):
                raise TypeError(f"Expect: distnn Tensors, Actual: {type(t).__name__}")
        sizes = [t.size(0) for t in tensors]
        if any(s != sizes[0] for s in sizes):
            raise ValueError(f"Size mismatch between tensors: Expect: equal size(0), Actual: {sizes}")
        self.tensors = tensors

    def __getitem__(self, index):
        return tuple(t[index] for t in self.tensors)

    def __len__(self):
        return self.tensors[0].size(0)

    def _collated_getitems(self, indices):
        # default_collate turns a batch of tuples into a *list* of stacked tensors.
        idx = np.asarray(indices, dtype=np.int64)
        return [_wrap(t._data[move_to(idx, t.device)]) for t in self.tensors]


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``, in that order."""

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = indices

    def __getitem__(self, idx):
        if isinstance(idx, list):
            return self.dataset[[self.indices[i] for i in idx]]
        return self.dataset[self.indices[idx]]

    def __getitems__(self, indices):
        if callable(getattr(self.dataset, "__getitems__", None)):
            return self.dataset.__getitems__([self.indices[i] for i in indices])
        return [self.dataset[self.indices[i]] for i in indices]

    def __len__(self):
        return len(self.indices)

    def _collated_getitems(self, indices):
        inner = collated_getitems_of(self.dataset)
        if inner is None:
            return NotImplemented
        return inner([self.indices[i] for i in indices])


def _owner(cls, name):
    return next((k for k in cls.__mro__ if name in vars(k)), None)


def collated_getitems_of(dataset):
    """``dataset._collated_getitems`` when it may stand in for per-sample
    ``__getitem__`` + ``default_collate``; None when it is absent or a subclass
    overrides ``__getitem__``/``__getitems__`` below the class defining it."""
    cls = type(dataset)
    hook = _owner(cls, "_collated_getitems")
    if hook is None:
        return None
    for name in ("__getitem__", "__getitems__"):
        owner = _owner(cls, name)
        if owner is not None and not issubclass(hook, owner):
            return None
    return dataset._collated_getitems


class ConcatDataset(Dataset):
    """Map-style datasets one after another."""

    @staticmethod
    def cumsum(sequence):
        return list(itertools.accumulate(len(d) for d in sequence))

    def __init__(self, datasets):
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("datasets should not be an empty iterable")
        for d in self.datasets:
            if isinstance(d, IterableDataset):
                raise TypeError("ConcatDataset does not support IterableDataset")
        self.cumulative_sizes = self.cumsum(self.datasets)

    def __len__(self):
        return self.cumulative_sizes[-1]

    def __getitem__(self, idx):
        n = len(self)
        if idx < 0:
            if -idx > n:
                raise ValueError("absolute value of index should not exceed dataset length")
            idx += n
        dataset_idx = bisect.bisect_right(self.cumulative_sizes, idx)
        if dataset_idx == len(self.datasets):
            raise IndexError(f"index {idx} is out of range for ConcatDataset of length {n}")
        start = self.cumulative_sizes[dataset_idx - 1] if dataset_idx else 0
        return self.datasets[dataset_idx][idx - start]


class ChainDataset(IterableDataset):
    """Iterable datasets one after another, chained lazily."""

    def __init__(self, datasets):
        self.datasets = datasets

    def __iter__(self):
        for d in self.datasets:
            if not isinstance(d, IterableDataset):
                raise TypeError(f"ChainDataset only supports IterableDataset, got {type(d).__name__}")
            yield from d

    def __len__(self):
        return sum(len(d) for d in self.datasets)


def random_split(dataset, lengths, generator=None):
    """Split ``dataset`` into non-overlapping ``Subset``s of the given lengths, or of
    fractions summing to 1 (floors, then the remainder spread round-robin).
    ``generator=None`` draws from the default generator, as PyTorch's default does."""
    n = len(dataset)
    if math.isclose(sum(lengths), 1) and sum(lengths) <= 1:
        sizes = []
        for i, frac in enumerate(lengths):
            if frac < 0 or frac > 1:
                raise ValueError(f"Fraction at index {i} is not between 0 and 1")
            sizes.append(math.floor(n * frac))
        for i in range(n - sum(sizes)):
            sizes[i % len(sizes)] += 1
        lengths = sizes
        for i, length in enumerate(lengths):
            if length == 0:
                warnings.warn(f"Length of split at index {i} is 0. This might result in an empty dataset.",
                              stacklevel=2)
    for i, length in enumerate(lengths):
        if not isinstance(length, (int, np.integer)) or length < 0:
            raise ValueError(f"Expect: non-negative integer lengths or fractions summing to 1, "
                             f"Actual: {lengths[i]!r} at index {i}")
    if sum(lengths) != n:
        raise ValueError(f"Sum of input lengths does not equal the length of the input dataset! "
                         f"Expect: {n}, Actual: {sum(lengths)}")
    indices = _random.rng(generator).permutation(n).tolist()
    return [Subset(dataset, indices[end - length:end])
            for end, length in zip(itertools.accumulate(lengths), lengths)]

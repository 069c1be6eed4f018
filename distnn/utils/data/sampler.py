"""Samplers: the order in which a DataLoader visits dataset indices, as in
``torch.utils.data`` (sequential, random with or without replacement, a random
order over given indices, and ``BatchSampler`` grouping indices into batches).

Randomness follows PyTorch's contract: with ``generator=None`` a sampler draws
one fresh seed from distnn's default generator each time it is iterated, so
``distnn.manual_seed(s)`` makes every epoch reproducible while consecutive
epochs still differ; with a ``generator`` it draws from that generator only.
"""

import itertools

import numpy as np

from ... import random as _random

__all__ = ["Sampler", "SequentialSampler", "RandomSampler", "SubsetRandomSampler", "BatchSampler"]


class Sampler:
    """Base class: subclasses define ``__iter__`` (over indices) and usually ``__len__``."""

    def __init__(self, data_source=None):
        pass

    def __class_getitem__(cls, item):  # ``Sampler[int]`` in type hints
        return cls

    def __iter__(self):
        raise NotImplementedError


class SequentialSampler(Sampler):
    """``0, 1, ..., len(data_source) - 1``."""

    def __init__(self, data_source):
        self.data_source = data_source

    def __iter__(self):
        return iter(range(len(self.data_source)))

    def __len__(self):
        return len(self.data_source)


def _epoch_rng(generator):
    """The numpy Generator one epoch draws from (see module docstring)."""
    if generator is not None:
        return _random.rng(generator)
    seed = int(_random.rng(None).integers(0, 2 ** 63 - 1))
    return np.random.Generator(np.random.PCG64(seed))


class RandomSampler(Sampler):
    """A random permutation of the indices each epoch; with ``replacement=True``,
    ``num_samples`` independent uniform draws. Without replacement and
    ``num_samples > len``, whole permutations are concatenated (as PyTorch)."""

    def __init__(self, data_source, replacement=False, num_samples=None, generator=None):
        self.data_source = data_source
        self.replacement = replacement
        self._num_samples = num_samples
        self.generator = generator
        if not isinstance(replacement, bool):
            raise TypeError(f"replacement should be a boolean value, but got replacement={replacement}")
        n = self.num_samples
        if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
            raise ValueError(f"num_samples should be a positive integer value, but got num_samples={n}")

    @property
    def num_samples(self):
        # The dataset may change size after the sampler is built.
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def __iter__(self):
        n = len(self.data_source)
        rng = _epoch_rng(self.generator)
        if self.replacement:
            # Drawn in chunks so a huge num_samples never materialises at once.
            remaining = self.num_samples
            while remaining > 0:
                chunk = min(remaining, 1 << 16)
                yield from rng.integers(0, n, size=chunk).tolist()
                remaining -= chunk
        else:
            for _ in range(self.num_samples // n):
                yield from rng.permutation(n).tolist()
            yield from rng.permutation(n)[:self.num_samples % n].tolist()

    def __len__(self):
        return self.num_samples


class SubsetRandomSampler(Sampler):
    """The given ``indices`` in a random order each epoch (no replacement).
    Draws directly from ``generator`` (or the default one), as PyTorch does."""

    def __init__(self, indices, generator=None):
        self.indices = indices
        self.generator = generator

    def __iter__(self):
        for i in _random.rng(self.generator).permutation(len(self.indices)).tolist():
            yield self.indices[i]

    def __len__(self):
        return len(self.indices)


class BatchSampler(Sampler):
    """Groups the indices of ``sampler`` into lists of ``batch_size``; the short
    last batch is kept unless ``drop_last``."""

    def __init__(self, sampler, batch_size, drop_last):
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
            raise ValueError(f"batch_size should be a positive integer value, but got batch_size={batch_size}")
        if not isinstance(drop_last, bool):
            raise ValueError(f"drop_last should be a boolean value, but got drop_last={drop_last}")
        self.sampler = sampler
        self.batch_size = batch_size
        self.drop_last = drop_last

    def __iter__(self):
        it = iter(self.sampler)
        while True:
            batch = list(itertools.islice(it, self.batch_size))
            if not batch or (self.drop_last and len(batch) < self.batch_size):
                return
            yield batch

    def __len__(self):
        if self.drop_last:
            return len(self.sampler) // self.batch_size
        return (len(self.sampler) + self.batch_size - 1) // self.batch_size

"""``DistributedSampler``: each rank iterates its own shard of the dataset.

Semantics are PyTorch's: with ``shuffle`` the permutation is seeded by
``seed + epoch`` (call ``set_epoch`` every epoch, identical on every rank);
without ``drop_last`` the index list is padded by repeating its start so every
rank gets the same number of samples (and so of batches); with it the tail is
dropped instead. Rank ``r`` takes indices ``r, r + n, r + 2n, ...``.
"""

import math

from ... import random as _random
from .sampler import Sampler


class DistributedSampler(Sampler):
    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0, drop_last=False):
        if num_replicas is None or rank is None:
            from ...distributed import get_rank, get_world_size, is_initialized
            if not is_initialized():
                raise RuntimeError("DistributedSampler needs num_replicas and rank, or an initialised "
                                   "process group to read them from")
            num_replicas = get_world_size() if num_replicas is None else num_replicas
            rank = get_rank() if rank is None else rank
        if not 0 <= rank < num_replicas:
            raise ValueError(f"Invalid rank {rank}, rank should be in the interval [0, {num_replicas - 1}]")
        self.dataset = dataset
        self.num_replicas, self.rank = num_replicas, rank
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.epoch = 0
        n = len(dataset)
        if drop_last and n % num_replicas:
            self.num_samples = math.ceil((n - num_replicas) / num_replicas)
        else:
            self.num_samples = math.ceil(n / num_replicas)
        self.total_size = self.num_samples * num_replicas

    def __iter__(self):
        n = len(self.dataset)
        if self.shuffle:
            generator = _random.Generator().manual_seed(self.seed + self.epoch)
            indices = generator.numpy.permutation(n).tolist()
        else:
            indices = list(range(n))
        if not self.drop_last:
            padding = self.total_size - len(indices)
            if padding <= len(indices):
                indices += indices[:padding]
            else:
                indices += (indices * math.ceil(padding / len(indices)))[:padding]
        else:
            indices = indices[:self.total_size]
        return iter(indices[self.rank:self.total_size:self.num_replicas])

    def __len__(self):
        return self.num_samples

    def set_epoch(self, epoch):
        """Reshuffle for ``epoch``; call it on every rank before iterating."""
        self.epoch = epoch

    def state_dict(self):
        return {"epoch": self.epoch, "seed": self.seed}

    def load_state_dict(self, state):
        self.epoch, self.seed = state["epoch"], state["seed"]

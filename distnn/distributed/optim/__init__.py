"""``distnn.distributed.optim``: optimizers that know about process groups, as
``torch.distributed.optim`` (``ZeroRedundancyOptimizer``)."""

from .zero_redundancy_optimizer import ZeroRedundancyOptimizer

__all__ = ["ZeroRedundancyOptimizer"]

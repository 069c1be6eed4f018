"""``distnn.nn.parallel.DistributedDataParallel``, PyTorch's spelling.

DDP lives in ``distnn.distributed`` (it needs process groups, a layer above
``nn``); this alias resolves it on first use so importing ``nn`` never pulls
in the distributed layer.
"""

__all__ = ["DistributedDataParallel"]


def __getattr__(name):
    if name == "DistributedDataParallel":
        from ...distributed.ddp import DistributedDataParallel
        return DistributedDataParallel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""``distnn.distributed``: torch.distributed's API over ZeroMQ.

Rank 0 serves the rendezvous store; ranks exchange data over per-peer ZeroMQ
sockets (``ipc://`` on one host, ``tcp://`` across hosts) with msgpack headers
and raw payload frames. See DESIGN.md and the README for the environment
variables (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, DISTNN_JOB_TOKEN, and the
networking ones of ``network``). ``is_launched()`` says whether a launcher, srun
or mpirun started this process as one rank of several.
"""

import warnings

from .. import backend as _backend
from .all_to_all import all_to_all, all_to_all_single
from .collective_ops import (GroupMember, ReduceOp, all_gather, all_gather_into_tensor, all_reduce, barrier,
                             broadcast, destroy_process_group, gather, get_backend, get_global_rank, get_rank,
                             get_world_size, init_process_group, is_available, is_initialized, new_group, reduce,
                             reduce_scatter, reduce_scatter_tensor, scatter)
from .ddp import DistributedDataParallel
from .env import get_node_local_rank, is_launched
from .errors import DistributedError, DistributedTimeoutError
from .object_collectives import all_gather_object, broadcast_object_list
from .monitored_barrier import monitored_barrier
from .p2p import P2POp, batch_isend_irecv, irecv, isend, recv, send
from .process_group import ProcessGroup
from .reducer import GradBucket
from .work import Work

__all__ = ["GroupMember", "ReduceOp", "all_gather", "all_gather_into_tensor", "all_gather_object",
           "all_reduce", "barrier", "broadcast", "broadcast_object_list", "destroy_process_group", "gather",
           "get_backend", "get_global_rank", "get_rank", "get_world_size", "init_process_group", "irecv",
           "is_available", "is_initialized", "isend", "new_group", "recv", "reduce", "reduce_scatter",
           "reduce_scatter_tensor", "scatter", "send", "DistributedError", "DistributedTimeoutError",
           "ProcessGroup", "Work", "DistributedDataParallel", "get_default_backend_for_device", "reduce_op",
           "is_launched", "get_node_local_rank", "GradBucket", "all_to_all", "all_to_all_single", "P2POp",
           "batch_isend_irecv", "monitored_barrier"]


def get_default_backend_for_device(device):
    """The backend name to pass to ``init_process_group`` for ``device`` (a string or a device):
    "gloo" for the CPU, as in PyTorch, and for CUDA too, where PyTorch says "nccl". distnn
    has one backend, ZeroMQ, which init_process_group also accepts as "gloo": like gloo it
    moves CUDA tensors through host memory, and it has no NCCL."""
    _backend.as_device(device)  # a device distnn does not have raises PyTorch's RuntimeError
    return "gloo"


class _reduce_op:
    """Deprecated ``dist.reduce_op``: ``ReduceOp``'s members, warning on each access, as in PyTorch."""

    def __init__(self):
        for op in ReduceOp:
            setattr(self, op.name, op)
        self.__members__ = ReduceOp.__members__

    def __getattribute__(self, key):
        warnings.warn("`torch.distributed.reduce_op` is deprecated, please use `torch.distributed.ReduceOp` "
                      "instead", FutureWarning, stacklevel=2)
        return object.__getattribute__(self, key)


reduce_op = _reduce_op()


def _register_with_nn():
    """nn sits below this package and never imports it: SyncBatchNorm gets the collectives
    from here."""
    import sys
    from ..nn.modules import sync_batchnorm
    sync_batchnorm.register_collectives(sys.modules[__name__])


_register_with_nn()

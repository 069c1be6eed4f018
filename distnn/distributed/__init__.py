"""``distnn.distributed``: torch.distributed's API over ZeroMQ.

Rank 0 serves the rendezvous store; ranks exchange data over per-peer ZeroMQ
sockets (``ipc://`` on one host, ``tcp://`` across hosts) with msgpack headers
and raw payload frames. See DESIGN.md and the README for the environment
variables (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, DISTNN_JOB_TOKEN).
"""

from .collective_ops import (GroupMember, ReduceOp, all_gather, all_gather_into_tensor, all_gather_object,
                             all_reduce, barrier, broadcast, broadcast_object_list, destroy_process_group,
                             gather, get_backend, get_global_rank, get_rank, get_world_size,
                             init_process_group, irecv, is_available, is_initialized, isend, new_group, recv,
                             reduce, reduce_scatter, reduce_scatter_tensor, scatter, send)
from .ddp import DistributedDataParallel
from .errors import DistributedError, DistributedTimeoutError
from .process_group import ProcessGroup, Work

__all__ = ["GroupMember", "ReduceOp", "all_gather", "all_gather_into_tensor", "all_gather_object",
           "all_reduce", "barrier", "broadcast", "broadcast_object_list", "destroy_process_group", "gather",
           "get_backend", "get_global_rank", "get_rank", "get_world_size", "init_process_group", "irecv",
           "is_available", "is_initialized", "isend", "new_group", "recv", "reduce", "reduce_scatter",
           "reduce_scatter_tensor", "scatter", "send", "DistributedError", "DistributedTimeoutError",
           "ProcessGroup", "Work", "DistributedDataParallel"]

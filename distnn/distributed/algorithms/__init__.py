"""``distnn.distributed.algorithms``: the join context manager for uneven inputs
(``Join``, ``Joinable``, ``JoinHook``) and DDP communication hooks
(``ddp_comm_hooks``), as in ``torch.distributed.algorithms``."""

from .join import Join, Joinable, JoinHook

__all__ = ["Join", "Joinable", "JoinHook"]

"""DDP communication hooks, as ``torch.distributed.algorithms.ddp_comm_hooks``:
``default_hooks`` (``allreduce_hook``, ``fp16_compress_hook``, ``bf16_compress_hook``,
``fp16_compress_wrapper``) and ``powerSGD_hook`` (``PowerSGDState``,
``powerSGD_hook``). Register one with ``model.register_comm_hook(state, hook)``."""

from . import default_hooks, powerSGD_hook

__all__ = ["default_hooks", "powerSGD_hook"]

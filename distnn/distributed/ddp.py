"""``DistributedDataParallel``: one model replica per process, gradients averaged
across processes during backward (see ``reducer.py`` for the buckets).

At construction every rank checks that all ranks hold the same parameter
names, shapes and dtypes, then takes rank 0's parameters and buffers. Each
synced forward arms the reducer, so ``loss.backward()`` returns with
averaged gradients and ``optimizer.step()`` sees identical values everywhere.

``state_dict()`` is the wrapped module's own, with no ``module.`` prefix, so a
checkpoint saved from the DDP wrapper on rank 0 loads straight into a plain
model; ``load_state_dict`` accepts both forms.
"""

from contextlib import contextmanager

import numpy as np

from ..autograd import grad_mode
from ..nn.modules.module import Module
from . import collective_ops
from .errors import DistributedError
from .reducer import Reducer, parameter_fingerprint


class DistributedDataParallel(Module):
    def __init__(self, module, device_ids=None, output_device=None, dim=0, broadcast_buffers=True,
                 process_group=None, bucket_cap_mb=25, find_unused_parameters=False, check_reduction=False,
                 gradient_as_bucket_view=False, static_graph=False, check_consistency_every=0):
        super().__init__()
        self.module = module
        self.process_group = process_group
        self.broadcast_buffers = broadcast_buffers
        self.find_unused_parameters = find_unused_parameters
        self.check_consistency_every = int(check_consistency_every)
        self.world_size = collective_ops.get_world_size(process_group)
        self.rank = collective_ops.get_rank(process_group)
        self._root = collective_ops.get_global_rank(collective_ops._group(process_group), 0)
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        self._check_same_parameters(named)
        self._params = [p for _, p in named]
        # Buffers are listed once, as PyTorch's DDP does: walking the module tree on every
        # forward costs more than a small model's all-reduce. ``load_state_dict`` relists.
        self._module_buffers = list(module.buffers())
        self._sync_module_state()
        self.reducer = Reducer(self._params, process_group, bucket_cap_mb, self.world_size)
        self._require_sync = True
        self._steps = 0

    # --- construction ------------------------------------------------------------------
    def _check_same_parameters(self, named):
        mine = [[n, list(p.shape), p._data.dtype.name] for n, p in named]
        everyone = []
        collective_ops.all_gather_object(everyone, mine, group=self.process_group)
        for rank, theirs in enumerate(everyone):
            if theirs != everyone[0]:
                raise DistributedError("DistributedDataParallel: ranks hold different models:\n"
                                       + _describe_difference(everyone[0], theirs, rank))

    def _sync_module_state(self):
        """Every rank takes rank 0's parameters and buffers (one broadcast per tensor)."""
        with grad_mode.no_grad():
            for t in list(self.module.parameters()) + list(self.module.buffers()):
                collective_ops.broadcast(t, self._root, group=self.process_group)

    # --- training -----------------------------------------------------------------------
    def forward(self, *inputs, **kwargs):
        if self.broadcast_buffers and self.world_size > 1:
            self._broadcast_buffers()
        if self.check_consistency_every and self._steps % self.check_consistency_every == 0:
            self.check_consistency()
        self._steps += 1
        if grad_mode.is_grad_enabled() and self._require_sync:
            self.reducer.prepare_for_backward()
        else:
            self.reducer.disarm()
        return self.module(*inputs, **kwargs)

    def _broadcast_buffers(self):
        """Rank 0's buffers to all, without in-place writes to arrays autograd may have
        saved: each buffer gets a fresh array."""
        for buf in self._module_buffers:
            fresh = buf._data.copy()
            collective_ops.broadcast(fresh, self._root, group=self.process_group)
            buf._data = fresh

    @contextmanager
    def no_sync(self):
        """Accumulate gradients locally; the next synced backward reduces the sum."""
        previous = self._require_sync
        self._require_sync = False
        try:
            yield
        finally:
            self._require_sync = previous

    def check_consistency(self):
        """Raise naming the ranks whose parameters differ from rank 0's."""
        fingerprints = np.zeros(self.world_size, np.int64)
        collective_ops.all_gather_into_tensor(fingerprints, np.array([parameter_fingerprint(self._params)]),
                                              group=self.process_group)
        diverged = [r for r in range(self.world_size) if fingerprints[r] != fingerprints[0]]
        if diverged:
            raise DistributedError(f"DistributedDataParallel: parameters of rank(s) {diverged} diverged "
                                   f"from rank 0's (checked at step {self._steps})")

    @property
    def comm_wait_seconds(self):
        """Time backward spent waiting for gradient all-reduces, summed over steps."""
        return self.reducer.comm_wait_seconds

    # --- checkpoints -------------------------------------------------------------------
    def state_dict(self, *args, **kwargs):
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict=True, assign=False):
        if state_dict and all(k.startswith("module.") for k in state_dict):
            state_dict = type(state_dict)((k[len("module."):], v) for k, v in state_dict.items())
        result = self.module.load_state_dict(state_dict, strict=strict, assign=assign)
        self._module_buffers = list(self.module.buffers())
        return result


def _describe_difference(reference, theirs, rank):
    ref, other = {n: (s, d) for n, s, d in reference}, {n: (s, d) for n, s, d in theirs}
    lines = []
    for name in sorted(set(ref) | set(other)):
        a, b = ref.get(name), other.get(name)
        if a != b:
            lines.append(f"  {name}: rank 0 has {_fmt(a)}, rank {rank} has {_fmt(b)}")
    if not lines:
        lines.append(f"  parameter order differs between rank 0 and rank {rank}")
    return "\n".join(lines)


def _fmt(entry):
    return "no such parameter" if entry is None else f"shape {entry[0]} {entry[1]}"

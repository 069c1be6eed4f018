"""``DistributedDataParallel``: one model replica per process, gradients averaged
across processes during backward (see ``reducer.py`` for the buckets).

At construction every rank checks that all ranks hold the same parameter
names, shapes and dtypes, then takes rank 0's parameters and buffers. Each
synced forward arms the reducer, so ``loss.backward()`` returns with
averaged gradients and ``optimizer.step()`` sees identical values everywhere.

``register_comm_hook(state, hook)`` replaces the gradient all-reduce by a
communication hook (see ``algorithms/ddp_comm_hooks``); ``join()`` lets ranks with
fewer batches shadow the others' collectives (see ``algorithms/join.py``).

``state_dict()`` is the wrapped module's own, with no ``module.`` prefix, so a
checkpoint saved from the DDP wrapper on rank 0 loads straight into a plain
model; ``load_state_dict`` accepts both forms.
"""

from contextlib import contextmanager

import numpy as np

from ..autograd import grad_mode
from ..nn.modules.module import Module
from . import collective_ops, object_collectives, registry
from .algorithms.join import Join, JoinHook, Joinable, _JoinConfig
from .collective_ops import ReduceOp
from .errors import DistributedError
from .reducer import Reducer, explained, parameter_fingerprint


class DistributedDataParallel(Module, Joinable):
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
        self._root = collective_ops.get_global_rank(registry.resolve_group(process_group), 0)
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        self._check_same_parameters(named)
        self._params = [p for _, p in named]
        # Buffers are listed once, as PyTorch's DDP does: walking the module tree on every
        # forward costs more than a small model's all-reduce. ``load_state_dict`` relists.
        self._module_buffers = list(module.buffers())
        self._sync_module_state()
        self.reducer = Reducer(self._params, process_group, bucket_cap_mb, self.world_size,
                               find_unused_parameters)
        self._require_sync = True
        self._steps = 0
        self._join_config = _JoinConfig.construct_disabled_join_config()
        self._divide_by_initial_world_size = True

    # --- construction ------------------------------------------------------------------
    def _check_same_parameters(self, named):
        mine = [[n, list(p.shape), p._data.dtype.name] for n, p in named]
        everyone = []
        object_collectives.all_gather_object(everyone, mine, group=self.process_group)
        for rank, theirs in enumerate(everyone):
            if theirs != everyone[0]:
                raise DistributedError("DistributedDataParallel: ranks hold different models:\n"
                                       + _describe_difference(everyone[0], theirs, rank))

    def _sync_module_state(self, src=None):
        """Every rank takes rank ``src``'s (by default rank 0's) parameters and buffers
        (one broadcast per tensor)."""
        with grad_mode.no_grad():
            for t in list(self.module.parameters()) + list(self.module.buffers()):
                collective_ops.broadcast(t, self._root if src is None else src, group=self.process_group)

    # --- training -----------------------------------------------------------------------
    def forward(self, *inputs, **kwargs):
        joining = self._join_config.enable
        will_sync = grad_mode.is_grad_enabled() and self._require_sync
        with explained(f"synchronizing ranks before forward #{self._steps + 1}"):
            active_ranks = Join.notify_join_context(self)
            if self._syncs_buffers():
                # Under join, rank 0 may have joined with stale buffers: the highest rank still
                # training is the authority, as in PyTorch.
                self._broadcast_buffers(self._find_common_rank(self.rank, True) if joining else self._root)
            if joining:  # tells joined ranks whether to shadow a backward
                collective_ops.all_reduce(np.array([1.0 if will_sync else 0.0], np.float32),
                                          group=self.process_group, async_op=True)
        # Joined ranks hold stale parameters by design: no consistency check under join.
        if self.check_consistency_every and self._steps % self.check_consistency_every == 0 and not joining:
            self.check_consistency()
        self._steps += 1
        if will_sync:
            divide_by_active = active_ranks is not None and not self._divide_by_initial_world_size
            self.reducer.prepare_for_backward(active_ranks if divide_by_active else None)
        else:
            self.reducer.disarm()
        return self.module(*inputs, **kwargs)

    def _syncs_buffers(self):
        return self.broadcast_buffers and self.world_size > 1 and len(self._module_buffers) > 0

    def _broadcast_buffers(self, src):
        """Rank ``src``'s buffers to all, without in-place writes to arrays autograd may
        have saved: each buffer gets a fresh array."""
        for buf in self._module_buffers:
            fresh = buf._data.copy()
            collective_ops.broadcast(fresh, src, group=self.process_group)
            buf._data = fresh

    def _find_common_rank(self, rank, candidate):
        """The highest rank among those passing ``candidate=True`` (one all-reduce)."""
        best = np.array([rank if candidate else -1], np.int64)
        collective_ops.all_reduce(best, op=ReduceOp.MAX, group=self.process_group)
        if best[0] < 0:
            raise DistributedError("DistributedDataParallel: no rank offered itself as the authoritative copy")
        return collective_ops.get_global_rank(registry.resolve_group(self.process_group), int(best[0]))

    # --- communication hooks and uneven inputs -----------------------------------------
    def register_comm_hook(self, state, hook):
        """Reduce gradient buckets with ``hook(state, bucket) -> Future`` instead of the
        built-in all-reduce, as PyTorch's: ``bucket`` is a ``GradBucket`` whose ``buffer()``
        holds this rank's gradients (not yet divided: the hook divides, e.g. by the world
        size), and the Future's value is the bucket's reduced contents. Register once,
        before the first backward; e.g. ``model.register_comm_hook(None, default_hooks.
        fp16_compress_hook)`` or ``model.register_comm_hook(PowerSGDState(None), powerSGD_hook)``."""
        self.reducer.register_comm_hook(state, hook)

    def join(self, divide_by_initial_world_size=True, enable=True, throw_on_early_termination=False):
        """Context manager for training where ranks run different numbers of iterations:
        a rank out of data shadows the others' forward and backward collectives
        (contributing zero gradients) until every rank has joined; then every rank takes
        the model of the last to join. Gradients are divided by the initial world size
        (``divide_by_initial_world_size=True``) or by the ranks still training (a comm
        hook divides as it does, and runs on zeros on joined ranks, as in PyTorch).
        ``throw_on_early_termination=True``: every rank raises RuntimeError as soon as one
        runs out instead."""
        return Join([self], enable, throw_on_early_termination,
                    divide_by_initial_world_size=divide_by_initial_world_size)

    def join_hook(self, **kwargs):
        return _DDPJoinHook(self, kwargs.get("divide_by_initial_world_size", True))

    @property
    def join_device(self):
        return self._params[0].device if self._params else None

    @property
    def join_process_group(self):
        return self.process_group

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


class _DDPJoinHook(JoinHook):
    """What a joined rank does for DDP: mirror each forward's buffer broadcast and
    backward's bucket reductions (with zeros), then copy the last joiner's model."""

    def __init__(self, ddp, divide_by_initial_world_size):
        if not isinstance(ddp, DistributedDataParallel):
            raise TypeError(f"Expect: a DistributedDataParallel, Actual: {type(ddp).__name__}")
        self.ddp = ddp
        ddp._divide_by_initial_world_size = divide_by_initial_world_size

    def main_hook(self):
        ddp = self.ddp
        if ddp._syncs_buffers():
            ddp._broadcast_buffers(ddp._find_common_rank(ddp.rank, False))
        will_sync = np.zeros(1, np.float32)
        collective_ops.all_reduce(will_sync, group=ddp.process_group)
        if will_sync[0]:
            ddp.reducer.shadow_backward()

    def post_hook(self, is_last_joiner):
        ddp = self.ddp
        ddp._sync_module_state(ddp._find_common_rank(ddp.rank, is_last_joiner))


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

"""``ZeroRedundancyOptimizer``: ``torch.distributed.optim.ZeroRedundancyOptimizer`` (ZeRO
stage 1). Parameters are partitioned across the ranks of a group; each rank's local
optimizer keeps state only for its own shard, steps it, and then every shard is
broadcast from its owner, one flat buffer per owner (and dtype), so all ranks end a step
with the same parameters as one unsharded optimizer would give them.
"""

import numpy as np

from ... import backend
from ... import distributed as dist
from ...optim.optimizer import Optimizer, _as_index
from ...tensor import Tensor, _wrap

__all__ = ["ZeroRedundancyOptimizer"]

_TENSOR = "\0tensor"  # marks a state tensor in a consolidation message: [byte offset, dtype, shape]


class ZeroRedundancyOptimizer(Optimizer):
    """Wraps ``optimizer_class`` so that each rank of ``process_group`` (default: the
    world) holds the optimizer state of about 1/world_size of the parameters.

    Parameters are assigned, one group after another, largest first, to the rank with
    the fewest elements so far (PyTorch's greedy partition: deterministic, the same on
    every rank). ``step()`` steps this rank's shard and broadcasts every shard from its
    owner. ``consolidate_state_dict(to)`` gathers the shards' state on rank ``to``, whose
    ``state_dict()`` is then the unsharded optimizer's. With
    ``parameters_as_bucket_view=True`` each owner's parameters are views into one flat
    bucket, broadcast without copies. ``overlap_with_ddp`` (stepping inside DDP's
    communication hook) is not supported.
    """

    def __init__(self, params, optimizer_class, process_group=None, parameters_as_bucket_view=False,
                 overlap_with_ddp=False, **defaults):
        if overlap_with_ddp:
            raise NotImplementedError("ZeroRedundancyOptimizer(overlap_with_ddp=True) is not supported by "
                                      "distnn; Expect: overlap_with_ddp=False")
        params = self._verify_and_init_params(params)
        self.initialized = False  # add_param_group repartitions only once the local optimizer exists
        super().__init__(params, defaults)
        self.process_group = process_group
        self.world_size = dist.get_world_size(process_group)
        self.rank = dist.get_rank(process_group)
        self.global_rank = dist.get_global_rank(process_group, self.rank)
        self._partition_cache = None
        self._optim_defaults = defaults
        self._optim_constructor = optimizer_class
        self.optim = optimizer_class(self._local_param_groups(), **defaults)
        self._sync_param_groups(self.optim.param_groups, self.param_groups)
        self.parameters_as_bucket_view = parameters_as_bucket_view
        self._is_trainable_mask = self._get_is_trainable_mask()
        self._buckets = {}
        self._build_param_buckets()
        self._consolidated_state = None  # {global index: state}, on the rank consolidated to
        self.initialized = True

    def _verify_and_init_params(self, params):
        if isinstance(params, Tensor):
            raise TypeError(f"`params` argument should be an iterable of Tensors, but got {params.type()}")
        try:
            params = list(params)
        except TypeError:
            raise TypeError("`params` argument should be an iterable of Tensors or dicts, but got "
                            f"{type(params).__name__}") from None
        if not params:
            raise ValueError("ZeroRedundancyOptimizer got an empty parameter list")
        if all(isinstance(p, dict) for p in params):
            missing = [i for i, g in enumerate(params) if "params" not in g]
            if missing:
                raise ValueError(f"Each parameter group passed-in via `params` must have a 'params' key mapping "
                                 f"to the parameters in the group; groups {missing} have none")
            self._all_params = [p for g in params for p in _as_list(g["params"])]
        elif all(isinstance(p, Tensor) for p in params):
            self._all_params = params
        else:
            raise TypeError("`params` argument should be an iterable of Tensors or dicts")
        return params

    # --- the partition -------------------------------------------------------------------------
    def _partition_parameters(self):
        """``[rank][group index]`` -> that rank's parameters of the group (see the class doc)."""
        if self._partition_cache is None:
            shards = [[] for _ in range(self.world_size)]
            sizes = [0] * self.world_size
            for group in self.param_groups:
                for shard in shards:
                    shard.append([])
                for p in sorted(group["params"], key=lambda t: t.numel(), reverse=True):
                    rank = sizes.index(min(sizes))
                    shards[rank][-1].append(p)
                    sizes[rank] += p.numel()
            self._partition_cache = shards
        return self._partition_cache

    @property
    def _param_to_rank(self):
        return {id(p): rank for rank, groups in enumerate(self._partition_parameters())
                for params in groups for p in params}

    @property
    def _param_to_index(self):
        """Parameter id -> its index in the unsharded optimizer's state dict."""
        return {id(p): i for i, p in enumerate(p for g in self.param_groups for p in g["params"])}

    def _local_param_groups(self):
        """This rank's shard as param groups: each group's options, its own parameters."""
        return [dict(_options(group), params=params)
                for group, params in zip(self.param_groups, self._partition_parameters()[self.rank])]

    def add_param_group(self, param_group):
        """Add a param group on every rank (all must call it); earlier groups keep their
        owners, the new group's parameters are spread greedily as before."""
        super().add_param_group(param_group)
        if self.initialized:
            self._partition_cache = None
            self.optim.add_param_group(self._local_param_groups()[-1])
            self._is_trainable_mask = self._get_is_trainable_mask()
            self._build_param_buckets()

    @staticmethod
    def _sync_param_groups(src_param_groups, dst_param_groups):
        """Copy the options (lr and the like, not the parameters) group by group."""
        if len(src_param_groups) != len(dst_param_groups):
            raise RuntimeError(f"Expect: as many source as destination param groups, Actual: "
                               f"{len(src_param_groups)} and {len(dst_param_groups)}")
        for src, dst in zip(src_param_groups, dst_param_groups):
            dst.update(_options(src))

    # --- stepping ------------------------------------------------------------------------------
    def step(self, closure=None, **kwargs):
        """Step this rank's shard (``closure`` re-evaluates the loss, as for any optimizer),
        then give every rank every shard. Returns the local optimizer's loss."""
        if self._get_is_trainable_mask() != self._is_trainable_mask:
            self._is_trainable_mask = self._get_is_trainable_mask()
            self._build_param_buckets()
        self._sync_param_groups(self.param_groups, self.optim.param_groups)
        loss = self.optim.step(**kwargs) if closure is None else self.optim.step(closure=closure, **kwargs)
        self._sync_param_groups(self.optim.param_groups, self.param_groups)
        self._sync_params()
        self._opt_called = True
        return loss

    def _get_is_trainable_mask(self):
        return [p.requires_grad for p in self._all_params]

    def _flat_groups(self):
        """``{(device, dtype): [owner rank's parameters]}``: what each flat broadcast carries.
        With bucket views only trainable parameters are bucketed (as in PyTorch)."""
        groups = {}
        for rank, shard in enumerate(self._partition_parameters()):
            for p in (p for params in shard for p in params):
                if self.parameters_as_bucket_view and not p.requires_grad:
                    continue
                key = (str(p.device), p._data.dtype.str)
                groups.setdefault(key, [[] for _ in range(self.world_size)])[rank].append(p)
        return dict(sorted(groups.items()))

    def _build_param_buckets(self):
        """With ``parameters_as_bucket_view``: every owner's parameters become views of one
        flat bucket per (device, dtype); a frozen parameter gets its own copy back."""
        if not self.parameters_as_bucket_view:
            return
        for p in self._all_params:
            if not p.requires_grad and p._data.base is not None:
                p._data = p._data.copy()
        self._buckets = {}
        for key, per_rank in self._flat_groups().items():
            buckets = []
            for params in per_rank:
                xp = backend.array_module(params[0]._data) if params else np
                bucket = xp.empty(sum(p.numel() for p in params), np.dtype(key[1]))
                offset = 0
                for p in params:
                    view = bucket[offset:offset + p.numel()].reshape(p._data.shape)
                    view[...] = p._data
                    p._data = view
                    offset += p.numel()
                buckets.append(bucket)
            self._buckets[key] = buckets

    def _sync_params(self):
        """Broadcast every shard from its owner: one flat buffer per (owner, device, dtype),
        all in flight at once, then unpacked into the parameters of the other ranks."""
        pending = []
        for key, per_rank in self._flat_groups().items():
            for owner, params in enumerate(per_rank):
                if not params:
                    continue
                if self.parameters_as_bucket_view:
                    flat = self._buckets[key][owner]
                else:
                    xp = backend.array_module(params[0]._data)
                    flat = xp.concatenate([p._data.reshape(-1) for p in params]) if owner == self.rank \
                        else xp.empty(sum(p.numel() for p in params), np.dtype(key[1]))
                src = dist.get_global_rank(self.process_group, owner)
                pending.append((owner, params, flat, dist.broadcast(flat, src, self.process_group,
                                                                    async_op=True)))
        for owner, params, flat, work in pending:
            work.wait()
            if owner == self.rank:
                continue
            offset = 0
            for p in params:
                if not self.parameters_as_bucket_view:
                    p._data[...] = flat[offset:offset + p.numel()].reshape(p._data.shape)
                offset += p.numel()
                p._vc[0] += 1  # modified in place, like any optimizer step

    # --- checkpoints ---------------------------------------------------------------------------
    def consolidate_state_dict(self, to=0):
        """Gather every shard's optimizer state on group rank ``to`` (every rank must call
        this); ``state_dict()`` on that rank then returns the whole of it."""
        self._sync_param_groups(self.param_groups, self.optim.param_groups)
        index_of = self._param_to_index
        local = [p for params in self._partition_parameters()[self.rank] for p in params]
        arrays, entries = [], {}
        for local_index, state in self.optim.state_dict()["state"].items():
            entries[index_of[id(local[local_index])]] = _encode(state, arrays)
        payload = np.concatenate(arrays) if arrays else np.zeros(0, np.uint8)
        messages = [None] * self.world_size
        dist.all_gather_object(messages, {"state": entries, "nbytes": int(payload.size)}, self.process_group)
        longest = max(m["nbytes"] for m in messages)
        received = [payload] * self.world_size
        if longest:
            padded = np.zeros(longest, np.uint8)
            padded[:payload.size] = payload
            received = [np.empty(longest, np.uint8) for _ in range(self.world_size)] if self.rank == to else None
            dist.gather(padded, received, dist.get_global_rank(self.process_group, to), self.process_group)
        if self.rank != to:
            self._consolidated_state = None
            return
        state = {}
        for message, data in zip(messages, received):
            state.update((int(k), _decode(v, data)) for k, v in message["state"].items())
        self._consolidated_state = dict(sorted(state.items()))

    def state_dict(self):
        """The unsharded optimizer's state dict (global parameter indices, every group's
        options), as of the last ``consolidate_state_dict`` to this rank."""
        if self._consolidated_state is None:
            raise RuntimeError("Optimizer state has not been consolidated on this rank. Please call "
                               f"`consolidate_state_dict(to={self.rank})` on all ranks beforehand if you meant "
                               "to save the global state.")
        state_dict = super().state_dict()
        state_dict["state"] = {index: dict(state) for index, state in self._consolidated_state.items()}
        return state_dict

    def load_state_dict(self, state_dict):
        """Load a full (unsharded) state dict: the options on every rank, each parameter's
        state on its owner only."""
        params = [p for g in self.param_groups for p in g["params"]]
        super().load_state_dict({"state": {}, "param_groups": state_dict["param_groups"]})
        local = [p for shard in self._partition_parameters()[self.rank] for p in shard]
        local_index = {id(p): i for i, p in enumerate(local)}
        local_state = {}
        for key, value in state_dict["state"].items():
            index = _as_index(key)
            if not isinstance(index, int) or not 0 <= index < len(params):
                raise KeyError(f"Expect: state keys among the parameter indices 0..{len(params) - 1}, "
                               f"Actual: {key!r}")
            if id(params[index]) in local_index:
                local_state[local_index[id(params[index])]] = value
        groups, start = [], 0
        for group, shard in zip(self.param_groups, self._partition_parameters()[self.rank]):
            groups.append(dict(_options(group), params=list(range(start, start + len(shard)))))
            start += len(shard)
        self.optim.load_state_dict({"state": local_state, "param_groups": groups})
        self._sync_param_groups(self.param_groups, self.optim.param_groups)


def _as_list(params):
    return [params] if isinstance(params, Tensor) else list(params)


def _options(group):
    """A param group's options: everything but its parameters (and their names)."""
    return {k: v for k, v in group.items() if k not in ("params", "param_names")}


def _encode(value, arrays):
    """``value`` for msgpack: each Tensor replaced by a marker naming its bytes in the
    payload (appended to ``arrays``); containers recursively, plain values as they are."""
    if isinstance(value, Tensor):
        host = backend.to_numpy(value._data)
        offset = sum(a.size for a in arrays)
        arrays.append(np.ascontiguousarray(host.reshape(-1)).view(np.uint8))  # (a 0-d host stays 0-d)
        return {_TENSOR: [offset, host.dtype.str, list(host.shape)]}
    if isinstance(value, dict):
        return {k: _encode(v, arrays) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_encode(v, arrays) for v in value)
    return value


def _decode(value, payload):
    """The inverse of ``_encode``: tensors rebuilt (on the CPU) from ``payload``'s bytes."""
    if isinstance(value, dict) and _TENSOR in value:
        offset, dtype, shape = value[_TENSOR]
        dtype = np.dtype(dtype)
        nbytes = dtype.itemsize * int(np.prod(shape, dtype=np.int64))
        return _wrap(payload[offset:offset + nbytes].view(dtype).reshape(shape).copy())
    if isinstance(value, dict):
        return {k: _decode(v, payload) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_decode(v, payload) for v in value)
    return value

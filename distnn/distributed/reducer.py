"""Gradient bucketing for DistributedDataParallel: ``GradBucket`` and ``Reducer``.

Parameters are packed into buckets in reverse registration order (the order
backward produces their gradients), the first capped at 1 MiB and the rest at
``bucket_cap_mb``, one dtype per bucket. A per-parameter hook marks a gradient
ready as soon as it is accumulated; a full bucket starts an asynchronous
all-reduce at once, so communication overlaps the rest of backward (all but the
last bucket, which completes as backward ends and is reduced synchronously). Buckets
are always launched in index order, so every rank's collectives line up even
when gradients become ready in different orders. At the end of backward the
reducer launches whatever is left (a parameter that got no gradient
contributes zeros), waits for every bucket, and writes the averaged gradients
into ``.grad``.
"""

import time

import numpy as np

from ..autograd.engine import queue_callback
from ..tensor import _wrap
from . import collective_ops

FIRST_BUCKET_BYTES = 1 << 20


class GradBucket:
    """A flat buffer holding the gradients of some parameters, reduced as one."""

    def __init__(self, index, params, xp):
        self.index = index
        self.params = params
        self.offsets = []
        total = 0
        for p in params:
            self.offsets.append(total)
            total += p.numel()
        self.xp = xp
        self.buffer = xp.zeros(total, dtype=params[0]._data.dtype)
        self.pending = len(params)
        self.work = None
        self.used = [False] * len(params)

    def reset(self):
        self.pending = len(self.params)
        self.work = None
        self.used = [False] * len(self.params)

    def pack(self, world_size):
        """Copy every gradient into the buffer divided by ``world_size`` (zeros for
        parameters without one), so the all-reduced sum is the average: the division
        rides on the copy instead of taking a pass of its own after the reduce."""
        scale = 1.0 / world_size
        for p, off in zip(self.params, self.offsets):
            view = self.buffer[off:off + p.numel()]
            if p.grad is None:
                view[...] = 0
            elif p.grad._data.base is not self.buffer:
                self.xp.multiply(p.grad._data.reshape(-1), scale, out=view)
            else:  # already our view (gradients kept since the last step)
                view *= scale

    def unpack(self):
        """Hand each parameter a view of its slice of the reduced buffer as ``.grad``."""
        for p, off in zip(self.params, self.offsets):
            view = self.buffer[off:off + p.numel()].reshape(p._data.shape)
            if p.grad is None:
                p.grad = _wrap(view)
            else:
                p.grad._data = view


class Reducer:
    def __init__(self, params, group, bucket_cap_mb, world_size):
        self.group = group
        self.world_size = world_size
        self.buckets = _build_buckets(params, bucket_cap_mb)
        self._where = {}
        for b in self.buckets:
            for i, p in enumerate(b.params):
                self._where[id(p)] = (b, i)
        self._next_to_launch = 0
        self._armed = False
        self._callback_queued = False
        self.comm_wait_seconds = 0.0
        self._hooks = [p.register_post_accumulate_grad_hook(self._grad_ready) for p in params]

    def prepare_for_backward(self):
        """Arm the hooks for the next backward (called by each synced forward)."""
        for b in self.buckets:
            b.reset()
        self._next_to_launch = 0
        self._armed = True
        self._callback_queued = False

    def disarm(self):
        self._armed = False

    def _grad_ready(self, param):
        if not self._armed:
            return  # no_sync(), or a backward without a preceding synced forward
        if not self._callback_queued:
            queue_callback(self._finalize)
            self._callback_queued = True
        bucket, i = self._where[id(param)]
        if bucket.used[i]:
            return
        bucket.used[i] = True
        bucket.pending -= 1
        self._launch_ready_buckets()

    def _launch_ready_buckets(self):
        # The last bucket holds the first layers' gradients, which backward produces at its
        # very end: it is left to ``_finalize``, which reduces it on the calling thread
        # instead of handing it to the communication thread and waiting to be woken.
        last = len(self.buckets) - 1
        while self._next_to_launch < last and self.buckets[self._next_to_launch].pending == 0:
            self._launch(self.buckets[self._next_to_launch])

    def _launch(self, bucket, async_op=True):
        bucket.pack(self.world_size)
        bucket.work = collective_ops.all_reduce(bucket.buffer, group=self.group, async_op=async_op)
        self._next_to_launch += 1

    def _finalize(self):
        """End of backward: reduce what is left, wait for every bucket, write ``.grad``.
        Buckets launched here are reduced synchronously: nothing is left to overlap them
        with, and the calling thread saves the hand-off to the communication thread."""
        start = time.perf_counter()
        while self._next_to_launch < len(self.buckets):
            self._launch(self.buckets[self._next_to_launch], async_op=False)
        for bucket in self.buckets:
            if bucket.work is not None:
                bucket.work.wait()
            bucket.unpack()
        self.comm_wait_seconds += time.perf_counter() - start
        self._armed = False

    def remove_hooks(self):
        for h in self._hooks:
            h.remove()


def _build_buckets(params, bucket_cap_mb):
    """Buckets in reverse registration order: first 1 MiB, then ``bucket_cap_mb`` each."""
    from ..backend import array_module
    buckets, current, current_bytes = [], [], 0
    cap = FIRST_BUCKET_BYTES
    for p in reversed(params):
        nbytes = p._data.nbytes
        if current and (current_bytes + nbytes > cap or p._data.dtype != current[0]._data.dtype):
            buckets.append(GradBucket(len(buckets), current, array_module(current[0]._data)))
            current, current_bytes = [], 0
            cap = int(bucket_cap_mb * (1 << 20))
        current.append(p)
        current_bytes += nbytes
    if current:
        buckets.append(GradBucket(len(buckets), current, array_module(current[0]._data)))
    return buckets


def parameter_fingerprint(params):
    """A 64-bit hash of parameter values, equal on ranks whose replicas agree."""
    import hashlib
    h = hashlib.sha256()
    for p in params:
        h.update(np.ascontiguousarray(p.detach().cpu().numpy()).tobytes())
    return int.from_bytes(h.digest()[:8], "little", signed=True)

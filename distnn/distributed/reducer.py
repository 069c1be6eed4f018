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
into ``.grad``. With ``find_unused_parameters``, one more small all-reduce says
which parameters some rank used: the others keep their ``.grad`` untouched
(None stays None), as in PyTorch, so optimizers skip them.

A communication hook (``register_comm_hook``) replaces the all-reduce: it gets
each bucket, holding the summed-to-be local gradients undivided, and returns a
Future of the bucket's new contents, which the reducer waits for in index order
at the end of backward. A rank that has joined (``DistributedDataParallel.join``)
runs the same launches with zeros (``shadow_backward``).
"""

import time
from contextlib import contextmanager

import numpy as np

from ..autograd.engine import queue_callback
from ..tensor import Tensor, _wrap
from . import collective_ops
from .errors import DistributedError

FIRST_BUCKET_BYTES = 1 << 20

UNEVEN_INPUTS_HINT = ("if ranks run different numbers of iterations (uneven inputs), wrap the training loop "
                      "in `with model.join():`")


class GradBucket:
    """A flat buffer holding the gradients of some parameters, reduced as one; what a
    communication hook receives, with torch's ``GradBucket`` methods."""

    def __init__(self, index, params, xp, is_last=False):
        self._index = index
        self._params = params
        self._is_last = is_last
        self.offsets = []
        total = 0
        for p in params:
            self.offsets.append(total)
            total += p.numel()
        self.xp = xp
        self.flat = xp.zeros(total, dtype=params[0]._data.dtype)
        self.pending = len(params)
        self.work = None  # the all-reduce's Work, or the hook's Future
        self.used = [False] * len(params)
        self._hook_buffer = None

    # --- torch's GradBucket interface ---------------------------------------------------
    def index(self):
        return self._index

    def buffer(self):
        """The bucket's flat 1-D gradient tensor (sharing memory with the bucket)."""
        return self._hook_buffer if self._hook_buffer is not None else _wrap(self.flat)

    def set_buffer(self, buffer):
        """Make ``buffer`` what ``buffer()`` and ``gradients()`` return from now on (for
        this launch): e.g. a compressed copy a wrapped hook works on."""
        if not isinstance(buffer, Tensor):
            buffer = _wrap(buffer)
        if buffer.numel() != self.flat.size:
            raise ValueError(f"Expect: a buffer of {self.flat.size} elements for bucket {self._index}, "
                             f"Actual: {buffer.numel()}")
        self._hook_buffer = buffer

    def gradients(self):
        """Views of ``buffer()`` shaped as each parameter (writes reach the bucket)."""
        data = self.buffer()._data
        return [_wrap(data[off:off + p.numel()].reshape(p._data.shape)) for p, off in zip(self._params, self.offsets)]

    def parameters(self):
        return list(self._params)

    def is_last(self):
        """Whether this is the last bucket of the step (the one allreduced last)."""
        return self._is_last

    # --- reducer side --------------------------------------------------------------------
    def reset(self):
        self.pending = len(self._params)
        self.work = None
        self.used = [False] * len(self._params)
        self._hook_buffer = None

    def pack(self, divisor, zeros=False):
        """Copy every gradient into the buffer divided by ``divisor`` (zeros for parameters
        without one, or for all with ``zeros``): the division rides on the copy instead of
        taking a pass of its own. A true division, as torch's ``allreduce_hook`` does, so
        that hook trains bit-identically."""
        if zeros:
            self.flat[...] = 0
            return
        for p, off in zip(self._params, self.offsets):
            view = self.flat[off:off + p.numel()]
            if p.grad is None:
                view[...] = 0
            elif p.grad._data.base is not self.flat:
                if divisor == 1:
                    view[...] = p.grad._data.reshape(-1)
                else:
                    self.xp.divide(p.grad._data.reshape(-1), divisor, out=view)
            elif divisor != 1:  # already our view (gradients kept since the last step)
                view /= divisor

    def take_result(self, result):
        """Copy a hook's result into the buffer (unless it is the buffer)."""
        if isinstance(result, (list, tuple)) and len(result) == 1:
            result = result[0]
        data = result._data if isinstance(result, Tensor) else result
        if not hasattr(data, "shape") or not hasattr(data, "dtype"):
            raise TypeError(f"Expect: the comm hook's Future to hold a tensor, Actual: {type(result).__name__}")
        if data.size != self.flat.size:
            raise RuntimeError(f"Expect: the comm hook's result for bucket {self._index} to have {self.flat.size} "
                               f"elements, Actual: {data.size}")
        if data is not self.flat:
            self.flat[...] = data.reshape(-1)

    def unpack(self, used_anywhere=None):
        """Hand each parameter a view of its slice of the reduced buffer as ``.grad``
        (only those that some rank used, when ``used_anywhere`` says which)."""
        for i, (p, off) in enumerate(zip(self._params, self.offsets)):
            if used_anywhere is not None and not used_anywhere[i]:
                continue
            view = self.flat[off:off + p.numel()].reshape(p._data.shape)
            if p.grad is None:
                p.grad = _wrap(view)
            else:
                p.grad._data = view


class Reducer:
    def __init__(self, params, group, bucket_cap_mb, world_size, find_unused_parameters=False):
        self.group = group
        self.find_unused_parameters = find_unused_parameters
        self.world_size = world_size
        self.buckets = _build_buckets(params, bucket_cap_mb)
        self._where = {}
        for b in self.buckets:
            for i, p in enumerate(b._params):
                self._where[id(p)] = (b, i)
        self._next_to_launch = 0
        self._armed = False
        self._callback_queued = False
        self.comm_wait_seconds = 0.0
        self.comm_hook = None  # (state, hook)
        self.ran_backward = False
        self._divisor = world_size
        self._divisor_source = None  # the join context's count of active ranks: (work, array)
        self._shadowing = False
        self._hooks = [p.register_post_accumulate_grad_hook(self._grad_ready) for p in params]

    def register_comm_hook(self, state, hook):
        if not callable(hook):
            raise TypeError(f"Communication hook must be callable, got {type(hook).__name__}")
        if self.comm_hook is not None:
            raise RuntimeError("register_comm_hook or register_builtin_comm_hook can only be called once.")
        if self.ran_backward:
            raise RuntimeError("register_comm_hook must be called before the first backward: gradients were "
                               "already reduced without it")
        self.comm_hook = (state, hook)

    def prepare_for_backward(self, active_ranks=None):
        """Arm the hooks for the next backward (called by each synced forward).
        ``active_ranks``: (work, array) of an all-reduce counting the ranks that have not
        joined, to divide by instead of the world size (``divide_by_initial_world_size=False``)."""
        for b in self.buckets:
            b.reset()
        self._next_to_launch = 0
        self._armed = True
        self._callback_queued = False
        self._divisor = self.world_size
        self._divisor_source = active_ranks

    def disarm(self):
        self._armed = False

    def _grad_ready(self, param):
        if not self._armed:
            return  # no_sync(), or a backward without a preceding synced forward
        self.ran_backward = True
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
        """Start reducing ``bucket``: through the comm hook (which gets the undivided sum
        to be, and divides itself), else a SUM all-reduce of gradients already divided."""
        self._next_to_launch += 1
        with explained(f"reducing gradient bucket {bucket.index()} of {len(self.buckets)}"):
            if self.comm_hook is not None:
                bucket.pack(1, zeros=self._shadowing)
                state, hook = self.comm_hook
                future = hook(state, bucket)
                if not callable(getattr(future, "wait", None)):
                    raise TypeError(f"Expect: the comm hook to return a Future (with wait()), "
                                    f"Actual: {type(future).__name__}")
                bucket.work = future
            else:
                bucket.pack(self._current_divisor(), zeros=self._shadowing)
                bucket.work = collective_ops.all_reduce(bucket.flat, group=self.group, async_op=async_op)

    def _current_divisor(self):
        if self._divisor_source is not None:
            work, count = self._divisor_source
            self._divisor_source = None
            work.wait()
            self._divisor = int(count[0])
        return self._divisor

    def _finalize(self):
        """End of backward: reduce what is left, wait for every bucket, write ``.grad``.
        Buckets launched here are reduced synchronously: nothing is left to overlap them
        with, and the calling thread saves the hand-off to the communication thread."""
        start = time.perf_counter()
        used = self._complete_all()
        for bucket, used_anywhere in zip(self.buckets, used):
            bucket.unpack(used_anywhere)
        self.comm_wait_seconds += time.perf_counter() - start
        self._armed = False

    def _complete_all(self):
        """Launch what is left, wait for every bucket; returns per bucket which parameters
        some rank used (None where all count as used)."""
        while self._next_to_launch < len(self.buckets):
            self._launch(self.buckets[self._next_to_launch], async_op=False)
        for bucket in self.buckets:
            with explained(f"reducing gradient bucket {bucket.index()} of {len(self.buckets)}"):
                if self.comm_hook is not None:
                    bucket.take_result(bucket.work.wait())
                elif bucket.work is not None:
                    bucket.work.wait()
        if not self.find_unused_parameters:
            return [None] * len(self.buckets)
        used = np.concatenate([np.asarray(b.used, np.uint8) & (not self._shadowing) for b in self.buckets])
        with explained("agreeing which parameters some rank used"):
            collective_ops.all_reduce(used, op="max", group=self.group)
        split = np.cumsum([len(b.used) for b in self.buckets])[:-1]
        return [part.astype(bool) for part in np.split(used, split)]

    def shadow_backward(self):
        """A joined rank's part in the others' backward: every bucket launched with zeros,
        through the same path (hook or all-reduce), and waited for; ``.grad`` is untouched."""
        for b in self.buckets:
            b.reset()
        self._next_to_launch = 0
        self._divisor, self._divisor_source = self.world_size, None
        self._shadowing = True
        try:
            self._complete_all()
        finally:
            self._shadowing = False

    def remove_hooks(self):
        for h in self._hooks:
            h.remove()


@contextmanager
def explained(what):
    """Re-raise a DistributedError from ``what`` DDP was doing with that and the usual
    cause (a rank that stopped early), keeping its type and the ranks it names."""
    try:
        yield
    except DistributedError as exc:
        if str(exc).startswith("DistributedDataParallel"):
            raise
        raise type(exc)(f"DistributedDataParallel: {what} failed: {exc}; {UNEVEN_INPUTS_HINT}") from exc


def _build_buckets(params, bucket_cap_mb):
    """Buckets in reverse registration order: first 1 MiB, then ``bucket_cap_mb`` each."""
    from ..backend import array_module
    groups, current, current_bytes = [], [], 0
    cap = FIRST_BUCKET_BYTES
    for p in reversed(params):
        nbytes = p._data.nbytes
        if current and (current_bytes + nbytes > cap or p._data.dtype != current[0]._data.dtype):
            groups.append(current)
            current, current_bytes = [], 0
            cap = int(bucket_cap_mb * (1 << 20))
        current.append(p)
        current_bytes += nbytes
    if current:
        groups.append(current)
    return [GradBucket(i, g, array_module(g[0]._data), is_last=i == len(groups) - 1) for i, g in enumerate(groups)]


def parameter_fingerprint(params):
    """A 64-bit hash of parameter values, equal on ranks whose replicas agree."""
    import hashlib
    h = hashlib.sha256()
    for p in params:
        h.update(np.ascontiguousarray(p.detach().cpu().numpy()).tobytes())
    return int.from_bytes(h.digest()[:8], "little", signed=True)

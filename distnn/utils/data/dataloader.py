"""``DataLoader``: iterates a dataset in batches, as ``torch.utils.data.DataLoader``
(same arguments, validation errors, ``len()``, seeding and worker semantics).

Randomness: each iterator draws a base seed from ``generator`` (or distnn's
default generator) when it is created, then the sampler draws its shuffle, so
``distnn.manual_seed(s)`` reproduces the whole run and epochs differ.

``num_workers > 0`` runs the dataset in worker processes (``multiprocessing``):
index lists go out on a queue, batches come back on one pipe per worker, and a
worker that dies or fails is reported with its id, exit code and traceback.
Worker ``w`` seeds distnn, ``random`` and ``numpy.random`` with ``base_seed + w``.
Batches cross the process boundary through multiprocessing's own pickling of
tensors' numpy arrays; distnn defines no wire format here.
"""

import itertools
import math
import multiprocessing
import multiprocessing.connection
import os
import queue
import random as _pyrandom
import traceback
import warnings

import numpy as np

from ... import random as _random
from ._collate import default_collate, default_convert
from .dataset import IterableDataset, collated_getitems_of
from .sampler import BatchSampler, RandomSampler, Sampler, SequentialSampler

__all__ = ["DataLoader", "get_worker_info", "WorkerInfo"]

_POLL_S = 1.0  # how often an idle worker checks that its parent is still alive
_JOIN_S = 5.0  # grace period for a worker to exit before it is terminated


class WorkerInfo:
    """What ``get_worker_info()`` returns inside a worker: id, num_workers, seed, dataset."""

    def __init__(self, id, num_workers, seed, dataset):  # noqa: A002  (PyTorch's name)
        self.id, self.num_workers, self.seed, self.dataset = id, num_workers, seed, dataset

    def __repr__(self):
        return f"WorkerInfo(id={self.id}, num_workers={self.num_workers}, seed={self.seed})"


_worker_info = None


def get_worker_info():
    """The current worker's ``WorkerInfo``; None in the main process."""
    return _worker_info


class _InfiniteConstantSampler(Sampler):
    """Iterable datasets choose their own samples: the sampler only says "next"."""

    def __iter__(self):
        return itertools.repeat(None)


class _Exhausted(Exception):
    """An iterable dataset ran out (a StopIteration must not cross generator frames)."""


def _make_fetcher(iterable, dataset, auto_collation, collate_fn, drop_last):
    """A function from one sampler output (an index list, an index, or None) to a batch."""
    if iterable:
        it = iter(dataset)

        def fetch(batch_size):
            if not auto_collation:
                try:
                    return collate_fn(next(it))
                except StopIteration:
                    raise _Exhausted from None
            items = list(itertools.islice(it, batch_size))
            if not items or (drop_last and len(items) < batch_size):
                raise _Exhausted
            return collate_fn(items)
        return fetch
    if not auto_collation:
        return lambda index: collate_fn(dataset[index])
    fast = collated_getitems_of(dataset) if collate_fn is default_collate else None
    getitems = getattr(dataset, "__getitems__", None)

    def fetch(indices):
        if fast is not None:
            batch = fast(indices)
            if batch is not NotImplemented:
                return batch
        items = getitems(indices) if callable(getitems) else [dataset[i] for i in indices]
        return collate_fn(items)
    return fetch


class DataLoader:
    """Batches of ``dataset`` in the order given by ``shuffle``/``sampler``/``batch_sampler``.

    ``pin_memory`` is accepted but changes nothing (it warns without a GPU, as
    PyTorch does); ``in_order=False`` is accepted and batches still arrive in
    order; ``timeout`` applies to worker processes only.
    """

    _frozen = ("batch_size", "batch_sampler", "sampler", "drop_last", "dataset", "persistent_workers")
    _initialized = False

    def __init__(self, dataset, batch_size=1, shuffle=None, sampler=None, batch_sampler=None,
                 num_workers=0, collate_fn=None, pin_memory=False, drop_last=False, timeout=0,
                 worker_init_fn=None, multiprocessing_context=None, generator=None, *,
                 prefetch_factor=None, persistent_workers=False, pin_memory_device="", in_order=True):
        if num_workers < 0:
            raise ValueError("num_workers option should be non-negative; "
                             "use num_workers=0 to disable multiprocessing.")
        if timeout < 0:
            raise ValueError("timeout option should be non-negative")
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError("prefetch_factor option could only be specified in multiprocessing."
                             "let num_workers > 0 to enable multiprocessing, otherwise set "
                             "prefetch_factor to None.")
        if num_workers > 0 and prefetch_factor is None:
            prefetch_factor = 2
        elif prefetch_factor is not None and prefetch_factor < 0:
            raise ValueError("prefetch_factor option should be non-negative")
        if persistent_workers and num_workers == 0:
            raise ValueError("persistent_workers option needs num_workers > 0")
        self.dataset, self.num_workers, self.prefetch_factor = dataset, num_workers, prefetch_factor
        self.pin_memory, self.pin_memory_device, self.timeout = pin_memory, pin_memory_device, timeout
        self.worker_init_fn, self.in_order = worker_init_fn, in_order
        self.multiprocessing_context = multiprocessing_context

        self._iterable = isinstance(dataset, IterableDataset)
        if self._iterable:
            if shuffle not in (False, None):
                raise ValueError("DataLoader with IterableDataset: expected unspecified shuffle option, "
                                 f"but got shuffle={shuffle}")
            if sampler is not None:
                raise ValueError("DataLoader with IterableDataset: expected unspecified sampler option, "
                                 f"but got sampler={sampler}")
            if batch_sampler is not None:
                raise ValueError("DataLoader with IterableDataset: expected unspecified batch_sampler "
                                 f"option, but got batch_sampler={batch_sampler}")
        shuffle = bool(shuffle)
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("batch_sampler option is mutually exclusive with batch_size, shuffle, "
                                 "sampler, and drop_last")
            batch_size, drop_last = None, False
        elif batch_size is None and drop_last:
            raise ValueError("batch_size=None option disables auto-batching and is mutually exclusive "
                             "with drop_last")
        if sampler is None:
            if self._iterable:
                sampler = _InfiniteConstantSampler()
            elif shuffle:
                sampler = RandomSampler(dataset, generator=generator)
            else:
                sampler = SequentialSampler(dataset)
        if batch_size is not None and batch_sampler is None:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        self.batch_size, self.drop_last = batch_size, drop_last
        self.sampler, self.batch_sampler, self.generator = sampler, batch_sampler, generator
        if collate_fn is None:
            collate_fn = default_collate if self._auto_collation else default_convert
        self.collate_fn = collate_fn
        self.persistent_workers = persistent_workers
        self._iterator = None
        self._initialized = True

    @property
    def multiprocessing_context(self):
        return self._mp_context

    @multiprocessing_context.setter
    def multiprocessing_context(self, context):
        if context is not None:
            if self.num_workers == 0:
                raise ValueError("multiprocessing_context can only be used with multi-process loading "
                                 f"(num_workers > 0), but got num_workers={self.num_workers}")
            if isinstance(context, str):
                methods = multiprocessing.get_all_start_methods()
                if context not in methods:
                    raise ValueError(f"multiprocessing_context option should specify a valid start method "
                                     f"in {methods!r}, but got multiprocessing_context={context!r}")
                context = multiprocessing.get_context(context)
            if not isinstance(context, multiprocessing.context.BaseContext):
                raise TypeError("multiprocessing_context option should be a valid context object or a "
                                f"string specifying the start method, but got "
                                f"multiprocessing_context={context}")
        self._mp_context = context

    def __setattr__(self, name, value):
        if self._initialized and name in self._frozen:
            raise ValueError(f"{name} attribute should not be set after {type(self).__name__} is initialized")
        super().__setattr__(name, value)

    @property
    def _auto_collation(self):
        return self.batch_sampler is not None

    @property
    def _index_sampler(self):
        return self.batch_sampler if self._auto_collation else self.sampler

    def __iter__(self):
        if self.num_workers == 0:
            return _SingleProcessIter(self)
        if self.persistent_workers:
            if self._iterator is None:
                self._iterator = _MultiProcessIter(self)
            else:
                self._iterator._reset(self)
            return self._iterator
        return _MultiProcessIter(self)

    def __len__(self):
        if self._iterable:
            length = len(self.dataset)
            if self.batch_size is not None:
                length = length // self.batch_size if self.drop_last else math.ceil(length / self.batch_size)
            return length
        return len(self._index_sampler)


class _BaseIter:
    def __init__(self, loader):
        if loader.pin_memory:
            from ... import backend
            if not backend.cuda_is_available():
                warnings.warn("'pin_memory' argument is set as true but no accelerator is found, then "
                              "device pinned memory won't be used.", stacklevel=3)
        self._loader = loader
        self._sampler_iter = iter(loader._index_sampler)
        self._base_seed = int(_random.rng(loader.generator).integers(0, 2 ** 63 - 1))

    def __iter__(self):
        return self

    def __len__(self):
        return len(self._loader)

    def _fetcher_args(self):
        ld = self._loader
        return ld._iterable, ld.dataset, ld._auto_collation, ld.collate_fn, ld.drop_last


class _SingleProcessIter(_BaseIter):
    def __init__(self, loader):
        super().__init__(loader)
        self._fetch = _make_fetcher(*self._fetcher_args())

    def __next__(self):
        index = next(self._sampler_iter)
        if self._loader._iterable:
            index = self._loader.batch_size
        try:
            return self._fetch(index)
        except _Exhausted:
            raise StopIteration from None


def _worker_loop(*args):
    try:
        _serve_batches(*args)
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group; the parent reports it
        pass


def _serve_batches(fetcher_args, index_queue, conn, worker_id, num_workers, seed, init_fn, parent_pid,
                   parent_ends):
    """Body of one worker process: fetch the batches named on ``index_queue``,
    send ``(epoch, task, kind, payload)`` back on ``conn`` until told to stop.
    A task numbered None means a new epoch (persistent workers restart iteration)."""
    global _worker_info
    for end in parent_ends:  # forked copies of the parent's read ends: once closed here, a send
        end.close()          # to a parent that has closed its own fails instead of blocking
    _random.manual_seed(seed)
    _pyrandom.seed(seed)
    np.random.seed(seed % 2 ** 32)
    _worker_info = WorkerInfo(worker_id, num_workers, seed, fetcher_args[1])
    failure = None
    try:
        if init_fn is not None:
            init_fn(worker_id)
        fetch = _make_fetcher(*fetcher_args)
    except Exception as exc:  # reported with the first task, so the parent raises it in order
        failure = (type(exc), f"in worker_init_fn of DataLoader worker {worker_id}:\n{traceback.format_exc()}")
    while True:
        try:
            task = index_queue.get(timeout=_POLL_S)
        except queue.Empty:
            if os.getppid() != parent_pid:  # orphaned: the parent died without telling us
                return
            continue
        if task is None:
            return
        epoch, task_idx, index = task
        if task_idx is None:
            if failure is None:
                fetch = _make_fetcher(*fetcher_args)
            continue
        if failure is not None:
            message = (epoch, task_idx, "error", failure)
        else:
            try:
                message = (epoch, task_idx, "data", fetch(index))
            except _Exhausted:
                message = (epoch, task_idx, "stop", None)
            except Exception as exc:
                message = (epoch, task_idx, "error",
                           (type(exc), f"in DataLoader worker process {worker_id}:\n{traceback.format_exc()}"))
        if not _send(conn, message, worker_id):
            return


def _send(conn, message, worker_id):
    """Send one result; False when the parent has gone (closed its end)."""
    try:
        conn.send(message)
    except (BrokenPipeError, ConnectionResetError, EOFError):
        return False
    except Exception:  # the batch (or an exception class) could not be sent between processes
        detail = traceback.format_exc()
        return _send(conn, (message[0], message[1], "error",
                            (RuntimeError, f"in DataLoader worker process {worker_id} while sending "
                                           f"a batch back:\n{detail}")), worker_id)
    return True


class _KeyErrorMessage(str):
    def __repr__(self):
        return self


class _MultiProcessIter(_BaseIter):
    def __init__(self, loader):
        super().__init__(loader)
        ctx = loader.multiprocessing_context or multiprocessing.get_context()
        n = loader.num_workers
        self._index_queues, self._conns, self._workers = [], [], []
        for w in range(n):
            q = ctx.Queue()
            parent_end, child_end = ctx.Pipe(duplex=False)
            inherited = self._conns + [parent_end] if ctx.get_start_method() == "fork" else []
            p = ctx.Process(target=_worker_loop, daemon=True,
                            args=(self._fetcher_args(), q, child_end, w, n, self._base_seed + w,
                                  loader.worker_init_fn, os.getpid(), inherited))
            p.start()
            child_end.close()
            self._index_queues.append(q)
            self._conns.append(parent_end)
            self._workers.append(p)
        self._shut = False
        self._epoch = 0
        self._start_epoch()

    def _start_epoch(self):
        self._send_idx = self._rcvd_idx = 0
        self._task_worker = {}   # task -> worker, for tasks sent and not yet yielded
        self._results = {}       # task -> (kind, payload), arrived out of order
        self._active = [True] * len(self._workers)
        self._next_worker = itertools.cycle(range(len(self._workers)))
        for _ in range(max(1, self._loader.prefetch_factor) * len(self._workers)):
            self._send_one()

    def _reset(self, loader):
        self._sampler_iter = iter(loader._index_sampler)
        self._epoch += 1
        for q in self._index_queues:
            q.put((self._epoch, None, None))
        self._start_epoch()

    def _send_one(self):
        if not any(self._active):
            return
        try:
            index = next(self._sampler_iter)
        except StopIteration:
            return
        if self._loader._iterable:
            index = self._loader.batch_size
        w = next(self._next_worker)
        while not self._active[w]:
            w = next(self._next_worker)
        self._index_queues[w].put((self._epoch, self._send_idx, index))
        self._task_worker[self._send_idx] = w
        self._send_idx += 1

    def __next__(self):
        while True:
            if self._rcvd_idx not in self._task_worker:  # nothing outstanding: the epoch is over
                if not self._loader.persistent_workers:
                    self._shutdown()
                raise StopIteration
            if self._rcvd_idx in self._results:
                kind, payload = self._results.pop(self._rcvd_idx)
                worker = self._task_worker.pop(self._rcvd_idx)
                self._rcvd_idx += 1
                if kind == "stop":
                    self._active[worker] = False
                    continue
                self._send_one()
                if kind == "error":
                    self._shutdown()
                    self._raise_worker_error(*payload)
                return payload
            self._receive()

    def _receive(self):
        timeout = self._loader.timeout or None
        ready = multiprocessing.connection.wait(self._conns + [p.sentinel for p in self._workers], timeout)
        if not ready:
            self._shutdown()
            raise RuntimeError(f"DataLoader timed out after {self._loader.timeout} seconds")
        for w, conn in enumerate(self._conns):
            if conn in ready:
                try:
                    epoch, task_idx, kind, payload = conn.recv()
                except EOFError:
                    self._worker_died(w)
                if epoch == self._epoch:
                    self._results[task_idx] = (kind, payload)
                return
        for w, p in enumerate(self._workers):
            if p.sentinel in ready and not self._conns[w].poll():
                self._worker_died(w)

    def _worker_died(self, w):
        p = self._workers[w]
        p.join(_JOIN_S)
        self._shutdown()
        raise RuntimeError(f"DataLoader worker {w} (pid {p.pid}) exited unexpectedly with exit code "
                           f"{p.exitcode}")

    @staticmethod
    def _raise_worker_error(exc_type, message):
        message = f"Caught {exc_type.__name__} {message}"
        if issubclass(exc_type, KeyError):  # KeyError's str() is its repr: keep the traceback readable
            message = _KeyErrorMessage(message)
        try:
            exc = exc_type(message)
        except Exception:  # an exception type whose constructor wants other arguments
            exc = RuntimeError(message)
        raise exc

    def _shutdown(self):
        if self._shut:
            return
        self._shut = True
        for q in self._index_queues:
            q.put(None)
        for conn in self._conns:  # a worker blocked sending a batch now sees a broken pipe and exits
            conn.close()
        for p in self._workers:
            p.join(_JOIN_S)
            if p.is_alive():
                p.terminate()
                p.join()
        for q in self._index_queues:
            q.cancel_join_thread()
            q.close()

    def __del__(self):
        if getattr(self, "_workers", None) is not None and not getattr(self, "_shut", True):
            self._shutdown()

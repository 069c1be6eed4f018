"""Intra-op threads, as ``torch.set_num_threads`` / ``get_num_threads``: how many
cores one op may use, and the pool that runs a convolution's batch chunks (or a
softmax's row blocks) side by side, each chunk's GEMM on single-threaded BLAS.
Once oneDNN has run, the chunks run on its GNU OpenMP team instead
(``_OpenMPTeam``): one set of threads for the whole step, as PyTorch's.

Splitting each small GEMM across BLAS threads instead makes every scratch buffer
one core writes and the other reads change caches once per chunk; on this EPYC
that made a small ResNet's im2col copies 6x slower at 2 threads than at 1. A
chunk per thread keeps each thread's scratch buffers (``ops/im2col.py``, thread
local) in its own cache.

A chunk's numpy calls must each run long (a hundred microseconds or more): two
threads making short calls keep waiting on each other for the GIL, and each wait
costs a 30-50 us futex wake-up on this VM. Batch norm in 512 KB blocks ran no
faster at two threads than at one; in 2 MB blocks, 1.3-2.5x faster.

BLAS threads are set through OpenBLAS's own API, found among the libraries
loaded into this process (numpy's wheels bundle it). Its count is one global
(``openblas_set_num_threads_local`` is not per thread in numpy's build), so it
drops to one while any chunks run in parallel and comes back after the last.
With another BLAS, chunks run one after another and the BLAS keeps its own
threading.

OpenBLAS's idle threads spin for ``2**OPENBLAS_THREAD_TIMEOUT`` cycles after
each threaded call (2**28, about 0.1 s, by default), and spinning they took the
second core from this pool's chunks and from the Python between GEMMs: at 2
threads ResNet-18 (64x64) went from 235 to 170-200 ms a step with 2**20 (a third
of a millisecond), the LSTM LM from 134 to 102. OpenBLAS reads the variable
once, when it loads, so importing this module sets it (``BLAS_SPIN``) only when
numpy is not loaded yet; the launcher sets it for its workers.
"""

import ctypes
import itertools
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor, wait

__all__ = ["get_num_threads", "set_num_threads", "map_chunks", "row_blocks", "in_flat_blocks", "by_flat_blocks",
           "flat_blocks"]


class _OpenBLAS:
    """The loaded OpenBLAS's thread controls; ``None`` members where absent."""

    def __init__(self):
        lib = self._load()
        self.set_global = self._first(lib, "openblas_set_num_threads", "scipy_openblas_set_num_threads64_",
                                      "openblas_set_num_threads64_")
        self.get_global = self._first(lib, "openblas_get_num_threads", "scipy_openblas_get_num_threads64_",
                                      "openblas_get_num_threads64_")
        self.held = 0  # map_chunks calls running with BLAS held to one thread

    @staticmethod
    def _load():
        import numpy  # noqa: F401  (loads its BLAS, so it shows in the map below)
        try:
            with open("/proc/self/maps") as maps:
                paths = {line.split()[-1] for line in maps if "openblas" in line.rsplit("/", 1)[-1].lower()}
        except OSError:  # not Linux
            return None
        for path in sorted(paths):
            try:
                return ctypes.CDLL(path)
            except OSError:
                continue
        return None

    @staticmethod
    def _first(lib, *names):
        for name in names if lib is not None else ():
            fn = getattr(lib, name, None)
            if fn is not None:
                return fn
        return None


BLAS_SPIN = ("OPENBLAS_THREAD_TIMEOUT", "20")


def import_numpy_with_short_blas_spin():
    """Import numpy, loading its OpenBLAS with ``BLAS_SPIN`` unless numpy is loaded
    already or the variable is set (then as set); the environment is left as it was."""
    name, value = BLAS_SPIN
    if "numpy" in sys.modules or name in os.environ:
        return
    os.environ[name] = value
    try:
        import numpy  # noqa: F401
    finally:
        del os.environ[name]


import_numpy_with_short_blas_spin()  # distnn/__init__.py imports this module before any other


_blas = None
_lock = threading.RLock()
_num_threads = None
_pool = None
_pool_workers = 0
_in_worker = threading.local()
_openmp_team = None  # _OpenMPTeam, once oneDNN has run
_MAIN_THREAD = threading.main_thread().ident


def _openblas():
    global _blas
    if _blas is None:
        with _lock:
            if _blas is None:
                _blas = _OpenBLAS()
    return _blas


def get_num_threads():
    """Threads one op may use: as set, else the BLAS's own count when first asked,
    else ``OMP_NUM_THREADS``, else the cores this process may run on."""
    global _num_threads
    if _num_threads is None:
        blas = _openblas()
        env = os.environ.get("OMP_NUM_THREADS", "")
        if blas.get_global is not None:
            _num_threads = max(1, int(blas.get_global()))
        elif env.isdigit() and int(env) > 0:
            _num_threads = int(env)
        else:
            _num_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return _num_threads


def set_num_threads(n):
    """Threads for each op from now on, BLAS calls included (as ``torch.set_num_threads``)."""
    global _num_threads, _pool
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads expects a positive integer, got {n!r}")
    blas = _openblas()
    with _lock:
        _num_threads = n
        if blas.set_global is not None and not blas.held:
            blas.set_global(n)
        old, _pool = _pool, None
    if old is not None:
        old.shutdown(wait=False)


def _mark_worker():
    _in_worker.active = True


def _hold_blas(blas, delta):
    """One more (``delta`` 1) or one fewer (-1) caller needing single-threaded BLAS."""
    with _lock:
        blas.held += delta
        if blas.held == (1 if delta > 0 else 0):
            blas.set_global(1 if delta > 0 else get_num_threads())


def _worker_pool(workers):
    global _pool, _pool_workers
    with _lock:
        if _pool is None or _pool_workers != workers:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(workers, thread_name_prefix="distnn-intra-op",
                                       initializer=_mark_worker)
            _pool_workers = workers
        return _pool


def _forget_pool_after_fork():
    global _pool, _lock, _openmp_team, _MAIN_THREAD
    _pool, _lock = None, threading.RLock()  # its threads did not survive into the child
    _openmp_team = None  # nor OpenMP's: a region would wait for them forever
    _MAIN_THREAD = threading.get_ident()  # the forking thread, the child's only one
    if _blas is not None and _blas.held:  # forked mid-section: nothing runs in parallel here
        _blas.held = 0
        _blas.set_global(get_num_threads())


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def map_chunks(xp, fn, chunks):
    """``[fn(chunk) for chunk in chunks]``, the chunks spread over ``get_num_threads()``
    threads (this one included) when that is more than one, the arrays are numpy's
    and OpenBLAS's thread count can be set. ``fn`` must write only its own chunk's
    outputs and use thread-local scratch.

    Each thread takes the next chunk not yet taken, so a thread that starts late or
    runs slow (a busy core) takes fewer; which thread computes a chunk changes
    nothing in its result. One task per pool thread, not one per chunk: each task
    costs a wake-up (40-50 us here). Once oneDNN has run, the chunks go to its
    OpenMP team (``_OpenMPTeam``) instead of this module's pool."""
    threads = min(get_num_threads(), len(chunks))
    blas = _openblas()
    if (threads < 2 or xp.__name__ != "numpy" or blas.set_global is None
            or getattr(_in_worker, "active", False)):
        return [fn(chunk) for chunk in chunks]
    results = [None] * len(chunks)
    taken = itertools.count()  # next() on it is atomic under the GIL

    def drain():
        i = next(taken)
        while i < len(chunks):
            results[i] = fn(chunks[i])
            i = next(taken)

    _hold_blas(blas, 1)
    try:
        team = _openmp_team
        if team is not None and threading.get_ident() == _MAIN_THREAD:
            team.run(drain, threads)
        else:
            _run_on_pool(drain, threads)
    finally:
        _hold_blas(blas, -1)
    return results


def _run_on_pool(drain, threads):
    pool = _worker_pool(get_num_threads() - 1)
    helpers = [pool.submit(drain) for _ in range(threads - 1)]
    try:
        drain()
    finally:
        wait(helpers)  # no worker still writes when this returns or raises
    for helper in helpers:
        helper.result()  # a worker's exception, raised here


class _OpenMPTeam:
    """GNU OpenMP's thread team, the one oneDNN's convolutions run on, running
    ``map_chunks``' chunks too: ``GOMP_parallel`` calls a ctypes callback on each of
    its threads, which takes the GIL and drains chunks as the pool's threads do.

    Two sets of threads on two cores fought: after each convolution OpenMP's
    threads spin (``GOMP_SPINCOUNT``) on the core the pool's thread needed, and a
    pool task costs a 40-50 us wake-up where a spinning team starts in a few.
    On one team, ResNet-18 (32x32) at 2 threads went from 96-115 ms a step to
    77-81. Used only once oneDNN has run: before that its threads do not exist,
    and beside OpenBLAS's own spinning threads (a Transformer) they cost more
    than they save.

    A foreign thread's Python state lives only as long as a callback, and with it
    its thread-locals (``im2col.scratch_array``'s buffers): each team thread keeps
    its state by taking one more GIL-state reference the first time it runs. Only
    the main thread's team is used: each calling thread gets a team of its own,
    whose threads end with it, and their kept states (scratch buffers included)
    would outlive them; other threads use the pool."""

    def __init__(self, gomp):
        self._parallel = gomp.GOMP_parallel
        self._parallel.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
        self._parallel.restype = None
        self._callback = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(self._enter)  # kept alive with the team
        self._callback_address = ctypes.cast(self._callback, ctypes.c_void_p)
        self._jobs = {}
        self._keys = itertools.count(1)

    def run(self, drain, threads):
        """``drain()`` on ``threads`` threads of the team, this one included; the
        first exception any raised, raised here once all returned."""
        key = next(self._keys)
        errors = []
        self._jobs[key] = drain, errors
        try:
            self._parallel(self._callback_address, key, threads, 0)
        finally:
            del self._jobs[key]
        if errors:
            raise errors[0]

    def _enter(self, key):
        if not getattr(_in_worker, "kept", False):
            ctypes.pythonapi.PyGILState_Ensure()  # never released: this thread's Python state stays
            _in_worker.kept = True
        drain, errors = self._jobs[key]
        outer = getattr(_in_worker, "active", False)
        _in_worker.active = True  # map_chunks inside a chunk runs its chunks in line
        try:
            drain()
        except BaseException as error:  # carried to the caller: nothing may escape into C
            errors.append(error)
        finally:
            _in_worker.active = outer


def share_openmp_team(gomp):
    """Run ``map_chunks``' chunks on libgomp's (``gomp``, a loaded CDLL) team from now
    on; called by ``ops.onednn`` when its first primitive has run."""
    global _openmp_team
    with _lock:
        if _openmp_team is None:
            _openmp_team = _OpenMPTeam(gomp)


_ROW_BLOCK_BYTES = 1 << 20


def row_blocks(x):
    """Slices of about 1 MiB over the rows of ``x`` seen as (rows, last dim): a pass
    along rows (softmax) taken a block at a time stays in cache, and the blocks
    spread over threads with ``map_chunks``."""
    width = x.shape[-1]
    rows = x.size // width if width else 0
    per = max(1, _ROW_BLOCK_BYTES // max(1, width * x.itemsize))
    return [slice(start, start + per) for start in range(0, rows, per)]


def in_flat_blocks(xp, fn, arrays, block_elements, min_elements):
    """``fn(*arrays)`` for an elementwise ``fn`` that writes its results into some of
    the arrays; where ``flat_blocks`` has blocks, a block at a time over the flat
    arrays, spread with ``map_chunks``: a formula of many passes then keeps its
    temporaries in a core's cache. The same bits as whole, at any thread count."""
    blocks = flat_blocks(xp, arrays, block_elements, min_elements)
    if blocks is None:
        fn(*arrays)
        return
    flat = [a.reshape(-1) for a in arrays]
    map_chunks(xp, lambda part: fn(*(a[part] for a in flat)), blocks)


def by_flat_blocks(xp, fn, arrays, block_elements, min_elements):
    """``fn(*arrays)`` for an elementwise ``fn`` that returns its result, as a fresh
    array: where ``flat_blocks`` has blocks, the first block here (for the result's
    dtype), the rest spread with ``map_chunks``, each written into the result."""
    blocks = flat_blocks(xp, arrays, block_elements, min_elements)
    if blocks is None:
        return fn(*arrays)
    flat = [a.reshape(-1) for a in arrays]
    head = fn(*(a[blocks[0]] for a in flat))
    if getattr(head, "shape", None) != (min(block_elements, arrays[0].size),):  # not elementwise after all
        return fn(*arrays)
    out = xp.empty(arrays[0].shape, head.dtype)
    out_flat = out.reshape(-1)
    out_flat[blocks[0]] = head

    def block(part):
        out_flat[part] = fn(*(a[part] for a in flat))

    map_chunks(xp, block, blocks[1:])
    return out


def flat_blocks(xp, arrays, block_elements, min_elements):
    """Slices of ``block_elements`` over C-contiguous numpy arrays of one shape and
    ``min_elements`` or more elements, seen flat; None for any other arrays."""
    first = arrays[0]
    if (xp.__name__ != "numpy" or first.size < min_elements
            or not all(type(a) is xp.ndarray and a.shape == first.shape and a.flags.c_contiguous for a in arrays)):
        return None
    return [slice(i, i + block_elements) for i in range(0, first.size, block_elements)]

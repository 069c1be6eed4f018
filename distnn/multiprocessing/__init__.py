"""``distnn.multiprocessing``: Python's ``multiprocessing`` with tensors that travel by
reference when they are in shared memory, as ``torch.multiprocessing``.

Everything ``multiprocessing`` exports is here (``Process``, ``Queue``, ``Pool``,
``get_context``, ``set_start_method``, ...). Importing distnn registers the
reductions (``reductions.py``) with multiprocessing's pickler, so a tensor moved
with ``share_memory_()`` (or a module with ``share_memory()``) arrives in another
process, as a Process argument under fork or spawn or through a Queue, over the
same memory: writes in either process are seen by the other. Other tensors are
copied. ``spawn`` and ``start_processes`` (``spawn.py``) run a function in N
processes with PyTorch's error propagation.
"""

import multiprocessing
from multiprocessing import *  # noqa: F401,F403

from .reductions import init_reductions
from .spawn import (ProcessContext, ProcessException, ProcessExitedException, ProcessRaisedException, spawn,
                    start_processes)

__all__ = ["set_sharing_strategy", "get_sharing_strategy", "get_all_sharing_strategies", "ProcessContext",
           "ProcessException", "ProcessExitedException", "ProcessRaisedException", "spawn", "start_processes"]
__all__ += multiprocessing.__all__

# Only file descriptors: the memory has no name anywhere, so nothing outlives the
# processes that use it (PyTorch's "file_system" strategy names files in /dev/shm).
_sharing_strategy = "file_descriptor"
_all_sharing_strategies = {"file_descriptor"}


def set_sharing_strategy(new_strategy):
    """Set the strategy for sharing CPU tensors (distnn has one: ``"file_descriptor"``)."""
    global _sharing_strategy
    if new_strategy not in _all_sharing_strategies:
        raise AssertionError(f"invalid sharing strategy {new_strategy!r}, expected one of {_all_sharing_strategies}")
    _sharing_strategy = new_strategy


def get_sharing_strategy():
    """Return the current strategy for sharing CPU tensors."""
    return _sharing_strategy


def get_all_sharing_strategies():
    """Return a set of sharing strategies supported on a current system."""
    return _all_sharing_strategies


init_reductions()

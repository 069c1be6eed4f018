"""The distributed state of this process in one place: the world that
``init_process_group`` joined, its default group, and every world still open
(closed at exit). A thread may hold a state of its own (``thread_state``): the
in-process worlds of the unit tests run one rank per thread of one process."""

import atexit
import threading
from contextlib import contextmanager

# pyzmq's garbage collector (the thread that frees zero-copy buffers) registers its exit
# handler when its module is imported: imported before this module registers its own,
# it is torn down after ours, so closing a world at exit never waits on a collector that
# is already gone.
import zmq.utils.garbage  # noqa: F401

from .errors import DistributedError

NON_GROUP_MEMBER = object()  # what new_group returns on a rank outside the group


class State:
    """One rank's view: its world and the default group over all of it."""

    def __init__(self):
        self.world = None
        self.group = None


_process = State()
_local = threading.local()
_open_worlds = []


def current():
    """This thread's state when it has one, else the process's."""
    return getattr(_local, "state", None) or _process


@contextmanager
def thread_state():
    """Give the calling thread a state of its own for the duration."""
    previous = getattr(_local, "state", None)
    _local.state = State()
    try:
        yield _local.state
    finally:
        _local.state = previous


def join(world, group):
    state = current()
    state.world, state.group = world, group
    _open_worlds.append(world)


def leave():
    """Forget the current world and return it (None when there is none), for closing."""
    state = current()
    world = state.world
    state.world = state.group = None
    if world in _open_worlds:
        _open_worlds.remove(world)
    return world


def resolve_group(group=None):
    """``group``, or the default group for None; raises when there is none or when this
    rank is not a member."""
    if group is NON_GROUP_MEMBER:
        raise DistributedError("this rank is not a member of the given group")
    g = group if group is not None else current().group
    if g is None:
        raise RuntimeError("Default process group has not been initialized, please make sure to call "
                           "init_process_group.")
    return g


@atexit.register
def _close_at_exit():
    for world in list(_open_worlds):
        world.close()
    _open_worlds.clear()

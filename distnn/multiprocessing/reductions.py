"""How multiprocessing's pickler sends shared memory: a ``SharedStorage`` goes as its
file descriptor, so the receiving process maps the same memory (PyTorch's
``file_descriptor`` sharing strategy), and a ``Parameter`` over shared memory as a
Parameter over that memory.

``multiprocessing.reduction.DupFd`` carries the descriptor: a process being
started with spawn or forkserver inherits it; a Queue, Pipe or Pool receiver
fetches it over an authenticated Unix socket from the sender's resource sharer,
so the sender must still be alive when the receiver unpickles (as in PyTorch).
Plain ``pickle`` is untouched: a shared tensor pickled there is a copy.
"""

import pickle
from multiprocessing.reduction import DupFd, ForkingPickler

from .._tensor_shared import SharedStorage, rebuild_tensor, storage_of
from ..nn.parameter import Parameter


def reduce_storage(storage):
    return (rebuild_storage_fd, (DupFd(storage.fd), storage.nbytes))


def rebuild_storage_fd(dup, nbytes):
    return SharedStorage.from_fd(dup.detach(), nbytes)


def reduce_parameter(param):
    """A shared Parameter travels by reference; any other as ``Parameter.__reduce_ex__`` says (a copy)."""
    storage = storage_of(param._data)
    if storage is None:
        return param.__reduce_ex__(pickle.DEFAULT_PROTOCOL)
    return (rebuild_parameter, storage.reduce_tensor(param)[1])


def rebuild_parameter(storage, dtype, shape, strides, offset, requires_grad):
    return Parameter(rebuild_tensor(storage, dtype, shape, strides, offset, False), requires_grad)


def init_reductions():
    """Register the reductions with multiprocessing's pickler (once per process; idempotent)."""
    ForkingPickler.register(SharedStorage, reduce_storage)
    ForkingPickler.register(Parameter, reduce_parameter)

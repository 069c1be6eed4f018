"""Shared memory for CPU tensors: ``SharedStorage``, an anonymous block that other
processes can map, and ``Tensor.share_memory_`` / ``is_shared``, which move a
tensor's data into one.

A block is a memfd (``memfd_create``): it has no name in any filesystem, so
nothing is ever left in /dev/shm or /tmp and no other process can open it; a
process gets it only by being handed its file descriptor (inherited across
fork, or passed by ``distnn.multiprocessing``'s reductions, as PyTorch's
``file_descriptor`` sharing strategy), and the memory is freed when the last
mapping and descriptor are gone. Arrays over a block are numpy views whose
``base`` chain ends at the block, which is how a tensor knows it is shared and
how it pickles: as a reference to the block (multiprocessing sends the
descriptor; any other pickler sends a copy of the bytes).

Moving data rebinds the array of the tensors being moved (and of a view's base,
so both stay views of one memory, as PyTorch moves a whole storage); another
tensor that aliased the old memory, taken before the call, keeps the old copy.
"""

import ctypes
import mmap
import os
import weakref

import numpy as np

from .tensor import _memory_owner, _wrap

_ALIGN = 64  # each array packed into a block starts on a cache line

# Blocks mapped in this process, by the memfd's (device, inode): a descriptor that
# arrives for a block already mapped here reuses that mapping.
_mapped = weakref.WeakValueDictionary()


class SharedStorage(mmap.mmap):
    """A memfd mapped shared and read-write; numpy arrays are views of it.

    Holds the descriptor (``fd``) for as long as any array uses the block, so the
    block can be handed on to further processes; it is closed when the block is
    garbage collected.
    """

    @classmethod
    def allocate(cls, nbytes):
        """A new zero-filled block of ``nbytes`` bytes."""
        fd = os.memfd_create("distnn-shared-tensor", os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, max(nbytes, 1))
            block = cls(fd, max(nbytes, 1))
        except BaseException:
            os.close(fd)
            raise
        return block._adopt(fd, nbytes)

    @classmethod
    def from_fd(cls, fd, nbytes):
        """The block behind descriptor ``fd``, which this takes ownership of."""
        try:
            stat = os.fstat(fd)
            existing = _mapped.get((stat.st_dev, stat.st_ino))
            if existing is None:
                if stat.st_size < nbytes:
                    raise RuntimeError(f"shared memory block too small: Expect: at least {nbytes} bytes, "
                                       f"Actual: {stat.st_size} bytes")
                block = cls(fd, max(nbytes, 1))
        except BaseException:
            os.close(fd)
            raise
        if existing is not None:
            os.close(fd)
            return existing
        return block._adopt(fd, nbytes)

    def _adopt(self, fd, nbytes):
        self.fd, self.nbytes = fd, nbytes
        weakref.finalize(self, os.close, fd)
        probe = np.frombuffer(self, dtype=np.uint8)
        self.address = probe.ctypes.data
        del probe
        stat = os.fstat(fd)
        _mapped[(stat.st_dev, stat.st_ino)] = self
        return self

    def array(self, offset, like):
        """An array over this block at byte ``offset`` with ``like``'s dtype, shape, strides
        and writability."""
        out = np.ndarray(like.shape, like.dtype, buffer=self, offset=offset, strides=like.strides)
        if not like.flags.writeable:
            out.flags.writeable = False
        return out

    def reduce_tensor(self, tensor):
        """How ``Tensor.__reduce_ex__`` pickles a tensor whose array is a view of this block."""
        array = tensor._data
        offset = array.__array_interface__["data"][0] - self.address
        return (rebuild_tensor, (self, array.dtype.str, array.shape, array.strides, offset, tensor.requires_grad))

    def __reduce__(self):
        # Any pickler but multiprocessing's (whose reduction sends the descriptor) gets a
        # copy: a file descriptor means nothing in a file or another machine.
        return (bytearray, (self[:self.nbytes],))


def rebuild_tensor(storage, dtype, shape, strides, offset, requires_grad):
    """A tensor over ``storage`` (a ``SharedStorage``, or the bytes a plain pickle copied)."""
    t = _wrap(np.ndarray(shape, np.dtype(dtype), buffer=storage, offset=offset, strides=strides))
    t.requires_grad = requires_grad
    return t


def storage_of(array):
    """The ``SharedStorage`` under ``array``, or None when its memory is not shared."""
    owner = _memory_owner(array)
    return owner if isinstance(owner, SharedStorage) else None


def move_to_shared_memory(tensors):
    """Move the data of ``tensors`` (CPU tensors; None and shared ones are skipped) into
    one new shared block, in place: same values, dtypes, shapes and strides.

    Tensors whose arrays view one memory (a view and its base, weights tied through
    views) are moved together and keep viewing one memory.
    """
    groups, seen = {}, set()
    for t in tensors:
        if t is None or id(t) in seen:
            continue
        seen.add(id(t))
        if type(t._data) is not np.ndarray:
            raise RuntimeError(f"share_memory_: distnn shares only CPU tensors between processes. "
                               f"Expect: a cpu tensor, Actual: a {t.device} tensor (copy it with .cpu() first)")
        root = _root(t._data)
        if not isinstance(root.base, SharedStorage):
            groups.setdefault(id(root), (root, []))[1].append(t)
    if not groups:
        return
    placed, total = [], 0
    for root, members in groups.values():
        low, high = _extent(root)
        start = -(-total // _ALIGN) * _ALIGN
        placed.append((low, high, start, members))
        total = start + (high - low)
    block = SharedStorage.allocate(total)
    for low, high, start, members in placed:
        if high > low:
            ctypes.memmove(block.address + start, low, high - low)
        for t in members:
            data = t._data
            offset = start + (data.__array_interface__["data"][0] - low) if data.size else start
            t._data = block.array(offset, data)


def _root(array):
    """The last ndarray of ``array``'s base chain: it spans all memory its views can reach."""
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


def _extent(array):
    """The byte addresses ``[low, high)`` that ``array``'s elements occupy."""
    low = high = array.__array_interface__["data"][0]
    if array.size == 0:
        return low, low
    for n, stride in zip(array.shape, array.strides):
        if stride < 0:
            low += (n - 1) * stride
        else:
            high += (n - 1) * stride
    return low, high + array.itemsize


class SharedMemoryMethods:
    """Attached to ``Tensor`` by ``_tensor_methods.py``."""

    def share_memory_(self):
        """Move the data into shared memory, in place (a no-op when it is there already).

        The gradient is not moved (as in PyTorch; ``Module.share_memory`` moves it). A
        view moves together with its base. CUDA tensors raise: distnn cannot share
        CuPy device memory between processes.
        """
        move_to_shared_memory([self, self._base])
        return self

    def is_shared(self):
        """Whether the data lives in shared memory (another process can map it)."""
        return type(self._data) is np.ndarray and storage_of(self._data) is not None

"""``default_collate`` (a list of samples -> one batch) and ``default_convert``
(one sample's numpy arrays -> tensors), with PyTorch's type mapping:

- Tensors are stacked along a new dim 0; numpy arrays become tensors, then stack.
- Python floats -> float64, Python ints -> int64, bools -> bool, numpy scalars
  keep their dtype.
- dicts, namedtuples and lists keep their type, collated per key/field; tuples
  become lists (as in PyTorch); strings and bytes are kept as a list.
"""

import collections.abc
import copy

import numpy as np

from ... import backend
from ... import dtypes as _dt
from ...tensor import Tensor, _wrap

__all__ = ["default_collate", "default_convert"]

_ERR = "default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; found {}"


def _is_text_or_object(dtype):
    # numpy's byte strings, unicode and object arrays cannot become tensors.
    return dtype.kind in "SaUOV"


def _tensor_of(array):
    _dt.from_numpy_dtype(array.dtype)  # TypeError naming the dtype when distnn has no such tensor
    return _wrap(array)


def _stack(batch):
    first = batch[0]
    for i, t in enumerate(batch):
        if not isinstance(t, Tensor):
            raise TypeError(f"default_collate: expected all elements to be Tensors like element 0, "
                            f"found {type(t).__name__} at entry {i}")
        if t.shape != first.shape:
            raise RuntimeError(f"stack expects each tensor to be equal size, but got {list(first.shape)} "
                               f"at entry 0 and {list(t.shape)} at entry {i}")
    xp = backend.array_module(first._data)
    arrays = [t._data for t in batch]
    dtype = np.result_type(*(a.dtype for a in arrays))
    return _wrap(xp.stack([a.astype(dtype, copy=False) for a in arrays]))


def _numpy_batch(batch):
    for i, a in enumerate(batch):
        if _is_text_or_object(a.dtype):
            raise TypeError(_ERR.format(a.dtype))
        if a.shape != batch[0].shape:
            raise RuntimeError(f"stack expects each tensor to be equal size, but got {list(batch[0].shape)} "
                               f"at entry 0 and {list(a.shape)} at entry {i}")
    return _tensor_of(np.stack(batch))


def default_collate(batch):
    """Merge a list of samples into a batch (see module docstring)."""
    if not isinstance(batch, collections.abc.Sequence) or isinstance(batch, (str, bytes)):
        raise TypeError(f"default_collate: expected a list of samples, got {type(batch).__name__}")
    if len(batch) == 0:
        raise ValueError("default_collate: expected a non-empty list of samples, got an empty one")
    elem = batch[0]
    if isinstance(elem, Tensor):
        return _stack(batch)
    if isinstance(elem, np.ndarray):
        return _numpy_batch(batch)
    if isinstance(elem, (np.bool_, np.number)):
        return _tensor_of(np.array(batch))
    if isinstance(elem, bool):
        return _wrap(np.array(batch, dtype=np.bool_))
    if isinstance(elem, float):
        return _wrap(np.array(batch, dtype=np.float64))
    if isinstance(elem, int):
        return _wrap(np.array(batch, dtype=np.int64))
    if isinstance(elem, (str, bytes)):
        return batch
    if isinstance(elem, collections.abc.Mapping):
        merged = {key: default_collate([d[key] for d in batch]) for key in elem}
        return _same_mapping_type(elem, merged)
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):  # namedtuple
        return type(elem)(*(default_collate(s) for s in zip(*batch)))
    if isinstance(elem, collections.abc.Sequence):
        size = len(elem)
        for i, sample in enumerate(batch):
            if len(sample) != size:
                raise RuntimeError(f"each element in list of batch should be of equal size: "
                                   f"Expect: {size} (entry 0), Actual: {len(sample)} at entry {i}")
        columns = [default_collate(s) for s in zip(*batch)]
        if isinstance(elem, tuple):
            return columns  # PyTorch returns a list for tuples, kept for compatibility
        return _same_sequence_type(elem, columns)
    raise TypeError(_ERR.format(type(elem)))


def default_convert(data):
    """Turn numpy arrays and numpy scalars inside ``data`` into tensors; leave
    everything else (Python numbers included) as it is."""
    if isinstance(data, Tensor):
        return data
    if isinstance(data, np.ndarray):
        return data if _is_text_or_object(data.dtype) else _tensor_of(data)
    if isinstance(data, (np.bool_, np.number)):
        return _tensor_of(np.asarray(data))
    if isinstance(data, collections.abc.Mapping):
        return _same_mapping_type(data, {key: default_convert(data[key]) for key in data})
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return type(data)(*(default_convert(d) for d in data))
    if isinstance(data, tuple):
        return [default_convert(d) for d in data]
    if isinstance(data, collections.abc.Sequence) and not isinstance(data, (str, bytes)):
        return _same_sequence_type(data, [default_convert(d) for d in data])
    return data


def _same_mapping_type(like, values):
    try:
        if isinstance(like, collections.abc.MutableMapping):
            clone = copy.copy(like)  # keeps OrderedDict/defaultdict and their attributes
            clone.update(values)
            return clone
        return type(like)(values)
    except TypeError:  # a mapping type that cannot be rebuilt from a dict
        return values


def _same_sequence_type(like, values):
    try:
        if isinstance(like, collections.abc.MutableSequence):
            clone = copy.copy(like)
            for i, v in enumerate(values):
                clone[i] = v
            return clone
        return type(like)(values)
    except TypeError:
        return values

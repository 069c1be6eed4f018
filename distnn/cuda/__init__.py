"""``distnn.cuda``: the device queries and controls of PyTorch's ``torch.cuda`` that a
training script uses, streams (``streams.py``) and CUDA graphs (``graphs.py``). GPUs
are driven through CuPy, which only backend.py imports."""

from ..backend import (cuda_current_device as current_device, cuda_device_count as device_count,
                       cuda_device_name as get_device_name, cuda_is_available as is_available,
                       cuda_set_device as set_device, cuda_synchronize as synchronize)
from .graphs import CUDAGraph, graph, graph_pool_handle, is_current_stream_capturing, make_graphed_callables
from .streams import Event, Stream, current_stream, stream

__all__ = ["is_available", "device_count", "current_device", "set_device", "synchronize", "get_device_name",
           "Stream", "Event", "current_stream", "stream", "CUDAGraph", "graph", "graph_pool_handle",
           "is_current_stream_capturing", "make_graphed_callables"]

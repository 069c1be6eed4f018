"""The simple DDP communication hooks, as torch's ``default_hooks``: plain averaging
(``allreduce_hook``: what DDP does without a hook, bit for bit) and averaging with
the gradients sent as float16 (``fp16_compress_hook``) or bfloat16
(``bf16_compress_hook``), halving the bytes on the wire.

Each divides by the group size itself (a hook gets the bucket undivided) and
returns a ``distnn.futures.Future`` of the bucket's averaged contents.

bfloat16: NumPy has none, so the bucket is rounded to bfloat16 (nearest, ties to
even) and carried as the top 16 bits of each float32 in uint16 arrays, summed by
``bfloat16.bf16_all_reduce`` with every partial sum rounded to bfloat16, and
unpacked to float32 (see ``bfloat16.py``). There is no ``bf16_compress_wrapper``:
a wrapped hook would need bfloat16 arithmetic.
"""

from ....dtypes import float16
from ....futures import work_future
from ....tensor import _wrap
from ... import collective_ops
from .bfloat16 import bf16_all_reduce, from_bfloat16_bits, to_bfloat16_bits

__all__ = ["allreduce_hook", "fp16_compress_hook", "bf16_compress_hook", "fp16_compress_wrapper"]


def _allreduce_fut(process_group, tensor):
    """Average ``tensor`` across the group in place; a Future of it."""
    tensor.div_(collective_ops.get_world_size(process_group))
    work = collective_ops.all_reduce(tensor, group=process_group, async_op=True)
    return work_future(work, [tensor]).then(lambda fut: fut.value()[0])


def allreduce_hook(process_group, bucket):
    """Average the bucket by all-reduce: training is bit-identical to registering no hook.
    ``process_group``: the hook state, the group to average over (None: the world)."""
    return _allreduce_fut(process_group, bucket.buffer())


def fp16_compress_hook(process_group, bucket):
    """Cast the bucket to float16, divide by the group size, all-reduce in float16 (every
    partial sum a float16), and cast the result back into the bucket."""
    buffer = bucket.buffer()
    compressed = buffer.to(float16).div_(collective_ops.get_world_size(process_group))
    work = collective_ops.all_reduce(compressed, group=process_group, async_op=True)

    def decompress(fut):
        buffer.copy_(fut.value()[0])
        return buffer
    return work_future(work, [compressed]).then(decompress)


def bf16_compress_hook(process_group, bucket):
    """Round the bucket to bfloat16, divide by the group size (rounding again), sum in
    bfloat16 across the group, and unpack the result to the bucket's float32."""
    buffer = bucket.buffer()
    world_size = collective_ops.get_world_size(process_group)
    bits = to_bfloat16_bits(from_bfloat16_bits(to_bfloat16_bits(buffer._data)) / world_size)
    work = bf16_all_reduce(bits, process_group)

    def decompress(fut):
        buffer._data[...] = from_bfloat16_bits(bits)
        return buffer
    return work_future(work, [_wrap(bits)]).then(decompress)


def fp16_compress_wrapper(hook):
    """A hook that runs ``hook`` on a float16 copy of the bucket and casts its result back:
    ``fp16_compress_wrapper(allreduce_hook)`` is ``fp16_compress_hook``; e.g.
    ``fp16_compress_wrapper(powerSGD_hook)`` compresses PowerSGD's factors too."""
    def fp16_compress_wrapper_hook(hook_state, bucket):
        original = bucket.buffer()
        bucket.set_buffer(original.to(float16))
        fut = hook(hook_state, bucket)

        def decompress(fut):
            original.copy_(fut.value())
            return original
        return fut.then(decompress)
    return fp16_compress_wrapper_hook

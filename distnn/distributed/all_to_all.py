"""``all_to_all`` and ``all_to_all_single`` as torch.distributed's: every rank sends
each rank a chunk of its own (a list entry, or a slice along dim 0 with uneven
``split_sizes``) and receives one from each. Argument checks here, before anything
is sent; the pairwise exchange, with its check that what rank i sends to j is what
j expects from i, is ``collectives.all_to_all``."""

import numpy as np

from . import collectives
from .host_buffer import HostBuffer
from .registry import resolve_group


def all_to_all(output_tensor_list, input_tensor_list, group=None, async_op=False):
    """``input_tensor_list[p]`` goes to rank p; ``output_tensor_list[p]`` receives rank p's
    entry for this rank. Entries may differ in size, as long as each pair agrees."""
    g = resolve_group(group)
    for name, tensors in (("output_tensor_list", output_tensor_list), ("input_tensor_list", input_tensor_list)):
        if len(tensors) != g.size:
            raise ValueError(f"Expect: {name} of length {g.size} (the group size), Actual: {len(tensors)}")
    outs = [HostBuffer(t, f"output_tensor_list[{i}]") for i, t in enumerate(output_tensor_list)]
    ins = [HostBuffer(t, f"input_tensor_list[{i}]") for i, t in enumerate(input_tensor_list)]
    dtype = ins[0].dtype
    for name, bufs in (("input_tensor_list", ins), ("output_tensor_list", outs)):
        for i, b in enumerate(bufs):
            if b.dtype != dtype:
                raise ValueError(f"Expect: {name}[{i}] of dtype {dtype} (as input_tensor_list[0]), Actual: {b.dtype}")
    me = g.rank
    if outs[me].flat.size != ins[me].flat.size:
        raise ValueError(f"Expect: output_tensor_list[{me}] of {ins[me].flat.size} elements (as "
                         f"input_tensor_list[{me}], this rank's own), Actual: {outs[me].flat.size}")
    sends = _unaliased([b.flat for b in ins], [o.flat for o in outs])

    def run(ex):
        collectives.all_to_all(ex, sends, [o.flat for o in outs], ("input_tensor_list", "output_tensor_list"))
        for o in outs:
            o.commit()
    return g.submit("all_to_all", run, async_op, dtype, (), output_tensor_list)


def all_to_all_single(output, input, output_split_sizes=None, input_split_sizes=None, group=None,
                      async_op=False):
    """Split ``input`` along dim 0 (in ``input_split_sizes``, else equally), send part p to
    rank p, and concatenate the parts received along dim 0 of ``output`` (in
    ``output_split_sizes``, else equally)."""
    g, out, inp = resolve_group(group), HostBuffer(output, "output"), HostBuffer(input, "input")
    if out.dtype != inp.dtype:
        raise ValueError(f"Expect: output of dtype {inp.dtype} (as input), Actual: {out.dtype}")
    recv_splits, recv_chunks = _split(out, output_split_sizes, "output", g.size)
    send_splits, send_chunks = _split(inp, input_split_sizes, "input", g.size)
    me = g.rank
    if recv_chunks[me].size != send_chunks[me].size:
        raise ValueError(f"Expect: output_split_sizes[{me}] to hold the {send_chunks[me].size} elements of "
                         f"input_split_sizes[{me}] (this rank's own part), Actual: {recv_chunks[me].size} elements")
    send_chunks = _unaliased(send_chunks, [out.flat])

    def run(ex):
        collectives.all_to_all(ex, send_chunks, recv_chunks, ("input_split_sizes", "output_split_sizes"),
                               send_splits, recv_splits)
        out.commit()
    return g.submit("all_to_all_single", run, async_op, inp.dtype, (), [output])


def _split(buf, split_sizes, name, group_size):
    """(split sizes, flat chunks) of ``buf`` cut along dim 0, checked as torch checks them."""
    if not buf.shape:
        raise ValueError(f"Expect: {name} with at least one dimension (split along dim 0), Actual: a 0-d tensor")
    rows = buf.shape[0]
    if split_sizes is None or len(split_sizes) == 0:
        if rows % group_size:
            raise ValueError(f"Expect: {name}'s dim 0 divisible by the group size {group_size} (no "
                             f"{name}_split_sizes given), Actual: {rows}")
        splits = [rows // group_size] * group_size
    else:
        splits = [int(s) for s in split_sizes]
        if len(splits) != group_size:
            raise ValueError(f"Expect: {name}_split_sizes of length {group_size} (the group size), "
                             f"Actual: {len(splits)}")
        if min(splits) < 0 or sum(splits) != rows:
            raise ValueError(f"Expect: {name}_split_sizes of non-negative sizes summing to {name}'s dim 0 "
                             f"({rows}), Actual: {splits} (sum {sum(splits)})")
    row = int(np.prod(buf.shape[1:], dtype=np.int64))
    ends = np.cumsum([0] + splits) * row
    return splits, [buf.flat[a:b] for a, b in zip(ends[:-1], ends[1:])]


def _unaliased(sends, outputs):
    """``sends``, with a copy of any that shares memory with an output: a chunk still on
    its way out must not be overwritten by one arriving."""
    return [s.copy() if any(np.may_share_memory(s, o) for o in outputs) else s for s in sends]

"""Collective algorithms on flat numpy buffers, written against an ``Exchange``
(one collective's send/recv with its expected header).

- ``all_reduce``: ring reduce-scatter then all-gather, pipelined by segment:
  each segment is reduced and forwarded as soon as it arrives, so sending,
  receiving and summing overlap. Small buffers skip the ring: recursive
  doubling (log2 n pairwise exchanges) when n is a power of two, else a
  one-hop direct path (every rank sends its buffer to every other and sums in
  rank order). Ranks that all share a host stage large buffers in shared
  memory (``shm_all_reduce``) instead of streaming them through sockets.
  Groups that span hosts with several ranks on some reduce large buffers in
  two levels, on top of these (``hierarchical.py``).
- ``broadcast``: a pipelined chain from the root for large buffers, direct
  sends for small ones. ``all_gather``/``reduce_scatter``: the two ring halves.
- ``all_to_all``: every rank sends each peer its own chunk (pairwise exchange),
  after both sides of each pair have compared the chunk's size.

Every rank ends with bit-identical results: reductions happen in a fixed order
and the all-gather copies one rank's reduced values to all.
"""

import numpy as np

from . import wire
from .errors import DistributedError
from .wire import MAX_FRAME_BYTES

SEGMENT_BYTES = 1 << 20  # pipelining granularity (gloo uses <= 1 MiB), and the most one message carries
assert SEGMENT_BYTES <= MAX_FRAME_BYTES
DIRECT_MAX_BYTES = 64 * 1024  # per rank and message, for worlds of 3 or more
# Measured on 2 cores: a staging round costs more than reading the whole data from every
# rank, up to about 4 MiB per rank with 4 ranks, and at every size with 2 (where both
# ways move nearly the same bytes).
SHM_ONE_ROUND_MAX_BYTES = 4 << 20

REDUCE_UFUNCS = {"sum": np.add, "product": np.multiply, "min": np.minimum, "max": np.maximum,
                 "band": np.bitwise_and, "bor": np.bitwise_or, "bxor": np.bitwise_xor}


def chunk_bounds(n_elems, n_chunks):
    """(start, stop) of ``n_chunks`` near-equal chunks covering ``n_elems`` (any size, even < n)."""
    base, extra = divmod(n_elems, n_chunks)
    bounds, start = [], 0
    for c in range(n_chunks):
        stop = start + base + (1 if c < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def segments(start, stop, seg_elems):
    return [slice(s, min(s + seg_elems, stop)) for s in range(start, stop, seg_elems)]


def _segment_elems(buf):
    return max(1, SEGMENT_BYTES // max(buf.itemsize, 1))


def message_segments(flat):
    """The slices of flat array ``flat`` that travel as one message each (one empty
    message for an empty array)."""
    return segments(0, flat.size, _segment_elems(flat)) or [slice(0, 0)]


def send_segmented(ex, dst, arr):
    """Send contiguous ``arr`` to ``dst`` in messages of at most ``SEGMENT_BYTES``."""
    flat = arr.reshape(-1)
    for sl in message_segments(flat):
        ex.send(dst, flat[sl])


def recv_segmented(ex, src, out):
    """Receive ``send_segmented``'s messages from ``src`` into contiguous ``out``."""
    flat = out.reshape(-1)
    for sl in message_segments(flat):
        flat[sl] = ex.recv_array(src, sl.stop - sl.start)


def all_reduce(ex, buf, op):
    """In-place reduction of flat ``buf`` across the group."""
    if ex.size == 1:
        return
    if buf.size == 0:
        return ex.handshake()
    if buf.nbytes <= direct_max_bytes(ex):
        if ex.size & (ex.size - 1) == 0:
            _recursive_doubling_all_reduce(ex, buf, REDUCE_UFUNCS[op])
        else:
            _direct_all_reduce(ex, buf, REDUCE_UFUNCS[op])
    elif ex.shm is not None:
        shm_all_reduce(ex, buf, REDUCE_UFUNCS[op])
    else:
        ring_all_reduce(ex, buf, REDUCE_UFUNCS[op])


def direct_max_bytes(ex):
    """The largest buffer ``all_reduce`` moves by whole-buffer exchanges. They beat the
    ring's 2(n-1) hops until the extra volume costs more than the hops (with two ranks
    both move the same bytes); shared memory beats both from about 16 KiB."""
    if ex.shm is not None:
        return DIRECT_MAX_BYTES // 4
    return DIRECT_MAX_BYTES * (4 if ex.size == 2 else 1)


def _recursive_doubling_all_reduce(ex, buf, ufunc):
    """log2(n) rounds of pairwise exchange (n a power of two): after round k each rank
    holds the reduction of its aligned block of 2^(k+1) ranks, the lower half's partial
    always on the left, so every rank of a block computes bit-identical values."""
    acc = buf.copy()
    bit = 1
    while bit < ex.size:
        partner = ex.rank ^ bit
        ex.send(partner, acc)
        theirs = ex.recv_array(partner, buf.size)
        ex.finish()  # acc may still be on its way out
        if partner < ex.rank:
            ufunc(theirs, acc, out=acc)
        else:
            ufunc(acc, theirs, out=acc)
        bit <<= 1
    buf[...] = acc


def _direct_all_reduce(ex, buf, ufunc):
    for peer in range(ex.size):
        if peer != ex.rank:
            ex.send(peer, buf)
    received = [buf if peer == ex.rank else ex.recv_array(peer, buf.size) for peer in range(ex.size)]
    acc = received[0].copy()
    for part in received[1:]:
        ufunc(acc, part, out=acc)
    ex.finish()  # our buffer may still be on its way out: only then overwrite it
    buf[...] = acc


def ring_all_reduce(ex, buf, ufunc):
    n, r = ex.size, ex.rank
    left, right = (r - 1) % n, (r + 1) % n
    seg = _segment_elems(buf)
    chunk_segs = [segments(a, b, seg) for a, b in chunk_bounds(buf.size, n)]
    # The reduce-scatter's last forward is the all-gather's first send.
    _ring_reduce_phase(ex, buf, chunk_segs, ufunc, left, right, forward_last=True)
    _ring_gather_phase(ex, buf, chunk_segs, left, right)
    ex.finish()


def shm_all_reduce(ex, buf, ufunc):
    """All-reduce through shared memory (``shm.Staging``), one staging half at a time.

    Two ranks, and buffers up to ``SHM_ONE_ROUND_MAX_BYTES``, take one round: every
    rank stages its whole buffer, then (once all have) reduces every rank's copy in
    rank order itself. Larger ones take two, to read less: rank r stages all but chunk
    r, reduces chunk r from all ranks into its own region, and (once all have) copies
    the other reduced chunks out."""
    staging, n = ex.shm, ex.size
    one_round = n == 2 or buf.nbytes <= SHM_ONE_ROUND_MAX_BYTES
    step = staging.half_elems(buf.itemsize)
    for start in range(0, buf.size, step):
        part = buf[start:start + step]
        (_shm_one_round if one_round else _shm_two_rounds)(ex, staging, part, ufunc)


def _shm_one_round(ex, staging, part, ufunc):
    staged = staging.stage(part.dtype, part.size)
    staged[...] = part
    staging.sync()  # every rank's data is staged
    regions = [staged if p == ex.rank else staging.peer(p, part.dtype, part.size) for p in range(ex.size)]
    staging.release_after_first_step()
    ufunc(regions[0], regions[1], out=part)
    for region in regions[2:]:
        ufunc(part, region, out=part)
    staging.step_done()


def _shm_two_rounds(ex, staging, part, ufunc):
    n, r = ex.size, ex.rank
    bounds = chunk_bounds(part.size, n)
    staged = staging.stage(part.dtype, part.size)
    for p, (a, b) in enumerate(bounds):
        if p != r:
            staged[a:b] = part[a:b]
    staging.sync()  # every rank's data is staged
    regions = [staged if p == r else staging.peer(p, part.dtype, part.size) for p in range(n)]
    a, b = bounds[r]
    sources = [part[a:b] if p == r else regions[p][a:b] for p in range(n)]
    if n > 2:
        acc = ufunc(sources[0], sources[1])
        for src in sources[2:-1]:
            ufunc(acc, src, out=acc)
        sources = [acc, sources[-1]]
    ufunc(sources[0], sources[1], out=staged[a:b])
    part[a:b] = staged[a:b]
    staging.sync()  # every chunk is reduced, and every peer has mapped our region
    staging.release()
    for p, (a, b) in enumerate(bounds):
        if p != r:
            part[a:b] = regions[p][a:b]
    staging.step_done()


def _ring_reduce_phase(ex, buf, chunk_segs, ufunc, left, right, forward_last):
    """Reduce-scatter half of the ring: at step k rank r sends chunk r-k-1 and reduces
    chunk r-k-2 into its own copy; after n-1 steps chunk r is complete here. Each reduced
    segment is forwarded at once (on the last step only if ``forward_last``)."""
    n, r = ex.size, ex.rank
    for sl in chunk_segs[(r - 1) % n]:
        ex.send(right, buf[sl])
    for k in range(n - 1):
        for sl in chunk_segs[(r - k - 2) % n]:
            part = buf[sl]
            ufunc(part, ex.recv_array(left, part.size), out=part)
            if forward_last or k < n - 2:
                ex.send(right, part)


def _ring_gather_phase(ex, buf, chunk_segs, left, right):
    """All-gather half of the ring: rank r already sent its complete chunk r; at step k
    it receives chunk r-k-1 and forwards it, except on the last step."""
    n, r = ex.size, ex.rank
    for k in range(n - 1):
        for sl in chunk_segs[(r - k - 1) % n]:
            buf[sl] = ex.recv_array(left, sl.stop - sl.start)
            if k < n - 2:
                ex.send(right, buf[sl])


def agree(ex):
    """Before a rooted collective: a rank that only sends (a broadcast or scatter root, a
    gather leaf) would never see a peer's header, so ranks that disagree about the root
    could finish with different data, or wait for each other until the timeout. One
    handshake first compares op (which names the root), dtype and shape on every pair."""
    if ex.size > 1:
        ex.handshake()


def broadcast(ex, buf, root):
    if ex.size == 1:
        return
    agree(ex)
    if buf.size == 0:
        return
    if buf.nbytes <= DIRECT_MAX_BYTES:
        if ex.rank == root:
            for peer in range(ex.size):
                if peer != root:
                    ex.send(peer, buf)
            ex.finish()
        else:
            buf[...] = ex.recv_array(root, buf.size)
        return
    # A chain root -> root+1 -> ... forwarding each segment as it lands.
    position = (ex.rank - root) % ex.size
    prev, nxt = (ex.rank - 1) % ex.size, (ex.rank + 1) % ex.size
    last = position == ex.size - 1
    for sl in segments(0, buf.size, _segment_elems(buf)):
        if position > 0:
            buf[sl] = ex.recv_array(prev, sl.stop - sl.start)
        if not last:
            ex.send(nxt, buf[sl])
    ex.finish()


def all_gather(ex, out, part):
    """``out`` (size * part.size elements) gets every rank's ``part`` in rank order."""
    n, r, m = ex.size, ex.rank, part.size
    out[r * m:(r + 1) * m] = part
    if n == 1:
        return
    if m == 0:
        return ex.handshake()
    left, right = (r - 1) % n, (r + 1) % n
    seg = _segment_elems(out)
    chunk_segs = [segments(c * m, (c + 1) * m, seg) for c in range(n)]
    for sl in chunk_segs[r]:
        ex.send(right, out[sl])
    _ring_gather_phase(ex, out, chunk_segs, left, right)
    ex.finish()


def reduce_scatter(ex, work, op):
    """Reduce ``work`` (size * m elements, overwritten) so chunk r is complete on rank r;
    returns that chunk."""
    n, r = ex.size, ex.rank
    m = work.size // n
    if n == 1:
        return work[r * m:(r + 1) * m]
    if m == 0:
        ex.handshake()
        return work[r * m:(r + 1) * m]
    chunk_segs = [segments(c * m, (c + 1) * m, _segment_elems(work)) for c in range(n)]
    _ring_reduce_phase(ex, work, chunk_segs, REDUCE_UFUNCS[op], (r - 1) % n, (r + 1) % n, forward_last=False)
    ex.finish()
    return work[r * m:(r + 1) * m]


def gather(ex, part, out_parts, dst):
    """Rank ``dst`` receives every rank's ``part`` into ``out_parts`` (a list of arrays)."""
    agree(ex)
    if ex.rank == dst:
        for peer in range(ex.size):
            if peer == dst:
                out_parts[peer][...] = part
            else:
                recv_segmented(ex, peer, out_parts[peer])
    else:
        send_segmented(ex, dst, part)
        ex.finish()


def scatter(ex, out, in_parts, src):
    agree(ex)
    if ex.rank == src:
        for peer in range(ex.size):
            if peer != src:
                send_segmented(ex, peer, np.ascontiguousarray(in_parts[peer]))
        out[...] = in_parts[src]
        ex.finish()
    else:
        recv_segmented(ex, src, out)


_SIZES_DTYPE = np.dtype(np.int64)  # all_to_all's size messages


def all_to_all(ex, send_chunks, recv_chunks, names, send_splits=None, recv_splits=None):
    """Pairwise exchange: contiguous ``send_chunks[p]`` goes to rank p, and rank p's chunk
    for this rank lands in ``recv_chunks[p]`` (any sizes, even empty; this rank's own two
    chunks must have the same size). Sends are asynchronous, so every rank sends to all
    its peers (rank r+1 first), then receives from all (rank r-1 first): no rank waits
    on a peer that is itself waiting.

    Each rank's first message to a peer says how many elements it sends there and how
    many it expects back, so both ranks of a pair that disagree fail before taking any
    data, naming the sizes: ``names`` (send, receive) name the caller's arguments in the
    error, with ``send_splits``/``recv_splits`` (the caller's split sizes) when given."""
    n, r = ex.size, ex.rank
    with_splits = send_splits is not None
    send_splits = send_splits if with_splits else [c.size for c in send_chunks]
    recv_splits = recv_splits if with_splits else [c.size for c in recv_chunks]
    recv_chunks[r][...] = send_chunks[r]
    if n == 1:
        return
    for k in range(1, n):
        peer = (r + k) % n
        ex.send(peer, np.array([send_chunks[peer].size, send_splits[peer], recv_chunks[peer].size,
                                recv_splits[peer]], _SIZES_DTYPE))
        send_segmented(ex, peer, send_chunks[peer])
    disagreements, failure = [], None
    for k in range(1, n):
        peer = (r - k) % n
        if failure is None:
            try:
                theirs = ex.recv_array(peer, 4, _SIZES_DTYPE).tolist()
            except DistributedError as exc:
                failure = exc  # a peer failed: sizes already here may still show why, on this rank's pairs
        if failure is not None:
            theirs = _arrived_sizes(ex, peer)
            if theirs is None:
                continue
        mine = [send_chunks[peer].size, send_splits[peer], recv_chunks[peer].size, recv_splits[peer]]
        # (sender, receiver, (elements, split) the sender sends, (elements, split) the receiver expects)
        for pair in ((r, peer, mine[:2], theirs[2:]), (peer, r, theirs[:2], mine[2:])):
            if pair[2][0] != pair[3][0]:
                disagreements.append(_size_disagreement(ex, names, with_splits, *pair))
    if disagreements:
        raise DistributedError(f"rank {ex.world.rank}: {ex.describe()}: ranks disagree about sizes: "
                               + "; ".join(disagreements))
    if failure is not None:
        raise failure
    for k in range(1, n):
        peer = (r - k) % n
        recv_segmented(ex, peer, recv_chunks[peer])
    ex.finish()


def _arrived_sizes(ex, peer):
    """``peer``'s size message for this all_to_all if it has already arrived, else None;
    taken without waiting, for the error of a rank that heard of a failure first."""
    found = ex.transport.take(ex.group_id, [ex.global_rank(peer)], "coll")
    if found is None:
        return None
    _, header, payload = found
    expect = ex.expect(0, 4 * _SIZES_DTYPE.itemsize)
    if (header["seq"], header["seg"], header["nbytes"]) != (ex.seq, 0, expect["nbytes"]) or \
            wire.mismatch(header, expect, ex.world.rank, ex.seq) is not None:
        return None
    return np.frombuffer(payload, _SIZES_DTYPE, count=4).tolist()


def _size_disagreement(ex, names, with_splits, src, dst, sent, expected):
    """'rank 0 sends 6 elements to rank 1 (input_split_sizes[1] = 2), rank 1 expects 3
    (output_split_sizes[0] = 1)': group indexes in brackets, global ranks in words."""
    sent_split = f" = {sent[1]}" if with_splits else ""
    expected_split = f" = {expected[1]}" if with_splits else ""
    return (f"rank {ex.global_rank(src)} sends {sent[0]} elements to rank {ex.global_rank(dst)} "
            f"({names[0]}[{dst}]{sent_split}), rank {ex.global_rank(dst)} expects {expected[0]} "
            f"({names[1]}[{src}]{expected_split})")

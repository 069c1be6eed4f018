"""bfloat16 without a NumPy bfloat16: float32 rounded to bfloat16 (round to nearest,
ties to even, as torch's ``.to(torch.bfloat16)``) and kept as its 16 bits in a uint16
array, those bits back to float32, and ``bf16_all_reduce``, a sum of such arrays
across a group whose every partial sum is rounded to bfloat16, as a bfloat16 ring
all-reduce's are (torch adds two bfloat16 values in float32 and rounds the sum).

The library's all-reduce cannot add bit patterns, so ``bf16_all_reduce`` is a ring
of its own: a reduce-scatter over ``isend``/``irecv`` (each hop decodes, adds in
float32, rounds), then ``all_gather_into_tensor`` of the reduced chunks. It moves
what a 16-bit ring all-reduce moves, 2(n-1)/n x 2 bytes per element and rank. The
bits travel as int16 (the same 16 bits; uint16 is not a wire dtype).
"""

from ... import collective_ops, p2p
from ....backend import array_module

__all__ = ["to_bfloat16_bits", "from_bfloat16_bits", "round_to_bfloat16", "bf16_all_reduce"]


def to_bfloat16_bits(x):
    """The bfloat16 nearest to each float32 of ``x`` (ties to even; NaN stays a quiet NaN),
    as uint16 bit patterns: the top 16 bits of the rounded float32."""
    xp = array_module(x)
    bits = xp.ascontiguousarray(x, dtype=xp.float32).view(xp.uint32)
    rounded = (bits + (xp.uint32(0x7FFF) + ((bits >> 16) & xp.uint32(1)))) >> 16
    nan = (bits & xp.uint32(0x7FFFFFFF)) > xp.uint32(0x7F800000)
    quiet = (bits >> 16) | xp.uint32(0x0040)
    return xp.where(nan, quiet, rounded).astype(xp.uint16)


def from_bfloat16_bits(bits):
    """float32 values of bfloat16 bit patterns (exact: bfloat16 is float32's top half)."""
    xp = array_module(bits)
    return (xp.asarray(bits, dtype=xp.uint16).astype(xp.uint32) << 16).view(xp.float32)


def round_to_bfloat16(x):
    """``x`` rounded to bfloat16 precision, as float32."""
    return from_bfloat16_bits(to_bfloat16_bits(x))


def _add(a_bits, b_bits):
    return to_bfloat16_bits(from_bfloat16_bits(a_bits) + from_bfloat16_bits(b_bits))


def bf16_all_reduce(bits, group=None):
    """Sum 1-D uint16 array ``bits`` of bfloat16 values across ``group`` in place.

    The reduce-scatter runs now (rank r ends holding chunk r, summed over the ring
    starting at rank r+1: ((x[r+1] + x[r+2]) + ...) + x[r], each sum rounded); the
    all-gather that shares the chunks is started and its ``Work`` returned (None when
    it already ran, or for a group of one): ``bits`` holds the sum once it completes."""
    n = collective_ops.get_world_size(group)
    if n == 1:
        return None
    xp = array_module(bits)
    r = collective_ops.get_rank(group)
    left = collective_ops.get_global_rank(group, (r - 1) % n)
    right = collective_ops.get_global_rank(group, (r + 1) % n)
    m = -(-bits.size // n)
    padded = xp.zeros(n * m, xp.uint16)
    padded[:bits.size] = bits
    chunks = padded.reshape(n, m)
    incoming = xp.empty(m, xp.uint16)
    # isend copies what it sends, so chunks may be updated while it is on its way.
    sends = [p2p.isend(chunks[(r - 1) % n].view(xp.int16), right, group)]
    for k in range(n - 1):
        c = (r - k - 2) % n
        p2p.recv(incoming.view(xp.int16), left, group)
        chunks[c] = _add(chunks[c], incoming)
        if k < n - 2:
            sends.append(p2p.isend(chunks[c].view(xp.int16), right, group))
    for work in sends:
        work.wait()
    mine = chunks[r].copy()
    gathered = padded.view(xp.int16)
    work = collective_ops.all_gather_into_tensor(gathered, mine.view(xp.int16), group=group, async_op=True)
    return _Gathered(work, padded, bits)


class _Gathered:
    """The all-gather's Work; ``wait()`` also copies the sum into the caller's array."""

    def __init__(self, work, padded, bits):
        self._work, self._padded, self._bits = work, padded, bits

    def wait(self, timeout=None):
        self._work.wait(timeout)
        self._bits[...] = self._padded[:self._bits.size]
        return True

    def is_completed(self):
        return self._work.is_completed()


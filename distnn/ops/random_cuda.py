"""numpy's PCG64 stream computed on the GPU: ``Generator.random`` (float32 and float64)
and dropout's scaled keep-mask drawn by a kernel, the very numbers the host would
have drawn, with the host generator then advanced past them as if it had.

distnn draws random numbers from a host ``numpy.random.Generator`` (PCG64) so a seed
gives the same values on CPU and GPU. Drawing on the host and copying to the GPU
cost the Transformer LM about 15 ms of its 77 ms step on an H200 (1.8M numbers a
layer); PCG64 is a 128-bit LCG, so the state after any number of steps is a
jump-ahead (Brown's, as ``PCG64.advance``) away, and each thread starts its own run
of the stream. A 64-bit output gives a float64 (its top 53 bits) or two float32s
(low half first, the top 24 bits of each half), with numpy's buffered half: a
float32 draw of odd length leaves the last output's high half for the next one.
"""

import numpy as np

from ..backend import _import_cupy
from .cuda_source import Source, index_type

_MASK64 = (1 << 64) - 1
_MULTIPLIER = (2549297995355413924 << 64) + 4865540595714422341  # numpy's PCG64 (PCG_DEFAULT_MULTIPLIER_128)
_CHUNK = 8  # 64-bit outputs a thread makes after each jump

_SOURCE = Source(f"#define CHUNK {_CHUNK}\n" + r"""
typedef unsigned long long u64;
struct u128 { u64 hi, lo; };

__device__ __forceinline__ u128 u128_of(u64 hi, u64 lo) { u128 r; r.hi = hi; r.lo = lo; return r; }

__device__ __forceinline__ u64 mul_hi64(u64 a, u64 b) {
#ifdef __CUDACC__
    return __umul64hi(a, b);
#else
    return (u64)(((unsigned __int128)a * b) >> 64);
#endif
}

// Products and sums mod 2**128.
__device__ __forceinline__ u128 mul128(u128 a, u128 b) {
    return u128_of(mul_hi64(a.lo, b.lo) + a.lo * b.hi + a.hi * b.lo, a.lo * b.lo);
}
__device__ __forceinline__ u128 add128(u128 a, u128 b) {
    u64 lo = a.lo + b.lo;
    return u128_of(a.hi + b.hi + (lo < a.lo), lo);
}

__device__ __forceinline__ u128 pcg_multiplier() { return u128_of(2549297995355413924ULL, 4865540595714422341ULL); }

// The state `delta` steps on (state = state * multiplier + inc per step).
__device__ u128 pcg_advance(u128 state, u128 inc, u64 delta) {
    u128 acc_mult = u128_of(0, 1), acc_plus = u128_of(0, 0), mult = pcg_multiplier(), plus = inc;
    while (delta) {
        if (delta & 1) {
            acc_mult = mul128(acc_mult, mult);
            acc_plus = add128(mul128(acc_plus, mult), plus);
        }
        plus = mul128(add128(mult, u128_of(0, 1)), plus);
        mult = mul128(mult, mult);
        delta >>= 1;
    }
    return add128(mul128(acc_mult, state), acc_plus);
}

// XSL-RR: the two halves XORed, rotated right by the state's top 6 bits.
__device__ __forceinline__ u64 pcg_output(u128 s) {
    u64 x = s.hi ^ s.lo;
    unsigned r = (unsigned)(s.hi >> 58);
    return (x >> r) | (x << ((64 - r) & 63));
}

__device__ __forceinline__ float uniform32(unsigned bits) { return (float)(bits >> 8) * (1.0f / 16777216.0f); }

// put(i, u) for the `total` numbers of numpy's Generator.random(dtype=T) from this state;
// for float32 with `skip` = 1 the first is the generator's buffered half `first`.
template <class Put>
__device__ void pcg64_fill(u64 state_hi, u64 state_lo, u64 inc_hi, u64 inc_lo, unsigned first, int skip,
                           I total, Put put) {
    const u128 state = u128_of(state_hi, state_lo), inc = u128_of(inc_hi, inc_lo), mult = pcg_multiplier();
    const int per_output = sizeof(T) == 4 ? 2 : 1;
    if (skip && blockIdx.x == 0 && threadIdx.x == 0) put((I)0, (T)uniform32(first));
    const I n = total - skip, outputs = (n + per_output - 1) / per_output;
    GRID_STRIDE_LOOP(c, (outputs + CHUNK - 1) / CHUNK) {
        u128 s = pcg_advance(state, inc, (u64)c * CHUNK);
        for (I j = c * CHUNK; j < outputs && j < (c + 1) * CHUNK; ++j) {
            s = add128(mul128(s, mult), inc);
            u64 r = pcg_output(s);
            if (per_output == 2) {
                put(skip + 2 * j, (T)uniform32((unsigned)(r & 0xffffffffULL)));
                if (2 * j + 1 < n) put(skip + 2 * j + 1, (T)uniform32((unsigned)(r >> 32)));
            } else {
                put(j, (T)((double)(r >> 11) * (1.0 / 9007199254740992.0)));
            }
        }
    }
}

extern "C" __global__ void distnn_pcg64_uniform(u64 state_hi, u64 state_lo, u64 inc_hi, u64 inc_lo,
                                                unsigned first, int skip, T* out, I total) {
    pcg64_fill(state_hi, state_lo, inc_hi, inc_lo, first, skip, total, [=](I i, T u) { out[i] = u; });
}

// dropout's noise: scale where the uniform number is below keep_below, else 0.
extern "C" __global__ void distnn_pcg64_dropout(u64 state_hi, u64 state_lo, u64 inc_hi, u64 inc_lo,
                                                unsigned first, int skip, T keep_below, T scale, T* out,
                                                I total) {
    pcg64_fill(state_hi, state_lo, inc_hi, inc_lo, first, skip, total,
               [=](I i, T u) { out[i] = u < keep_below ? scale : (T)0; });
}
""")


def _output(state):
    """PCG64's XSL-RR output of a 128-bit state (a Python int)."""
    x = ((state >> 64) ^ state) & _MASK64
    r = state >> 122
    return ((x >> r) | (x << ((64 - r) & 63))) & _MASK64


def takes(rng, dtype):
    """Whether the kernels draw ``rng``'s numbers of ``dtype``: a PCG64 numpy Generator,
    float32 or float64."""
    return np.dtype(dtype) in (np.float32, np.float64) and type(rng.bit_generator) is np.random.PCG64


def _take(rng, n, dtype):
    """The kernel's stream arguments for ``n`` numbers of ``dtype``; ``rng`` left as
    ``rng.random(n, dtype=dtype)`` would leave it."""
    bits = rng.bit_generator
    before = bits.state
    state, inc = before["state"]["state"], before["state"]["inc"]
    single = np.dtype(dtype) == np.float32
    skip = int(single and n > 0 and before["has_uint32"])
    outputs = -(-(n - skip) // 2) if single else n
    bits.advance(outputs)  # which empties the buffered half
    after = bits.state
    if single and outputs:  # numpy keeps the last output's high half, used or not
        after["has_uint32"], after["uinteger"] = (n - skip) % 2, _output(after["state"]["state"]) >> 32
    else:  # a float64 draw leaves the buffered half as it was; a one-number draw may use it
        after["has_uint32"] = int(before["has_uint32"] and not (single and n))
        after["uinteger"] = before["uinteger"]
    bits.state = after
    return (np.uint64(state >> 64), np.uint64(state & _MASK64), np.uint64(inc >> 64), np.uint64(inc & _MASK64),
            np.uint32(before["uinteger"] if skip else 0), np.int32(skip))


def _fill(kernel, rng, out, extra=()):
    """Launch ``kernel`` to fill ``out`` (a fresh C-contiguous array) from ``rng``'s next numbers."""
    stream = _take(rng, out.size, out.dtype)
    outputs = -(-out.size // 2) if out.dtype == np.float32 else out.size
    index = index_type(out)
    _SOURCE.launch(kernel, (("T", out.dtype), ("I", index)), max(-(-outputs // _CHUNK), 1) if out.size else 0,
                   stream + tuple(extra) + (out, index(out.size)))
    return out


def uniform(rng, shape, dtype, device_index):
    """``rng.random(shape, dtype=dtype)`` made on GPU ``device_index``."""
    cupy = _import_cupy()
    with cupy.cuda.Device(device_index):
        return _fill("distnn_pcg64_uniform", rng, cupy.empty(shape, dtype))


def dropout_noise(rng, shape, dtype, device_index, keep_below, scale):
    """``(rng.random(shape, dtype) < keep_below) * scale`` made on GPU ``device_index``."""
    cupy, dtype = _import_cupy(), np.dtype(dtype)
    with cupy.cuda.Device(device_index):
        return _fill("distnn_pcg64_dropout", rng, cupy.empty(shape, dtype),
                     (dtype.type(keep_below), dtype.type(scale)))

"""``select``, the ops' ``where`` by bits: the same array as numpy's where, bit for bit,
whatever the dtypes, broadcasting and special values."""

import numpy as np
import pytest

from distnn.ops import selection
from distnn.ops.selection import select

N = 40_000  # past the size where select takes the bitwise path


def _special(dtype, n, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(n).astype(dtype)
    if a.dtype.kind == "f":
        a[:6] = [np.nan, -0.0, 0.0, np.inf, -np.inf, -np.nan]
    return a


def _same(ours, theirs):
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    assert ours.tobytes() == theirs.tobytes()  # NaN payloads and signed zeros too


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_two_arrays_bit_for_bit(dtype):
    a, b = _special(dtype, N, 0), _special(dtype, N, 1)[::-1]
    cond = _special(np.float32, N, 2) > 0
    _same(select(np, cond, a, b), np.where(cond, a, b))


@pytest.mark.parametrize("a,b", [(0.0, "x"), ("x", 0), ("x", -1.5), (np.float32(2), "x"), (1, 2.5)])
def test_scalars_take_numpys_result_dtype(a, b):
    x = _special(np.float32, N, 3)
    cond = x > 0
    a, b = (x if v == "x" else v for v in (a, b))
    _same(select(np, cond, a, b), np.where(cond, a, b))


def test_broadcasting_condition_and_operands():
    rng = np.random.default_rng(4)
    cond = rng.standard_normal((200, 1)) > 0
    a = rng.standard_normal((1, 300)).astype(np.float32)
    b = rng.standard_normal((200, 300))  # float64: the result promotes
    _same(select(np, cond, a, b), np.where(cond, a, b))
    _same(select(np, cond, a, np.float32(-0.0)), np.where(cond, a, np.float32(-0.0)))


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.int64, np.uint32])
def test_integers(dtype):
    rng = np.random.default_rng(5)
    a = rng.integers(0, 1000, N).astype(dtype)
    cond = rng.random(N) > 0.5
    _same(select(np, cond, a, dtype(7)), np.where(cond, a, dtype(7)))


def test_non_contiguous_operands_and_condition():
    rng = np.random.default_rng(6)
    a = rng.standard_normal((300, 400)).astype(np.float32)[::2, ::3]
    b = rng.standard_normal((400, 150)).astype(np.float32).T
    cond = (rng.standard_normal((300, 400)) > 0)[1::2, ::3][:, :134]
    a, b = a[:, :134], b[:150, :134]
    _same(select(np, cond, a, b), np.where(cond, a, b))


def test_the_condition_and_operands_are_left_as_they_were():
    a, b = _special(np.float32, N, 7), _special(np.float32, N, 8)
    cond = a > b
    copies = [v.copy() for v in (cond, a, b)]
    select(np, cond, a, b)
    for v, c in zip((cond, a, b), copies):
        assert v.tobytes() == c.tobytes()


def test_bitwise_path_is_the_one_taken_for_large_float_arrays(monkeypatch):
    calls = []
    real = np.where
    monkeypatch.setattr(selection.np, "where", lambda *a: calls.append(1) or real(*a))
    x = _special(np.float32, N, 9)
    select(np, x > 0, x, 0.0)
    assert calls == []  # no where: the bitwise path
    select(np, x[:100] > 0, x[:100], 0.0)  # small: where's own loop
    select(np, x > 0, x.astype(bool), False)  # bool results: where
    assert calls == [1, 1]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("threads", [1, 2])
def test_masked_by_blocks_is_masked_bit_for_bit(monkeypatch, dtype, threads):
    """Big arrays go block by block, over threads: the same bits as ``masked`` on the
    whole array, NaN and signed zeros in the gradient and in the compared operand
    included, a short last block too."""
    import distnn
    from distnn import threads as threads_module
    monkeypatch.setattr(selection, "_BLOCK_ELEMENTS", 1000)
    monkeypatch.setattr(selection, "_BLOCKED_MIN_ELEMENTS", 0)
    blocks = []
    real_map = threads_module.map_chunks
    monkeypatch.setattr(threads_module, "map_chunks",
                        lambda xp, fn, parts: blocks.append(len(parts)) or real_map(xp, fn, parts))
    before = distnn.get_num_threads()
    distnn.set_num_threads(threads)
    try:
        g = _special(dtype, 7 * 5733, 10).reshape(-1, 7)
        out = np.clip(_special(dtype, g.size, 11), 0, 6).reshape(g.shape)
        out.reshape(-1)[6:12] = [np.nan, -0.0, 0.0, 6.0, 6.0, 0.0]
        keep = (out != 0) & (out != 6)
        ours = selection.masked_by(np, g, lambda o: (o != 0) & (o != 6), out)
    finally:
        distnn.set_num_threads(before)
    _same(ours, selection.masked(g, keep.copy()))
    assert blocks == [41]  # it did go by blocks: 40131 elements
    assert ours.reshape(-1)[6] == g.reshape(-1)[6] != 0  # out NaN: the gradient passes, as PyTorch's

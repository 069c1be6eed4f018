"""``all_to_all`` and ``all_to_all_single`` (distnn/distributed/all_to_all.py, and the
pairwise exchange ``collectives.all_to_all``): on in-process worlds of 1-5 ranks over
dtypes, even, uneven and empty splits, list entries of different sizes, multi-segment
chunks, async handles, Tensors, strided and aliased buffers and subgroups, every result
equal to numpy's; argument errors raised before anything is sent; ranks that disagree
about a pair's sizes fail on both ranks of the pair, naming them and the sizes. Across
real processes, every case gives exactly what torch's gloo gives for the same inputs
(workers/exchanges.py)."""

import sys

import numpy as np
import pytest

import distnn
import distnn.distributed as dist
from distnn.distributed import collectives
from distnn.distributed.exchange import Exchange
from distnn.distributed.inprocess import run_threads
from multiproc import REPO

sys.path.insert(0, str(REPO / "tests" / "distributed" / "workers"))
from exchange_oracle import assert_same_as_torch, outcome, run_both, values  # noqa: E402

DTYPES = ("float32", "float64", "float16", "int64", "int32", "int8", "uint8", "bool")
WORLD_SIZES = (1, 2, 3, 4, 5)
SEG = collectives.SEGMENT_BYTES
TIMEOUT = 10.0  # the in-process group timeout: a rank that waits this long instead of failing fails the test


def split_table(pattern, world):
    """``table[i][j]``: the rows rank i sends to rank j."""
    if pattern == "even":
        return [[2] * world for _ in range(world)]
    if pattern == "uneven":  # zeros among them, and i -> j differs from j -> i
        return [[(i + 2 * j) % 3 for j in range(world)] for i in range(world)]
    if pattern == "one_sender":  # only rank 0 sends anything (to everyone but itself)
        return [[(3 if j else 0) if i == 0 else 0 for j in range(world)] for i in range(world)]
    return [[0] * world for _ in range(world)]  # "empty"


def expected_single(table, rank, world, dtype, row_shape, salt=0):
    """What rank ``rank`` receives: rank p's rows for it, in rank order."""
    row = int(np.prod(row_shape))
    parts = []
    for p in range(world):
        x = values(p, sum(table[p]) * row, dtype, salt).reshape(sum(table[p]), *row_shape)
        start = sum(table[p][:rank])
        parts.append(x[start:start + table[p][rank]])
    return np.concatenate(parts)


# --- results ---------------------------------------------------------------------------------

@pytest.mark.parametrize("pattern", ["even", "uneven", "one_sender", "empty"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("world", WORLD_SIZES)
def test_all_to_all_single_matches_numpy(world, dtype, pattern):
    table = split_table(pattern, world)
    row_shape = (3,) if pattern != "uneven" else (2, 2)

    def body(rank):
        sends, receives = table[rank], [table[p][rank] for p in range(world)]
        x = values(rank, sum(sends) * int(np.prod(row_shape)), dtype).reshape(sum(sends), *row_shape)
        before = x.copy()
        y = np.full((sum(receives), *row_shape), 1, dtype)
        if pattern == "even":  # no split sizes: dim 0 split equally
            assert dist.all_to_all_single(y, x) is None
        else:
            assert dist.all_to_all_single(y, x, output_split_sizes=receives, input_split_sizes=sends) is None
        assert np.array_equal(x, before), "all_to_all_single changed its input"
        return y

    for rank, got in enumerate(run_threads(world, body, timeout=TIMEOUT)):
        expected = expected_single(table, rank, world, dtype, row_shape)
        assert got.dtype == expected.dtype and got.shape == expected.shape, (rank, got.shape, expected.shape)
        assert np.array_equal(got, expected), f"rank {rank}: {got} != {expected}"


@pytest.mark.parametrize("dtype", ["float32", "int64", "bool", "float16"])
@pytest.mark.parametrize("world", WORLD_SIZES)
def test_all_to_all_list_entries_of_any_size(world, dtype):
    """Entry i -> j has (i + j) % 3 * 2 elements (zeros among them) and its own shape on
    each side: only the element counts of a pair must agree."""
    def size(i, j):
        return (i + j) % 3 * 2

    def body(rank):
        ins = [distnn.from_numpy(values(rank, size(rank, p), dtype, salt=p)) for p in range(world)]
        outs = [np.zeros((size(p, rank) // 2, 2), dtype) for p in range(world)]
        assert dist.all_to_all(outs, ins) is None
        return outs

    for rank, outs in enumerate(run_threads(world, body, timeout=TIMEOUT)):
        for p, got in enumerate(outs):
            expected = values(p, size(p, rank), dtype, salt=rank).reshape(-1, 2)
            assert np.array_equal(got, expected), f"rank {rank} from {p}: {got} != {expected}"


@pytest.fixture
def sent_payloads(monkeypatch):
    """Every payload an Exchange sent, as (op, sender rank, receiver group rank, bytes)."""
    sent = []
    original = Exchange.send

    def spy(ex, dst, payload):
        sent.append((ex.op, ex.rank, dst, payload.nbytes))
        return original(ex, dst, payload)
    monkeypatch.setattr(Exchange, "send", spy)
    return sent


LARGE = [(2, "float32", int(2.5 * SEG / 4)), (3, "int64", int(1.5 * SEG / 8) + 1), (4, "uint8", 3 * SEG + 5),
         (5, "float16", SEG // 2)]  # (world, dtype, rows per pair): 1 to 3 segments and a short one


@pytest.mark.parametrize("world, dtype, rows", LARGE)
@pytest.mark.parametrize("async_op", [False, True], ids=["sync", "async"])
def test_large_chunks_travel_in_segments(world, dtype, rows, async_op, sent_payloads):
    """Chunks of several MiB (rank 0's chunk for rank 1 none at all): every message at most
    SEGMENT_BYTES, a chunk in ceil(bytes / SEGMENT_BYTES) of them after its size message."""
    table = [[0 if (i, j) == (0, 1) else rows for j in range(world)] for i in range(world)]

    def body(rank):
        sends, receives = table[rank], [table[p][rank] for p in range(world)]
        x = values(rank, sum(sends), dtype)
        y = np.zeros(sum(receives), dtype)
        work = dist.all_to_all_single(y, x, receives, sends, async_op=async_op)
        if async_op:
            assert isinstance(work, dist.Work) and work.wait() is True and work.is_completed()
        return y

    for rank, got in enumerate(run_threads(world, body, timeout=60)):
        assert np.array_equal(got, expected_single(table, rank, world, dtype, ()))
    chunk_bytes = rows * np.dtype(dtype).itemsize
    for src in range(world):
        for dst in range(world):
            if src != dst:
                sizes = [n for op, s, d, n in sent_payloads if (op, s, d) == ("all_to_all_single", src, dst)]
                data = 0 if (src, dst) == (0, 1) else chunk_bytes
                assert sizes[0] == 32 and sum(sizes[1:]) == data, (src, dst, sizes[:3])
                assert len(sizes) - 1 == max(1, -(-data // SEG)) and max(sizes) <= SEG, (src, dst, len(sizes))


def test_tensors_strided_outputs_and_aliasing():
    """A Tensor output is written in place (its version counts the write); a strided view
    is received in a copy and written back; an output that is the input itself, or a list
    that reuses its input tensors as outputs, gets the right data."""
    world = 3

    def body(rank):
        x = values(rank, world * 4, "float32").reshape(world * 2, 2)
        t = distnn.from_numpy(np.zeros_like(x))
        version = t._version
        dist.all_to_all_single(t, distnn.from_numpy(x))
        assert t._version > version
        base = np.zeros((world * 2, 2, 2), "float32")
        dist.all_to_all_single(base[:, :, 0], x)
        same = x.copy()
        dist.all_to_all_single(same, same)
        listed = [values(rank, 3, "int32", salt=p) for p in range(world)]
        dist.all_to_all(listed, listed)
        return t.numpy(), base, same, listed

    for rank, (t, base, same, listed) in enumerate(run_threads(world, body, timeout=TIMEOUT)):
        expected = expected_single([[2] * world] * world, rank, world, "float32", (2,))
        assert np.array_equal(t, expected) and np.array_equal(same, expected)
        assert np.array_equal(base[:, :, 0], expected) and not base[:, :, 1].any()
        for p, got in enumerate(listed):
            assert np.array_equal(got, values(p, 3, "int32", salt=rank)), (rank, p)


def test_subgroup_and_ranks_outside_it():
    """In a group of world ranks 1, 2 and 4 (group ranks 0-2) chunks go by group rank; the
    others take no part, and both groups keep working."""
    members = [1, 2, 4]

    def body(rank):
        group = dist.new_group(members)
        out = None
        if rank in members:
            me = members.index(rank)
            x = np.arange(3, dtype=np.int64) + 10 * me
            out = np.zeros(3, np.int64)
            dist.all_to_all_single(out, x, group=group)
        total = np.ones(1, np.int64)
        dist.all_reduce(total)
        return out, int(total[0])

    for rank, (out, total) in enumerate(run_threads(5, body, timeout=TIMEOUT)):
        assert total == 5
        if rank in members:
            me = members.index(rank)
            assert out.tolist() == [10 * p + me for p in range(3)], (rank, out)


# --- errors ---------------------------------------------------------------------------------

BAD_CALLS = {  # name: (call on a world of 3, the ValueError's text)
    "split_count": (lambda: dist.all_to_all_single(np.zeros(3), np.zeros(3), [1, 1, 1], [1, 2]),
                    r"input_split_sizes of length 3 .*Actual: 2"),
    "split_sum": (lambda: dist.all_to_all_single(np.zeros(3), np.zeros(3), [1, 1, 1], [1, 1, 2]),
                  r"summing to input's dim 0 \(3\), Actual: \[1, 1, 2\] \(sum 4\)"),
    "negative_split": (lambda: dist.all_to_all_single(np.zeros(3), np.zeros(3), [1, 1, 1], [2, -1, 2]),
                       r"non-negative"),
    "indivisible": (lambda: dist.all_to_all_single(np.zeros(4), np.zeros(3)), r"output's dim 0 divisible by "
                    r"the group size 3 .*Actual: 4"),
    "dtype": (lambda: dist.all_to_all_single(np.zeros(3, np.int64), np.zeros(3)), r"output of dtype float64 "
              r"\(as input\), Actual: int64"),
    "zero_dim": (lambda: dist.all_to_all_single(np.zeros(3), np.zeros(())), r"input with at least one dimension"),
    "own_part": (lambda: dist.all_to_all_single(np.zeros(6), np.zeros(3), [2, 2, 2], [1, 1, 1]),
                 r"output_split_sizes\[\d\] to hold the 1 elements"),
    "list_length": (lambda: dist.all_to_all([np.zeros(1)] * 2, [np.zeros(1)] * 3),
                    r"output_tensor_list of length 3 .*Actual: 2"),
    "list_dtype": (lambda: dist.all_to_all([np.zeros(1)] * 3, [np.zeros(1), np.zeros(1, np.float32), np.zeros(1)]),
                   r"input_tensor_list\[1\] of dtype float64 .*Actual: float32"),
    "list_own": (lambda: dist.all_to_all([np.zeros(2)] * 3, [np.zeros(1)] * 3),
                 r"output_tensor_list\[\d\] of 1 elements"),
    "list_type": (lambda: dist.all_to_all([np.zeros(1)] * 3, [[0.0]] * 3), r"input_tensor_list\[0\] to be a "
                  r"distnn Tensor or a NumPy or CuPy array, Actual: list"),
}


@pytest.mark.parametrize("name", sorted(BAD_CALLS))
def test_argument_errors_are_raised_before_anything_is_sent(name):
    call, message = BAD_CALLS[name]

    def body(rank):
        with pytest.raises((ValueError, TypeError), match=message):
            call()
        y = np.zeros(3)
        dist.all_to_all_single(y, np.full(3, float(rank)))
        return y
    for rank, y in enumerate(run_threads(3, body, timeout=TIMEOUT)):
        assert y.tolist() == [0.0, 1.0, 2.0], f"rank {rank}: the group no longer works: {y}"


MISMATCHES = [  # (world, {rank: its input_split_sizes when not the agreed all-ones}, expected texts per rank)
    pytest.param(2, {0: [0, 2]}, {0: ["rank 0 sends 2 elements to rank 1 (input_split_sizes[1] = 2), rank 1 "
                                      "expects 1 (output_split_sizes[0] = 1)"]}, id="w2-more"),
    pytest.param(3, {2: [1, 2, 0]}, {2: ["rank 2 sends 2 elements to rank 1 (input_split_sizes[1] = 2), rank 1 "
                                         "expects 1 (output_split_sizes[2] = 1)"]}, id="w3-empty-own-part"),
    pytest.param(4, {1: [1, 1, 2, 0], 3: [1, 1, 1, 1]},
                 {1: ["rank 1 sends 2 elements to rank 2 (input_split_sizes[2] = 2), rank 2 expects 1",
                      "rank 1 sends 0 elements to rank 3 (input_split_sizes[3] = 0), rank 3 expects 1"]},
                 id="w4-two-pairs"),
    pytest.param(5, {0: [1, 1, 1, 2, 0], 4: [0, 1, 1, 1, 2]},
                 {0: ["rank 0 sends 2 elements to rank 3 (input_split_sizes[3] = 2), rank 3 expects 1",
                      "rank 0 sends 0 elements to rank 4 (input_split_sizes[4] = 0), rank 4 expects 1"],
                  4: ["rank 4 sends 0 elements to rank 0 (input_split_sizes[0] = 0), rank 0 expects 1"]},
                 id="w5-both-directions"),
]


@pytest.mark.parametrize("world, odd, texts", MISMATCHES)
def test_ranks_that_disagree_about_sizes_fail_naming_the_pair(world, odd, texts):
    """Every rank expects one row from each; the odd ranks send other split sizes (keeping
    their own part where it stays consistent locally). Both ranks of each disagreeing pair
    raise a DistributedError with the same sentence, fast; the others fail by the next
    call, as after any failure."""
    def call(rank):
        sends = odd.get(rank, [1] * world)
        out_rows = sends[rank] + world - 1  # its own part as it sends it, one row from each peer
        receives = [sends[rank] if p == rank else 1 for p in range(world)]
        dist.all_to_all_single(np.zeros(out_rows, np.float32), np.zeros(sum(sends), np.float32), receives, sends)
        dist.barrier()

    results = run_threads(world, outcome(call), timeout=TIMEOUT)
    for rank, (error, elapsed) in enumerate(results):
        context = f"rank {rank}: {error!r} after {elapsed:.1f}s"
        assert isinstance(error, dist.DistributedError), context
        assert elapsed < TIMEOUT / 2, context
    for culprit, sentences in texts.items():
        for sentence in sentences:
            pair = {culprit} | {int(w) for w in sentence.split(" to rank ")[1].split(" ")[:1]}
            for rank in pair:
                assert sentence in str(results[rank][0]), f"rank {rank}: {results[rank][0]}"


def test_ranks_that_call_different_exchanges_or_dtypes_fail():
    def call(rank):
        if rank == 1:
            dist.all_to_all([np.zeros(1, np.float32)] * 3, [np.zeros(1, np.float32)] * 3)
        else:
            dist.all_to_all_single(np.zeros(3, np.float32 if rank == 0 else np.float64),
                                   np.zeros(3, np.float32 if rank == 0 else np.float64))
        dist.barrier()
    results = run_threads(3, outcome(call), timeout=TIMEOUT)
    for rank, (error, _) in enumerate(results):
        assert isinstance(error, dist.DistributedError), f"rank {rank}: {error!r}"
    assert "op differs" in str(results[1][0]) or "dtype differs" in str(results[1][0]), results[1][0]
    assert any(f in str(results[0][0]) for f in ("op differs", "dtype differs")), results[0][0]


# --- against torch's gloo ----------------------------------------------------------------------

@pytest.mark.timeout(240)
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_same_results_as_torch_gloo(world, tmp_path):
    """Even, uneven (zeros among them) and empty splits, list entries, a 2.5 MiB-per-pair
    async exchange, in seven dtypes: bit-identical to torch's gloo on every rank."""
    pytest.importorskip("torch")
    assert_same_as_torch(run_both("all_to_all", world, tmp_path), min_cases=23)

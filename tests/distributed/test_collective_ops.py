"""Every torch.distributed function (distnn/distributed/collective_ops.py) on 1-4
real processes: results against numpy on the gathered inputs (exact for integers,
float round-off for floats), bit-identical on every rank, for every dtype, sizes
0/1/7/1000003, Tensors and numpy arrays, non-contiguous views, async handles,
point to point, objects and subgroups. The worker is workers/collectives.py."""

import os
import uuid
from datetime import timedelta

import numpy as np
import pytest

import distnn
import distnn.distributed as dist
from multiproc import check_cases, free_port, run_ranks, shm_files

WORKER = "tests/distributed/workers/collectives.py"
CORE = "all_reduce,broadcast,gather,scatter,barrier,p2p,async,groups,noncontiguous,local_errors"
LARGE = 1000003


@pytest.mark.timeout(180)
@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_every_collective_matches_numpy(world_size, tmp_path):
    results = run_ranks(WORKER, world_size, [CORE, LARGE, tmp_path], timeout=150)
    hashes = check_cases(results, min_cases=500)
    # Guard against a section silently running nothing.
    for prefix in ("shaped.0d", "shaped.3x4x5", "all_reduce.avg.float16", f"all_reduce.sum.bool.n{LARGE}",
                   "broadcast.from0.uint8.n7", f"broadcast.from{world_size - 1}.float32.n{LARGE}",
                   "all_gather.int8.n0", "all_gather_into_tensor.stacked", "gather.to0.",
                   "scatter.from0.bool.n7", "reduce_scatter_tensor.product.int8",
                   "reduce_scatter.avg.float64", f"reduce.to{world_size - 1}", "barrier.orders", "send.to_self",
                   "async.mixed",
                   "groups.n100003", "noncontiguous.tensor.float16", "local_errors"):
        assert any(name.startswith(prefix) for name in hashes), f"no case named {prefix}*"
    if world_size > 1:
        for prefix in ("sendrecv.ring.bool.n0", "isend_irecv.int32.n7", "recv_any.float64", "p2p.ordered"):
            assert any(name.startswith(prefix) for name in hashes), f"no case named {prefix}*"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("world_size", [2, 3])
def test_point_to_point_patterns(world_size):
    """Posted receives: all-to-all posting every irecv first, an irecv pending across
    collectives, posted receives matched in posting order, receives from any rank of
    interleaved multi-segment messages, and p2p inside a subgroup."""
    results = run_ranks(WORKER, world_size, ["p2p_patterns"], timeout=45, env={"DISTNN_TEST_TIMEOUT": "10"})
    hashes = check_cases(results, min_cases=5)
    assert "p2p.any_source_segmented" in hashes


@pytest.mark.timeout(60)
@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_object_collectives(world_size):
    results = run_ranks(WORKER, world_size, ["objects"], timeout=45)
    check_cases(results, min_cases=world_size + 1)


@pytest.mark.timeout(60)
def test_clean_job_leaves_no_files_behind(tmp_path):
    # A token of its own: shared-memory file names derive from the job id (token and address),
    # and crashed jobs of other tests may have left files under the shared test token.
    port, token = free_port(), f"clean-{uuid.uuid4().hex}"
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    hashes = check_cases(run_ranks(WORKER, 2, ["smoke", 300000], timeout=45, port=port, token=token,
                                   env={"DISTNN_RUNTIME_DIR": str(runtime)}), min_cases=6)
    assert "all_reduce.sum.float32.n300000" in hashes  # large enough for shared memory
    # Each rank keeps its ipc:// socket in a private folder of its own under DISTNN_RUNTIME_DIR.
    assert sorted(os.listdir(runtime)) == [], "ipc folders left behind"
    assert shm_files(token, port) == []


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_64_mib():
    elements = 64 * 1024 * 1024 // 4  # float32: 64 MiB per rank
    results = run_ranks(WORKER, 3, ["smoke", elements], timeout=240)
    hashes = check_cases(results, min_cases=6)
    assert f"all_reduce.sum.float32.n{elements}" in hashes


# --- in this process: the API around the collectives -------------------------------------------

def test_object_encoding_keeps_tuples_and_plain_base_types():
    import collections
    import enum

    from distnn.distributed.object_collectives import _pack, _unpack
    Pair = collections.namedtuple("Pair", "a b")

    class Level(enum.IntEnum):
        HIGH = 3
    obj = {"t": (1, "x", (1.5, [2, (None,)])), "pair": Pair(1, 2), "ordered": collections.OrderedDict(a=1),
           "level": Level.HIGH, "flag": True, "list": [1, (2,)], "key": {(1, 2): "tuple key"}}
    out = _unpack(_pack(obj))
    assert out == {"t": (1, "x", (1.5, [2, (None,)])), "pair": (1, 2), "ordered": {"a": 1}, "level": 3,
                   "flag": True, "list": [1, (2,)], "key": {(1, 2): "tuple key"}}
    assert type(out["t"][2]) is tuple and type(out["list"]) is list and type(out["pair"]) is tuple
    assert type(out["flag"]) is bool and type(out["level"]) is int and type(out["ordered"]) is dict
    with pytest.raises(TypeError, match="cannot serialise a set"):
        _pack({"s": {1, 2}})


def test_object_decoding_refuses_unknown_extension_types():
    import msgpack

    from distnn.distributed.object_collectives import _unpack
    with pytest.raises(dist.DistributedError, match="unknown msgpack extension type 9"):
        _unpack(np.frombuffer(msgpack.packb(msgpack.ExtType(9, b"")), np.uint8))


@pytest.fixture
def world_of_one():
    dist.init_process_group(init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1,
                            timeout=timedelta(seconds=10))
    yield
    dist.destroy_process_group()


def test_before_init():
    assert dist.is_available() and not dist.is_initialized()
    with pytest.raises(RuntimeError, match="init_process_group"):
        dist.get_rank()
    with pytest.raises(RuntimeError, match="init_process_group"):
        dist.all_reduce(np.zeros(3, np.float32))


@pytest.mark.parametrize("kwargs, error", [
    ({"backend": "nccl"}, ValueError),
    ({"init_method": "file:///tmp/rendezvous"}, ValueError),
    ({"rank": 1, "world_size": 1}, ValueError),
])
def test_bad_init_arguments(kwargs, error):
    kwargs = dict({"init_method": "tcp://127.0.0.1:1", "rank": 0, "world_size": 1}, **kwargs)
    with pytest.raises(error):
        dist.init_process_group(**kwargs)
    assert not dist.is_initialized()


@pytest.mark.timeout(30)
def test_single_process_group(world_of_one):
    assert dist.is_initialized() and dist.get_backend() == "zmq"
    assert (dist.get_rank(), dist.get_world_size()) == (0, 1)
    with pytest.raises(RuntimeError, match="twice"):
        dist.init_process_group(init_method="tcp://127.0.0.1:1", rank=0, world_size=1)
    t = distnn.tensor([1.5, -2.0])
    before = t._version
    assert dist.all_reduce(t) is None
    assert t.tolist() == [1.5, -2.0] and t._version > before
    work = dist.all_reduce(t, op=dist.ReduceOp.MAX, async_op=True)
    assert isinstance(work, dist.Work) and work.wait() is True and work.is_completed()
    sub = dist.new_group([0])
    assert dist.get_world_size(sub) == 1 and dist.get_rank(sub) == 0
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        dist.new_group([0, 1])


@pytest.mark.timeout(30)
def test_destroy_then_use(world_of_one):
    dist.destroy_process_group()
    assert not dist.is_initialized()
    with pytest.raises(RuntimeError, match="init_process_group"):
        dist.barrier()
    dist.destroy_process_group()  # a second destroy is harmless

"""``Work`` (distnn/distributed/work.py): an asynchronous collective's handle, and
``get_future()``, which completes with the collective's output tensors as torch's."""

import numpy as np
import pytest

import distnn
import distnn.distributed as dist
from distnn.distributed.inprocess import run_threads


def _all_reduce(rank, t):
    return dist.all_reduce(t, async_op=True), [t]


def _broadcast(rank, t):
    return dist.broadcast(t, src=1, async_op=True), [t]


def _all_gather(rank, t):
    outs = [distnn.zeros(3) for _ in range(dist.get_world_size())]
    return dist.all_gather(outs, t, async_op=True), outs


def _all_to_all_single(rank, t):
    out = distnn.zeros(3 * dist.get_world_size())
    return dist.all_to_all_single(out, t.repeat(dist.get_world_size()), async_op=True), [out]


@pytest.mark.parametrize("collective", [_all_reduce, _broadcast, _all_gather, _all_to_all_single],
                         ids=lambda f: f.__name__.strip("_"))
def test_get_future_completes_with_the_output_tensors(collective):
    def body(rank):
        t = distnn.full((3,), float(rank + 1))
        work, outputs = collective(rank, t)
        future = work.get_future()
        doubled = future.then(lambda fut: [o * 2 for o in fut.value()]).wait()
        values = future.value()
        assert len(values) == len(outputs) and all(v is o for v, o in zip(values, outputs)), (
            f"rank {rank}: Expect: the output tensors themselves, Actual: {values}")
        return [o.numpy().copy() for o in outputs], [d.numpy() for d in doubled]
    for rank, (outputs, doubled) in enumerate(run_threads(3, body)):
        for o, d in zip(outputs, doubled):
            np.testing.assert_array_equal(d, 2 * o, err_msg=f"rank {rank}")


def test_work_states_and_errors():
    def body(rank):
        t = distnn.ones(4)
        work = dist.all_reduce(t, async_op=True)
        assert work.wait() is True and work.is_completed() and work.is_success() and work.exception() is None
        assert dist.all_reduce(t) is None  # synchronous: no handle
        return t.tolist()
    assert run_threads(2, body) == [[4.0] * 4, [4.0] * 4]

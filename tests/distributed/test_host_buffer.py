"""HostBuffer's staged copies (distnn/distributed/host_buffer.py), the way a GPU
tensor's all-reduce goes: out to pinned memory on a side stream without the caller
waiting, read by the communication thread only once it has landed, and copied back
before the work completes. Here a stand-in "GPU array" whose staged copy lands only
when waited for (until then the host buffer holds NaNs), on in-process ranks; the real
copies are checked by the GPU DDP tests (test_ddp.py, on a GPU)."""

import threading

import numpy as np

import distnn.distributed as dist
from distnn import backend
from distnn.distributed.inprocess import run_threads


class FakeGpuArray(np.ndarray):
    pass


def test_a_staged_all_reduce_reads_the_copy_only_once_it_has_landed(monkeypatch):
    events = []
    lock = threading.Lock()

    def stage(array):
        host = np.full(array.size, np.nan, array.dtype)  # not landed yet

        def wait():
            with lock:
                events.append(("landed", threading.current_thread().name))
            host[...] = np.asarray(array).reshape(-1)
        return host, wait

    def unstage(array, host):
        with lock:
            events.append(("back", threading.current_thread().name))
        np.asarray(array)[...] = host.reshape(array.shape)

    monkeypatch.setattr(backend, "is_gpu_array", lambda a: isinstance(a, FakeGpuArray))
    monkeypatch.setattr(backend, "stage_to_host", stage)
    monkeypatch.setattr(backend, "unstage_from_host", unstage)

    def rank_fn(rank):
        arrays = [(np.arange(6, dtype=np.float32).reshape(2, 3) * (rank + 1 + i)).view(FakeGpuArray)
                  for i in range(3)]
        caller = threading.current_thread().name
        works = [dist.all_reduce(a, async_op=True) for a in arrays]
        for w in works:
            w.wait()
        return caller, [np.asarray(a).copy() for a in arrays]

    results = run_threads(2, rank_fn)
    for i in range(3):
        want = np.arange(6, dtype=np.float32).reshape(2, 3) * ((1 + i) + (2 + i))
        for _, arrays in results:
            np.testing.assert_array_equal(arrays[i], want)
    callers = {caller for caller, _ in results}
    assert [kind for kind, _ in events].count("landed") == 6 and [kind for kind, _ in events].count("back") == 6
    assert not any(name in callers for _, name in events)  # waited for on the communication threads

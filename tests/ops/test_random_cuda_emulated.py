"""ops/random_cuda.py's kernels run on the CPU (tests/cuda_emulation.py): the numbers
numpy's PCG64 Generator would have drawn, bit for bit, and the generator left in the
very state its own draw leaves, buffered float32 half included; and random.py's GPU
branches reaching them (CuPy stood in for by numpy)."""

import numpy as np
import pytest

from cuda_emulation import HAVE_COMPILER, emulated
from distnn.ops import random_cuda

pytestmark = pytest.mark.skipif(not HAVE_COMPILER, reason="needs g++")


@pytest.fixture
def gpu(monkeypatch):
    return emulated(monkeypatch)


def _generators(seed, pre_draw):
    """Two generators in one state: ``pre_draw`` float32 numbers drawn from a seed
    (an odd count leaves numpy's buffered half)."""
    pair = [np.random.Generator(np.random.PCG64(seed)) for _ in range(2)]
    for g in pair:
        g.random(pre_draw, dtype=np.float32)
    return pair


def _kernel_draw(g, n, dtype):
    return random_cuda._fill("distnn_pcg64_uniform", g, np.empty(n, dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, 2, 7, 16, 17, 1000, 20001])
@pytest.mark.parametrize("pre_draw", [0, 1, 4])
def test_uniform_is_numpys_stream(gpu, dtype, n, pre_draw):
    ours, numpys = _generators(11, pre_draw)
    got = _kernel_draw(ours, n, dtype)
    want = numpys.random(n, dtype=dtype)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got.view(f"u{got.itemsize}"), want.view(f"u{want.itemsize}"))
    assert ours.bit_generator.state == numpys.bit_generator.state


def test_a_run_of_mixed_draws_keeps_step_with_numpy(gpu):
    """Outputs split over many threads' jumps (20001 float64s: 2,501 chunks), float32
    draws of odd and even length around float64 ones, and host draws in between."""
    ours, numpys = _generators(2024, 0)
    for n, dtype in [(3, np.float32), (20001, np.float64), (5, np.float32), (1, np.float32),
                     (8, np.float64), (1, np.float32), (4, np.float32)]:
        np.testing.assert_array_equal(_kernel_draw(ours, n, dtype), numpys.random(n, dtype=dtype))
        np.testing.assert_array_equal(ours.random(3, dtype=np.float32), numpys.random(3, dtype=np.float32))
    assert ours.bit_generator.state == numpys.bit_generator.state


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("pre_draw", [0, 3])
def test_dropout_noise_is_the_cpu_formula(gpu, dtype, p, pre_draw):
    ours, numpys = _generators(7, pre_draw)
    keep_below, scale = dtype(1 - p), dtype(1) / dtype(1 - p)
    got = random_cuda._fill("distnn_pcg64_dropout", ours, np.empty((33, 31), dtype), (keep_below, scale))
    want = (numpys.random((33, 31), dtype=dtype) < 1 - p).astype(dtype) * scale
    np.testing.assert_array_equal(got, want)
    assert set(np.unique(got)) <= {0, scale} and 0 < np.count_nonzero(got) < got.size
    assert ours.bit_generator.state == numpys.bit_generator.state


def test_other_generators_and_dtypes_stay_on_the_host():
    assert random_cuda.takes(np.random.Generator(np.random.PCG64(0)), np.float32)
    assert not random_cuda.takes(np.random.Generator(np.random.Philox(0)), np.float32)
    assert not random_cuda.takes(np.random.Generator(np.random.PCG64(0)), np.float16)


class _CupyShim:
    """What random_cuda asks of CuPy (a device context and ``empty``), over numpy."""

    class cuda:
        class Device:
            def __init__(self, index):
                self.index = index

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

    empty = staticmethod(np.empty)


def test_the_gpu_entry_points_draw_the_host_generators_numbers(gpu, monkeypatch):
    """random.sample's and random.scaled_keep_mask's GPU branches, through
    random_cuda.uniform and dropout_noise: the numbers and the state the CPU gets."""
    import distnn
    from distnn import backend, random
    monkeypatch.setattr(random_cuda, "_import_cupy", lambda: _CupyShim)
    monkeypatch.setattr(backend, "move_to", lambda array, device: array)  # the arrays stand for GPU ones
    results = []
    for device in ("cpu", "cuda"):
        distnn.manual_seed(9)
        draws = [random.sample("uniform", (5, 7), np.float32, device),
                 random.sample("uniform", (4,), np.float64, device, low=-2.0, high=3.0),
                 random.scaled_keep_mask((9, 3), np.float32, device, 0.7, np.float32(1) / np.float32(0.7)),
                 random.sample("uniform", (3,), np.float32, device)]
        results.append(draws + [distnn.get_rng_state()])
    for ours, theirs in zip(*results):
        if isinstance(ours, dict):
            assert ours == theirs
        else:
            assert ours.dtype == theirs.dtype
            np.testing.assert_array_equal(ours, theirs)

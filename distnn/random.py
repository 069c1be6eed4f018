"""Random numbers: one seeded default generator (``manual_seed``) and ``Generator``
objects. Numbers come from the host generator's stream (numpy's PCG64), so the
same seed gives the same values on CPU and GPU: uniform float32/float64 numbers
and dropout's masks for a GPU are computed there from the host generator's state
(``ops/random_cuda.py``), which then moves on past them; other draws are made on
the host and copied."""

import numpy as np

from . import backend


class Generator:
    """A seedable source of random numbers, as ``torch.Generator``."""

    def __init__(self, device="cpu"):
        self.device = backend.as_device(device)
        self._seed = 67280421310721  # PyTorch's default seed, for familiarity
        self._rng = np.random.Generator(np.random.PCG64(self._seed))

    def manual_seed(self, seed):
        self._seed = int(seed)
        self._rng = np.random.Generator(np.random.PCG64(self._seed))
        return self

    def seed(self):
        return self.manual_seed(int(np.random.SeedSequence().entropy % (1 << 63))).initial_seed()

    def initial_seed(self):
        return self._seed

    def get_state(self):
        """A plain dict (msgpack/JSON-safe) that ``set_state`` restores."""
        state = self._rng.bit_generator.state
        return {"seed": self._seed, "state": str(state["state"]["state"]),
                "inc": str(state["state"]["inc"]), "has_uint32": state["has_uint32"],
                "uinteger": state["uinteger"]}

    def set_state(self, state):
        self._seed = state["seed"]
        self._rng.bit_generator.state = {
            "bit_generator": "PCG64",
            "state": {"state": int(state["state"]), "inc": int(state["inc"])},
            "has_uint32": state["has_uint32"], "uinteger": state["uinteger"]}
        return self

    @property
    def numpy(self):
        """The underlying ``numpy.random.Generator``."""
        return self._rng


default_generator = Generator()


def manual_seed(seed):
    """Seed the default generator; returns it, as PyTorch does."""
    return default_generator.manual_seed(seed)


def seed():
    return default_generator.seed()


def initial_seed():
    return default_generator.initial_seed()


def get_rng_state():
    return default_generator.get_state()


def set_rng_state(state):
    default_generator.set_state(state)


def rng(generator=None):
    return (generator or default_generator)._rng


def sample(kind, shape, dtype, device=None, generator=None, low=0.0, high=1.0):
    """Draw ``shape`` samples of ``kind`` ("uniform" in [low, high), "normal" with
    mean ``low`` and std ``high``, "exponential" with rate 1) as an array of ``dtype``
    on ``device``."""
    device = backend.as_device(device)
    if backend.capturing() and device.type == "cuda":
        raise RuntimeError("random sampling on the GPU inside a CUDA graph capture: distnn's draws start from the "
                           "host generator's state, so a replay would repeat one draw; keep dropout and random "
                           "init out of captured work (or capture a model in eval mode)")
    r = rng(generator)
    dtype = np.dtype(dtype)
    draw_dtype = dtype if dtype in (np.float32, np.float64) else np.float64
    if kind == "uniform":
        gpu = _gpu_draws(device, r, draw_dtype)
        if gpu:
            arr = gpu.uniform(r, shape, draw_dtype, device.index)
        else:
            arr = r.random(shape, dtype=draw_dtype)
        if (low, high) != (0.0, 1.0):  # in the draw's dtype on either device, as numpy with Python floats
            arr = arr * draw_dtype.type(high - low) + draw_dtype.type(low)
    elif kind == "normal":
        arr = r.standard_normal(shape, dtype=draw_dtype)
        if (low, high) != (0.0, 1.0):
            arr = arr * high + low
    elif kind == "exponential":
        arr = r.standard_exponential(shape, dtype=draw_dtype)
    else:
        raise ValueError(f"Expect: kind 'uniform', 'normal' or 'exponential', Actual: {kind!r}")
    return backend.move_to(arr.astype(dtype, copy=False), device)


def _gpu_draws(device, r, dtype):
    """ops.random_cuda where it draws ``r``'s numbers of ``dtype`` for ``device``, else None."""
    if device.type != "cuda":
        return None
    from .ops import random_cuda  # ops import this module
    return random_cuda if random_cuda.takes(r, dtype) else None


def scaled_keep_mask(shape, dtype, device, keep_below, scale, generator=None):
    """``scale`` where a uniform draw of ``dtype`` is below ``keep_below``, else 0, as
    ``dtype`` on ``device``: dropout's noise, in one kernel on a GPU."""
    device, dtype = backend.as_device(device), np.dtype(dtype)
    r = rng(generator)
    gpu = None if backend.capturing() else _gpu_draws(device, r, dtype)  # capturing: sample() says why not
    if gpu:
        return gpu.dropout_noise(r, shape, dtype, device.index, keep_below, scale)
    noise = (sample("uniform", shape, dtype, device, generator) < keep_below).astype(dtype)
    noise *= scale
    return noise


def sample_like(t, kind, a, b, generator=None):
    return sample(kind, t._data.shape, t._data.dtype, t.device, generator, a, b)

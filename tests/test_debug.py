"""Debug mode (``distnn/debug.py``): the value checks that would make the host wait for
the GPU run on the CPU always and on a GPU only in debug mode, with the same error."""

import os
import subprocess
import sys

import numpy as np
import pytest

import distnn
import distnn.nn.functional as F
from distnn import debug

gpu = pytest.mark.skipif(not distnn.cuda.is_available(), reason="needs CuPy and a CUDA GPU")


def _t(device, data):
    return distnn.tensor(data, device=device)


# each: (call on tensors made on ``device``, the error bad values raise, its message)
BAD_VALUES = {
    "cross_entropy": (lambda d: F.cross_entropy(distnn.zeros(2, 3, device=d), _t(d, [0, 3])),
                      IndexError, "Target 3 is out of bounds"),
    "embedding": (lambda d: F.embedding(_t(d, [0, 5]), distnn.zeros(4, 2, device=d)),
                  IndexError, "index out of range in self"),
    "gather": (lambda d: distnn.zeros(2, 3, device=d).gather(1, _t(d, [[0, 3]])),
               RuntimeError, "index 3 is out of bounds for dimension 1 with size 3"),
    "binary_cross_entropy": (lambda d: F.binary_cross_entropy(_t(d, [1.5]), _t(d, [1.0])),
                             RuntimeError, "all elements of input should be between 0 and 1"),
    "one_hot": (lambda d: F.one_hot(_t(d, [0, 3]), 3), RuntimeError, "Class values must be smaller than num_classes"),
    "gaussian_nll_loss": (lambda d: F.gaussian_nll_loss(_t(d, [1.0]), _t(d, [1.0]), _t(d, [-1.0])),
                          ValueError, "var has negative entry"),
}


@pytest.mark.parametrize("name", list(BAD_VALUES))
def test_the_cpu_checks_values_in_any_mode(name):
    call, error, message = BAD_VALUES[name]
    for flag in (False, True):
        with debug.debug_mode(flag), pytest.raises(error, match=message):
            call("cpu")


@gpu
@pytest.mark.parametrize("name", list(BAD_VALUES))
def test_a_gpu_checks_values_only_in_debug_mode(name):
    call, error, message = BAD_VALUES[name]
    with debug.debug_mode(False):
        call("cuda")  # unchecked: PyTorch's device-side assert territory
    with debug.debug_mode(True), pytest.raises(error, match=message):
        call("cuda")


@pytest.mark.filterwarnings("ignore:invalid value")  # unchecked, a probability of 1.5 gives NaN
@pytest.mark.parametrize("name", ["binary_cross_entropy", "one_hot", "gaussian_nll_loss"])
def test_the_gate_on_arrays_taken_for_gpu_ones(name, monkeypatch):
    """The gate itself, runnable without a GPU: arrays it takes for GPU arrays go unchecked
    outside debug mode (ops where numpy, unchecked, raises nothing of its own)."""
    monkeypatch.setattr(debug, "is_gpu_array", lambda array: True)
    call, error, message = BAD_VALUES[name]
    with debug.debug_mode(False):
        call("cpu")
    with debug.debug_mode(True), pytest.raises(error, match=message):
        call("cpu")


def test_debug_mode_restores_the_previous_setting():
    before = debug.enabled()
    with debug.debug_mode(not before):
        assert debug.enabled() is (not before)
        assert debug.checks_values(np.zeros(2))  # host arrays: always
    assert debug.enabled() is before


@pytest.mark.parametrize("value,expected", [("1", True), ("0", False), ("", False)])
def test_the_environment_switch(value, expected):
    env = dict(os.environ, DISTNN_DEBUG=value)
    out = subprocess.run([sys.executable, "-c", "from distnn import debug; print(debug.enabled())"], env=env,
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert out.strip() == str(expected)

"""Shared fixtures: a fixed seed per test, and the optional torch oracle."""

import numpy as np
import pytest

import distnn


@pytest.fixture(autouse=True)
def _seed():
    distnn.manual_seed(0)
    np.random.seed(0)


def pytest_configure(config):
    """``DISTNN_TEST_DEVICE=cuda`` without a GPU is a setup error, not a silent CPU run."""
    from op_check import DEVICE
    if DEVICE.type == "cuda" and not distnn.cuda.is_available():
        raise pytest.UsageError("DISTNN_TEST_DEVICE=cuda, but CuPy sees no CUDA GPU here")

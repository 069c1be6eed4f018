"""Shared fixtures: a fixed seed per test, and the optional torch oracle."""

import numpy as np
import pytest

import distnn


@pytest.fixture(autouse=True)
def _seed():
    distnn.manual_seed(0)
    np.random.seed(0)

"""What the program tests share: each program is written once as a function of the
library modules (``train(torch, nn, F, optim, ...)``), run on distnn and on PyTorch
from the same starting weights (numpy arrays, loaded with ``load_state_dict``) on
the same data in the same order, and compared step by step.

    ours = build(distnn); theirs = build(torch); same_start(ours, theirs, torch)
    assert_same_curve(train(*modules(distnn), ours, ...), train(*modules(torch), theirs, ...))
"""

from pathlib import Path

import numpy as np
import pytest

import distnn
from multiproc import REPO
from op_check import torch

requires_torch = pytest.mark.skipif(torch is None, reason="PyTorch (test oracle) not installed")

MNIST_DIR = REPO.parent / "shared" / "data" / "mnist-10k"


def modules(lib):
    """``(torch, nn, F, optim)`` for ``lib``: what a program imports."""
    return lib, lib.nn, lib.nn.functional, lib.optim


def numpy_state(model):
    """A model's state_dict as numpy arrays (copies)."""
    return {name: value.detach().cpu().numpy().copy() for name, value in model.state_dict().items()}


def load_numpy_state(model, lib, state):
    model.load_state_dict({name: lib.from_numpy(array.copy()) for name, array in state.items()})


def same_start(ours, theirs, lib=None):
    """Give ``theirs`` (a ``lib`` module, torch by default) the weights and buffers ours
    started with: distnn's default initialisation, drawn by numpy under distnn's seed."""
    load_numpy_state(theirs, lib or torch, numpy_state(ours))


def assert_same_curve(ours, theirs, rtol, atol=0.0, what="loss"):
    """Two sequences of per-step values (losses) equal to the tolerance, step by step."""
    ours, theirs = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    assert ours.shape == theirs.shape, f"Expect: {theirs.shape[0]} {what} values, Actual: {ours.shape[0]}"
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol, err_msg=f"{what} per step differs from torch")


def assert_same_state(ours, theirs, rtol, atol):
    """Final parameters and buffers of two models equal entry by entry (same names)."""
    ours, theirs = numpy_state(ours), numpy_state(theirs)
    assert list(ours) == list(theirs)
    for name in theirs:
        np.testing.assert_allclose(ours[name], theirs[name], rtol=rtol, atol=atol,
                                   err_msg=f"{name} differs from torch after training")


def mnist_dataset(train=True, transform=None):
    """distnn.vision's MNIST over the shared real-MNIST copy (a skip when it is absent)."""
    if not MNIST_DIR.is_dir():
        pytest.skip(f"real MNIST not found at {MNIST_DIR}")
    from distnn.vision import datasets
    return datasets.MNIST(MNIST_DIR, train=train, transform=transform)


def mnist_subset(count, train=True, transform=None):
    """The first ``count`` samples of ``mnist_dataset`` stacked: float32 images
    N x 1 x 28 x 28, int64 labels."""
    dataset = mnist_dataset(train, transform)
    samples = [dataset[i] for i in range(count)]
    images = np.stack([np.asarray(image.numpy() if isinstance(image, distnn.Tensor) else image)
                       for image, _ in samples]).astype(np.float32)
    return images, np.array([label for _, label in samples], dtype=np.int64)


class NumpyNoise:
    """Standard normal draws from one numpy generator, handed to either library, so
    a program's random draws (``randn_like``) are the same on both."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)

    def __call__(self, lib, shape, dtype=np.float32):
        return lib.from_numpy(self.rng.standard_normal(tuple(shape)).astype(dtype))


def read_png(path):
    """A PNG's pixels as a uint8 array (Pillow)."""
    from PIL import Image
    with Image.open(Path(path)) as image:
        return np.asarray(image).copy()

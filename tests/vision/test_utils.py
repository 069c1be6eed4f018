"""distnn.vision.utils: make_grid against torchvision (and against its documented
layout, which needs no oracle), save_image read back with Pillow."""

import io
import sys

import numpy as np
import pytest

import distnn
from distnn.vision import utils

RNG = np.random.default_rng(0)


def batch(*shape, low=0.0, high=1.0):
    return RNG.uniform(low, high, shape).astype(np.float32)


GRID_CASES = [
    (batch(10, 3, 5, 4), {}),
    (batch(10, 1, 6, 6), {"nrow": 4, "padding": 1, "pad_value": 0.5}),
    (batch(3, 3, 4, 7), {"nrow": 5}),
    (batch(1, 3, 4, 4), {"padding": 3}),
    (batch(5, 3, 4, 4, low=-2, high=3), {"normalize": True}),
    (batch(5, 3, 4, 4, low=-2, high=3), {"normalize": True, "value_range": (-1, 1)}),
    (batch(5, 1, 4, 4, low=-2, high=3), {"normalize": True, "scale_each": True, "nrow": 2}),
    (batch(4, 3, 4, 4) * 0 + 0.25, {"normalize": True}),  # constant image: divides by 1e-5
    (batch(1, 6, 6), {}),
    (batch(6, 6), {}),
    (batch(7, 3, 3), {"padding": 0}),
]


@pytest.mark.parametrize("array, kwargs", GRID_CASES)
def test_make_grid_matches_torchvision(torchvision, array, kwargs):
    import torch
    ours = utils.make_grid(distnn.from_numpy(array.copy()), **kwargs)
    theirs = torchvision.utils.make_grid(torch.from_numpy(array.copy()), **kwargs)
    assert isinstance(ours, distnn.Tensor) and tuple(ours.shape) == tuple(theirs.shape)
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_make_grid_of_a_list_matches_torchvision(torchvision):
    import torch
    images = [batch(3, 5, 5) for _ in range(3)]
    ours = utils.make_grid([distnn.from_numpy(a) for a in images], nrow=2)
    theirs = torchvision.utils.make_grid([torch.from_numpy(a) for a in images], nrow=2)
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_make_grid_documented_layout():
    """nrow images per row, `padding` pixels of pad_value around and between them."""
    images = batch(5, 3, 4, 6)
    grid = utils.make_grid(distnn.from_numpy(images), nrow=3, padding=2, pad_value=-1.0).numpy()
    assert grid.shape == (3, 2 * (4 + 2) + 2, 3 * (6 + 2) + 2)
    for k in range(5):
        y, x = divmod(k, 3)
        np.testing.assert_array_equal(grid[:, 2 + 6 * y:6 + 6 * y, 2 + 8 * x:8 + 8 * x], images[k])
    mask = np.ones(grid.shape[1:], bool)
    for k in range(5):
        y, x = divmod(k, 3)
        mask[2 + 6 * y:6 + 6 * y, 2 + 8 * x:8 + 8 * x] = False
    assert (grid[:, mask] == -1.0).all()  # padding and the empty sixth cell


def test_make_grid_leaves_input_alone_and_errors():
    x = distnn.from_numpy(batch(2, 3, 4, 4, low=-5, high=5))
    before = x.numpy().copy()
    utils.make_grid(x, normalize=True)
    np.testing.assert_array_equal(x.numpy(), before)
    with pytest.raises(TypeError, match="tensor or list of tensors expected, got <class 'numpy.ndarray'>"):
        utils.make_grid(before)
    with pytest.raises(TypeError, match="got a list containing <class 'int'>"):
        utils.make_grid([x[0], 3])
    with pytest.raises(TypeError, match="value_range has to be a tuple"):
        utils.make_grid(x, normalize=True, value_range=[0, 1])


@pytest.mark.parametrize("name, fmt", [("grid.png", "PNG"), ("grid.bmp", "BMP")])
def test_save_image_writes_the_grid_pixels(tmp_path, pil_image, name, fmt):
    images = distnn.from_numpy(batch(6, 3, 5, 7, low=-0.2, high=1.2))
    utils.save_image(images, tmp_path / name, nrow=4)
    grid = utils.make_grid(images, nrow=4).numpy()
    expected = np.clip(grid * np.float32(255) + np.float32(0.5), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    with pil_image.open(tmp_path / name) as img:
        assert img.format == fmt and img.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(img), expected)


def test_save_image_same_file_as_torchvision(tmp_path, torchvision, pil_image):
    import torch
    images = batch(4, 1, 8, 8)
    utils.save_image(distnn.from_numpy(images), tmp_path / "ours.png", normalize=True, padding=1)
    torchvision.utils.save_image(torch.from_numpy(images), tmp_path / "theirs.png", normalize=True, padding=1)
    with pil_image.open(tmp_path / "ours.png") as ours, pil_image.open(tmp_path / "theirs.png") as theirs:
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))


def test_save_image_to_a_file_object_and_jpeg(tmp_path, pil_image):
    buf = io.BytesIO()
    utils.save_image(distnn.from_numpy(batch(3, 8, 8)), buf, format="PNG")
    buf.seek(0)
    with pil_image.open(buf) as img:
        assert img.format == "PNG" and img.size == (8, 8)
    utils.save_image(distnn.from_numpy(batch(2, 3, 16, 16)), tmp_path / "g.jpg")
    with pil_image.open(tmp_path / "g.jpg") as img:
        assert img.format == "JPEG" and img.size == (2 * 18 + 2, 20)
    with pytest.raises(ValueError, match="Expect: 1, 3 or 4 channels .* Actual: 2"):
        utils.save_image(distnn.from_numpy(batch(2, 2, 4, 4)), tmp_path / "bad.png")


def test_save_image_without_pillow_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ImportError, match=r"install the 'images' extra \(pip install 'distnn\[images\]'\)"):
        utils.save_image(distnn.from_numpy(batch(3, 4, 4)), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()

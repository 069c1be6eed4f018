"""distnn.vision.transforms.functional against its oracles: Pillow for arrays (the
PIL-image stand-in) and PIL images, torchvision for tensors; each function
returns the kind of image it was given."""

import numpy as np
import pytest

import distnn
from distnn.vision.transforms import functional as F
from distnn.vision.transforms import InterpolationMode

RNG = np.random.default_rng(0)
GREY = RNG.integers(0, 256, (23, 31), dtype=np.uint8)
RGB = RNG.integers(0, 256, (29, 18, 3), dtype=np.uint8)
BATCH = RNG.standard_normal((2, 3, 21, 26)).astype(np.float32)


def as_torch(torch_module, array):
    return torch_module.from_numpy(array.copy())


@pytest.mark.parametrize("image", [GREY, RGB], ids=["grey", "rgb"])
@pytest.mark.parametrize("size", [(11, 13), (40, 57), (23, 60), 9, [14], (3, 2)])
@pytest.mark.parametrize("mode, code", [(InterpolationMode.BILINEAR, 2), (InterpolationMode.NEAREST, 0)])
def test_array_resize_is_pillows_to_the_pixel(pil_image, image, size, mode, code):
    ours = F.resize(image, size, mode)
    h, w = image.shape[:2]
    if isinstance(size, (int, list)):  # shorter edge to size, aspect kept
        s = size if isinstance(size, int) else size[0]
        size = (s, int(s * w / h)) if h <= w else (int(s * h / w), s)
    expected = np.asarray(pil_image.fromarray(image).resize(size[::-1], code))
    assert isinstance(ours, np.ndarray) and ours.dtype == np.uint8
    np.testing.assert_array_equal(ours, expected)


def test_float_array_resize_matches_pillow_mode_f(pil_image):
    image = RNG.random((30, 22)).astype(np.float32)
    expected = np.asarray(pil_image.fromarray(image).resize((9, 41), 2))
    np.testing.assert_allclose(F.resize(image, (41, 9)), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("size", [(9, 13), (40, 57), 12, (21, 60)])
@pytest.mark.parametrize("mode", ["bilinear", "nearest", "nearest-exact"])
@pytest.mark.parametrize("antialias", [True, False])
def test_tensor_resize_matches_torchvision(torchvision, size, mode, antialias):
    import torch
    ours = F.resize(distnn.from_numpy(BATCH), size, InterpolationMode(mode), antialias=antialias)
    theirs = torchvision.transforms.functional.resize(
        as_torch(torch, BATCH), size, torchvision.transforms.InterpolationMode(mode), antialias=antialias)
    assert isinstance(ours, distnn.Tensor) and tuple(ours.shape) == tuple(theirs.shape)
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-4, atol=5e-5)


def test_resize_size_rules_and_errors():
    assert F.resize(RGB, 18) is RGB  # the shorter edge is already 18
    assert F.resize(RGB, 10, max_size=12).shape == (12, 7, 3)  # longer edge capped at max_size
    with pytest.raises(ValueError, match="max_size = 10 must be strictly greater"):
        F.resize(RGB, 10, max_size=10)
    with pytest.raises(ValueError, match="max_size should only be passed if size specifies"):
        F.resize(RGB, (10, 12), max_size=20)
    with pytest.raises(ValueError, match="Size must be an int or a 1 or 2 element tuple/list, not a 3"):
        F.resize(RGB, (1, 2, 3))
    with pytest.raises(NotImplementedError, match="interpolation 'bicubic' is not implemented"):
        F.resize(RGB, 10, InterpolationMode.BICUBIC)
    with pytest.raises(TypeError, match="Argument interpolation should be a InterpolationMode"):
        F.resize(RGB, 10, "bilinear")
    assert F.resize(RGB, (7, 5), 0).shape == (7, 5, 3)  # Pillow's integer constant for NEAREST


PAD_CASES = [(3, 0, "constant"), ((1, 2), 7, "constant"), ((1, 2, 3, 4), 0, "edge"), ([2], 0, "reflect"),
             ((0, 3, 1, 2), 0, "symmetric"), ((-2, 1, 3, -4), 5, "constant")]


@pytest.mark.parametrize("padding, fill, mode", PAD_CASES)
def test_pad_matches_torchvision_on_pil_and_tensors(torchvision, pil_image, padding, fill, mode):
    import torch
    TF = torchvision.transforms.functional
    for image in (GREY, RGB):
        ours = F.pad(image, padding, fill, mode)
        np.testing.assert_array_equal(ours, np.asarray(TF.pad(pil_image.fromarray(image), padding, fill, mode)))
        assert isinstance(F.pad(pil_image.fromarray(image), padding, fill, mode), pil_image.Image)
    if min(np.atleast_1d(padding)) >= 0:  # torch pads tensors; negative padding is a PIL-only crop
        ours = F.pad(distnn.from_numpy(BATCH), padding, fill, mode).numpy()
        np.testing.assert_array_equal(ours, TF.pad(as_torch(torch, BATCH), padding, fill, mode).numpy())


def test_pad_per_channel_fill_and_errors():
    out = F.pad(RGB, 1, fill=(10, 20, 30))
    assert out[0, 0].tolist() == [10, 20, 30] and out.shape == (31, 20, 3)
    with pytest.raises(ValueError, match=r"number of elements in 'fill' does not match .* \(2 != 3\)"):
        F.pad(RGB, 1, fill=(1, 2))
    with pytest.raises(ValueError, match="Padding mode should be either constant, edge, reflect or symmetric"):
        F.pad(RGB, 1, padding_mode="wrap")
    with pytest.raises(ValueError, match="not a 3 element tuple"):
        F.pad(RGB, (1, 2, 3))
    with pytest.raises(TypeError, match="img should be an ndarray, a PIL Image or a Tensor"):
        F.pad([[1]], 1)


@pytest.mark.parametrize("op, args", [
    ("crop", (3, 4, 10, 9)), ("crop", (-3, 5, 12, 20)), ("crop", (20, -2, 15, 25)),
    ("center_crop", ((11, 7),)), ("center_crop", (40,)), ("center_crop", ((30, 10),)),
    ("hflip", ()), ("vflip", ()),
])
def test_geometry_matches_torchvision(torchvision, pil_image, op, args):
    import torch
    theirs_fn, ours_fn = getattr(torchvision.transforms.functional, op), getattr(F, op)
    for image in (GREY, RGB):
        np.testing.assert_array_equal(ours_fn(image, *args), np.asarray(theirs_fn(pil_image.fromarray(image), *args)))
    np.testing.assert_array_equal(ours_fn(distnn.from_numpy(BATCH), *args).numpy(),
                                  theirs_fn(as_torch(torch, BATCH), *args).numpy())


def test_dimensions_of_each_kind(pil_image):
    assert F.get_dimensions(RGB) == [3, 29, 18] and F.get_dimensions(GREY) == [1, 23, 31]
    assert F.get_dimensions(distnn.from_numpy(BATCH)) == [3, 21, 26]
    assert F.get_image_size(pil_image.fromarray(RGB)) == [18, 29]
    assert F.get_image_num_channels(pil_image.fromarray(GREY)) == 1


def test_to_tensor_takes_pil_images(pil_image, torchvision):
    for image in (GREY, RGB, GREY > 128):
        ours = F.to_tensor(pil_image.fromarray(image))
        theirs = torchvision.transforms.functional.to_tensor(pil_image.fromarray(image))
        assert ours.dtype == distnn.float32
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())

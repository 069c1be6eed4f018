"""distnn.vision.transforms classes: torchvision's reprs and errors, the random
crops and flips (seeded by distnn.manual_seed, within the documented ranges), and
the re-exported Compose / ToTensor / Normalize / Lambda."""

import numpy as np
import pytest

import distnn
from distnn.vision import transforms as T

IMAGE = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)

REPR_CASES = [
    ("Pad", (4,), {}), ("Pad", ((1, 2),), {"fill": 3, "padding_mode": "edge"}),
    ("RandomCrop", (32,), {"padding": 4}), ("RandomCrop", ((20, 24),), {}),
    ("CenterCrop", (224,), {}), ("RandomHorizontalFlip", (), {}), ("RandomVerticalFlip", (), {"p": 0.3}),
    ("Resize", (256,), {}), ("Resize", ((32, 48),), {"antialias": False, "max_size": None}),
    ("RandomResizedCrop", (224,), {}), ("RandomResizedCrop", (32,), {"scale": (0.5, 1.0)}),
    ("ToTensor", (), {}), ("Normalize", ((0.5,), (0.25,)), {}),
]


@pytest.mark.parametrize("name, args, kwargs", REPR_CASES)
def test_repr_is_torchvisions(torchvision, name, args, kwargs):
    assert repr(getattr(T, name)(*args, **kwargs)) == repr(getattr(torchvision.transforms, name)(*args, **kwargs))


def test_compose_repr_is_torchvisions(torchvision):
    def pipeline(module):
        return module.Compose([module.RandomCrop(32, padding=4), module.RandomHorizontalFlip(), module.ToTensor()])
    assert repr(pipeline(T)) == repr(pipeline(torchvision.transforms))


def test_random_crop_with_padding_is_a_window_of_the_padded_image():
    padded = np.pad(IMAGE, ((4, 4), (4, 4), (0, 0)))
    crop = T.RandomCrop(32, padding=4)
    windows = set()
    for _ in range(20):
        out = crop(IMAGE)
        assert out.shape == (32, 32, 3)
        hits = [(i, j) for i in range(9) for j in range(9) if np.array_equal(padded[i:i + 32, j:j + 32], out)]
        assert hits
        windows.add(hits[0])
    assert len(windows) > 5


def test_random_choices_follow_distnn_manual_seed():
    pipeline = T.Compose([T.RandomCrop(28, padding=2), T.RandomHorizontalFlip(), T.RandomResizedCrop(16)])
    distnn.manual_seed(7)
    first = [pipeline(IMAGE) for _ in range(5)]
    distnn.manual_seed(7)
    again = [pipeline(IMAGE) for _ in range(5)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))


def test_random_crop_pad_if_needed_and_errors():
    small = IMAGE[:20, :25]
    assert T.RandomCrop((24, 30), pad_if_needed=True)(small).shape == (24, 30, 3)
    with pytest.raises(ValueError, match=r"Required crop size \(24, 30\) is larger than input image size \(20, 25\)"):
        T.RandomCrop((24, 30))(small)
    with pytest.raises(ValueError, match="Please provide only two dimensions"):
        T.RandomCrop((1, 2, 3))


def test_flips_honour_p():
    assert np.array_equal(T.RandomHorizontalFlip(p=1.0)(IMAGE), IMAGE[:, ::-1])
    assert np.array_equal(T.RandomVerticalFlip(p=1.0)(IMAGE), IMAGE[::-1])
    assert T.RandomHorizontalFlip(p=0.0)(IMAGE) is IMAGE
    flipped = sum(not np.array_equal(T.RandomHorizontalFlip()(IMAGE), IMAGE) for _ in range(200))
    assert 60 < flipped < 140


def test_random_resized_crop_sizes_and_fallback():
    out = T.RandomResizedCrop((20, 24), scale=(0.2, 0.5))(IMAGE)
    assert out.shape == (20, 24, 3) and out.dtype == np.uint8
    i, j, h, w = T.RandomResizedCrop.get_params(IMAGE, scale=(0.2, 0.5), ratio=(0.75, 4 / 3))
    assert 0.2 * 1024 * 0.7 <= h * w <= 0.5 * 1024 * 1.3 and 0 <= i <= 32 - h and 0 <= j <= 32 - w
    # an area larger than the image can never be drawn: the central crop at the ratio bound
    assert T.RandomResizedCrop.get_params(IMAGE[:, :8], scale=(2.0, 3.0), ratio=(1.0, 1.0)) == (12, 0, 8, 8)


def test_cifar_pipeline_on_tensors_and_arrays():
    pipeline = T.Compose([T.Pad(4, padding_mode="reflect"), T.RandomCrop(32), T.RandomHorizontalFlip(),
                          T.ToTensor(), T.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
    out = pipeline(IMAGE)
    assert out.shape == (3, 32, 32) and out.dtype == distnn.float32
    assert -1.0 <= float(out.min()) and float(out.max()) <= 1.0
    tensor = T.ToTensor()(IMAGE)
    resized = T.Compose([T.Resize(40), T.CenterCrop(36), T.RandomCrop(32, padding=2)])(tensor)
    assert isinstance(resized, distnn.Tensor) and resized.shape == (3, 32, 32)


def test_constructor_errors_are_torchvisions():
    with pytest.raises(TypeError, match="Got inappropriate padding arg"):
        T.Pad("4")
    with pytest.raises(ValueError, match="Padding must be an int or a 1, 2, or 4 element tuple, not a 3"):
        T.Pad((1, 2, 3))
    with pytest.raises(TypeError, match="Size should be int or sequence"):
        T.Resize(2.5)
    with pytest.raises(ValueError, match="If size is a sequence, it should have 1 or 2 values"):
        T.Resize((1, 2, 3))
    with pytest.raises(TypeError, match="Scale should be a sequence"):
        T.RandomResizedCrop(8, scale=0.5)
    with pytest.warns(UserWarning, match=r"Scale and ratio should be of kind \(min, max\)"):
        T.RandomResizedCrop(8, scale=(1.0, 0.5))

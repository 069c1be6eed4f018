"""distnn.vision.datasets.FakeData: the same labels and (up to float32 rounding) the
same images as torchvision's FakeData for every index, offset and image size (when
torchvision is importable), the draws behind them against ``torch.randn`` and
``torch.randint``, determinism, transforms, repr and errors."""

import numpy as np
import pytest

import distnn
from distnn.utils.data import DataLoader
from distnn.vision import datasets, transforms
from distnn.vision.datasets.fakedata import _torch_randint, _torch_randn
from op_check import requires_torch, torch


def _circular_diff(a, b):
    d = (a.astype(np.int64) - b.astype(np.int64)) % 256
    return np.minimum(d, 256 - d)


@pytest.mark.parametrize("image_size,num_classes,offset", [
    ((3, 224, 224), 10, 0),  # torchvision's defaults: the vectorised Box-Muller, 16 at a time
    ((1, 5, 7), 3, 5),  # one channel, a partial last block of 16
    ((3, 2, 2), 7, 0),  # fewer than 16 values: the scalar Box-Muller
    ((2, 4, 4), 1000, 2),
    ((4, 3, 5), 5, 0),
    ((6, 6), 4, 1),  # 2-D: one grey channel
    ((3, 4, 4), 2 ** 33, 0),  # a label range past 32 bits takes two draws
])
def test_matches_torchvision(torchvision, image_size, num_classes, offset):
    ours = datasets.FakeData(12, image_size, num_classes, random_offset=offset)
    theirs = torchvision.datasets.FakeData(12, image_size, num_classes, random_offset=offset)
    assert len(ours) == len(theirs) == 12
    assert repr(ours) == repr(theirs)
    for index in (0, 1, 7, 11, -1, -12):
        img, target = ours[index]
        ref_img, ref_target = theirs[index]
        ref = np.asarray(ref_img)
        assert type(target) is int and target == ref_target
        assert img.dtype == np.uint8 and img.shape == ref.shape
        # PyTorch's vectorised log/sin/cos may differ from NumPy's in the last bit; then,
        # rarely, a pixel differs by one level (255 and 0 being neighbours after the wrap).
        diff = _circular_diff(img, ref)
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-4, f"index {index}: {(diff > 0).sum()} pixels differ"


@requires_torch
@pytest.mark.parametrize("n", [1, 2, 3, 7, 15, 16, 17, 31, 32, 40, 1000])
@pytest.mark.parametrize("seed", [0, 3, 2 ** 32 + 5, -7])
def test_draws_match_torch_randn_and_randint(n, seed):
    rng = np.random.RandomState(seed & 0xFFFFFFFF)
    ours = _torch_randn(rng, n)
    label = _torch_randint(rng, 97)
    torch.manual_seed(seed)
    ref = torch.randn(n)
    ref_label = torch.randint(0, 97, (1,))[0].item()
    assert ours.dtype == np.float32
    if n < 16:  # the scalar path computes in float64, as we do: exactly equal
        np.testing.assert_array_equal(ours, ref.numpy())
    else:
        np.testing.assert_allclose(ours, ref.numpy(), rtol=2e-6, atol=1e-6)
    assert label == ref_label


def test_deterministic_per_index_and_leaves_the_global_generator_alone():
    data = datasets.FakeData(5, (3, 8, 8), 10)
    distnn.manual_seed(123)
    expected = distnn.rand(4)
    distnn.manual_seed(123)
    first = [data[i] for i in range(5)]
    assert np.array_equal(distnn.rand(4).numpy(), expected.numpy())
    again = [data[i] for i in reversed(range(5))][::-1]
    for (a, ta), (b, tb) in zip(first, again):
        np.testing.assert_array_equal(a, b)
        assert ta == tb
    assert not np.array_equal(first[0][0], first[1][0])
    shifted = datasets.FakeData(5, (3, 8, 8), 10, random_offset=2)
    np.testing.assert_array_equal(shifted[0][0], data[2][0])
    assert shifted[1][1] == data[3][1]


def test_shapes_transforms_and_loader():
    data = datasets.FakeData(6, (3, 10, 8), 4, transform=transforms.ToTensor(),
                             target_transform=lambda t: t + 10)
    img, target = data[2]
    assert isinstance(img, distnn.Tensor) and tuple(img.shape) == (3, 10, 8) and img.dtype == distnn.float32
    raw, raw_target = datasets.FakeData(6, (3, 10, 8), 4)[2]
    np.testing.assert_allclose(img.numpy(), raw.transpose(2, 0, 1) / np.float32(255), rtol=1e-6)
    assert type(target) is int and target == raw_target + 10 and 0 <= raw_target < 4
    images, labels = next(iter(DataLoader(data, batch_size=4)))
    assert tuple(images.shape) == (4, 3, 10, 8) and labels.dtype == distnn.int64
    assert datasets.FakeData(2, (1, 3, 5))[0][0].shape == (3, 5)
    assert datasets.FakeData(2, (2, 3, 5))[0][0].shape == (3, 5, 2)
    assert len(datasets.FakeData()) == 1000 and datasets.FakeData()[0][0].shape == (224, 224, 3)


def test_target_transform_gets_an_int64_tensor_as_torchvision():
    seen = []
    data = datasets.FakeData(3, (1, 2, 2), 5, target_transform=lambda t: seen.append(t) or t)
    label = data[1][1]
    assert isinstance(seen[0], distnn.Tensor) and seen[0].dtype == distnn.int64 and seen[0].dim() == 0
    assert label == seen[0].item()


def test_repr_with_transforms_in_torchvisions_layout():
    data = datasets.FakeData(7, transform=transforms.Compose([transforms.ToTensor()]),
                             target_transform=transforms.Lambda(lambda t: t))
    lines = repr(data).splitlines()
    assert lines[:4] == ["Dataset FakeData", "    Number of datapoints: 7", "    StandardTransform",
                         "    Transform: Compose("]
    assert lines[-1].startswith("    Target transform: ")


@pytest.mark.parametrize("kwargs,index,error", [
    ({"size": 3}, 3, IndexError),
    ({"image_size": (1, 2, 3, 4)}, 0, ValueError),
    ({"image_size": (5, 2, 2)}, 0, ValueError),
    ({"num_classes": 0}, 0, RuntimeError),
])
def test_errors_as_torchvision(torchvision, kwargs, index, error):
    with pytest.raises(error) as expected:
        torchvision.datasets.FakeData(**kwargs)[index]
    with pytest.raises(error) as got:
        datasets.FakeData(**kwargs)[index]
    assert str(got.value) == str(expected.value)

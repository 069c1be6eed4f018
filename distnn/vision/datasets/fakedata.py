"""``FakeData``: random images with random labels, for smoke tests and benchmarks,
the same images and labels as torchvision's ``FakeData`` for every index.

torchvision seeds PyTorch's CPU generator with ``index + random_offset`` and draws
``torch.randn(*image_size)`` then ``torch.randint(0, num_classes, (1,))``. This
module makes the same draws from the same generator (MT19937 seeded as
``torch.manual_seed`` seeds it), consuming its 32-bit outputs as PyTorch does, so
the labels are identical and the images equal up to float32 rounding: PyTorch's
Box-Muller for 16 or more values runs vectorised approximations of log, sin and
cos, which can differ from NumPy's in the last bit, and so, rarely, a pixel by one
level. distnn's own generator is neither used nor disturbed.

As for ``CIFAR10``, a sample is a numpy ``uint8`` array where torchvision has a PIL
image (what ``ToPILImage`` would hold): H x W for one channel, H x W x C for 2 to 4.
"""

import math

import numpy as np

from ... import creation, dtypes
from ...utils.data.dataset import Dataset

__all__ = ["FakeData"]


def _uint32_draws(rng, count):
    return rng.randint(0, 1 << 32, size=count, dtype=np.uint32)


def _uniform_float(bits):
    """PyTorch's ``uniform_real_distribution<float>(0, 1)``: the low 24 bits of a draw."""
    return (bits & np.uint32((1 << 24) - 1)).astype(np.float32) * np.float32(2.0 ** -24)


def _box_muller_16(u):
    """PyTorch's ``normal_fill_16`` over rows of 16 uniforms: pairs (j, j + 8), in float32."""
    u = u.reshape(-1, 16)
    radius = np.sqrt(np.float32(-2.0) * np.log(np.float32(1.0) - u[:, :8]))
    theta = np.float32(2.0 * math.pi) * u[:, 8:]
    return np.concatenate([radius * np.cos(theta), radius * np.sin(theta)], axis=1).reshape(-1)


def _torch_randn(rng, n):
    """``torch.randn(n)`` (float32) on a CPU generator whose 32-bit outputs ``rng`` gives."""
    if n >= 16:
        # Uniforms for the whole tensor first, 16 at a time through Box-Muller; a partial last
        # block is redrawn as 16 fresh uniforms that overwrite the last 16 values.
        u = _uniform_float(_uint32_draws(rng, n))
        out = np.empty(n, np.float32)
        full = n - n % 16
        out[:full] = _box_muller_16(u[:full])
        if n % 16:
            out[n - 16:] = _box_muller_16(_uniform_float(_uint32_draws(rng, 16)))
        return out
    # Fewer than 16: the scalar normal_distribution<double>, one Box-Muller pair per two
    # values, each uniform from 53 bits of two 32-bit draws (the second value of a pair cached).
    pairs = (n + 1) // 2
    words = _uint32_draws(rng, 4 * pairs).astype(np.uint64).reshape(pairs, 2, 2)
    u = ((words[..., 0] << np.uint64(32) | words[..., 1]) & np.uint64((1 << 53) - 1)) * 2.0 ** -53
    radius = np.sqrt(-2.0 * np.log1p(-u[:, 1]))
    theta = 2.0 * math.pi * u[:, 0]
    return np.stack([radius * np.cos(theta), radius * np.sin(theta)], axis=1).reshape(-1)[:n].astype(np.float32)


def _torch_randint(rng, high):
    """``torch.randint(0, high, (1,))[0]`` on the same generator."""
    if high <= 0:
        raise RuntimeError(f"random_ expects 'from' to be less than 'to', but got from=0 >= to={high}")
    if high >= 1 << 32:
        hi, lo = (int(w) for w in _uint32_draws(rng, 2))
        return ((hi << 32) | lo) % high
    return int(_uint32_draws(rng, 1)[0]) % high


def _to_image(x):
    """What torchvision's ``ToPILImage`` makes of a float C x H x W (or H x W) tensor, as an
    array: ``x * 255`` cast to uint8 through int64 (so wrapping modulo 256), channels last."""
    if x.ndim == 3:
        x = x.transpose(1, 2, 0)
    elif x.ndim != 2:
        raise ValueError(f"pic should be 2/3 dimensional. Got {x.ndim} dimensions.")
    if x.ndim == 3 and x.shape[-1] > 4:
        raise ValueError(f"pic should not have > 4 channels. Got {x.shape[-1]} channels.")
    pixels = (x * np.float32(255)).astype(np.int64).astype(np.uint8)
    return pixels[:, :, 0] if pixels.ndim == 3 and pixels.shape[2] == 1 else pixels


class FakeData(Dataset):
    """``size`` random images of ``image_size`` (C, H, W) with labels in
    ``[0, num_classes)``; sample ``i`` depends only on ``i + random_offset``. Arguments
    as torchvision's. As in torchvision, ``target_transform`` gets the label as a
    0-dim int64 tensor and the sample's label is ``.item()`` of what it returns."""

    def __init__(self, size=1000, image_size=(3, 224, 224), num_classes=10, transform=None,
                 target_transform=None, random_offset=0):
        self.size = size
        self.num_classes = num_classes
        self.image_size = image_size
        self.random_offset = random_offset
        self.transform = transform
        self.target_transform = target_transform

    def __getitem__(self, index):
        if index >= len(self):
            raise IndexError(f"{type(self).__name__} index out of range")
        # torch.manual_seed keeps the low 32 bits of the seed for MT19937, negative seeds included.
        rng = np.random.RandomState((int(index) + int(self.random_offset)) & 0xFFFFFFFF)
        shape = tuple(self.image_size)
        img = _torch_randn(rng, math.prod(shape)).reshape(shape)
        target = creation.tensor(_torch_randint(rng, self.num_classes), dtype=dtypes.int64)
        img = _to_image(img)
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target.item()

    def __len__(self):
        return self.size

    def __repr__(self):
        body = [f"Number of datapoints: {len(self)}"]
        if self.transform is not None or self.target_transform is not None:
            body.append("StandardTransform")
            for head, fn in (("Transform: ", self.transform), ("Target transform: ", self.target_transform)):
                if fn is not None:
                    lines = repr(fn).splitlines()
                    body += [head + lines[0]] + [" " * len(head) + line for line in lines[1:]]
        return "\n".join([f"Dataset {type(self).__name__}"] + ["    " + line for line in body])

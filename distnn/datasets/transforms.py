"""The few image transforms the MNIST tutorials use, shaped like
``torchvision.transforms``: ``Compose``, ``ToTensor``, ``Normalize``, ``Lambda``.

Datasets hand transforms a ``uint8`` numpy array (H x W or H x W x C) where
torchvision has a PIL image; ``ToTensor`` turns it (or a PIL image, when Pillow
is installed) into a float32 C x H x W tensor in [0, 1] exactly as torchvision
does. ``distnn.vision.transforms`` adds crops, flips, padding and resizing.
"""

import numpy as np

from .. import backend
from ..tensor import Tensor, _wrap

__all__ = ["Compose", "ToTensor", "Normalize", "Lambda"]


class Compose:
    """Apply ``transforms`` one after another."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, img):
        for t in self.transforms:
            img = t(img)
        return img

    def __repr__(self):
        body = "".join(f"\n    {t}" for t in self.transforms)
        return f"{type(self).__name__}({body}\n)"


class ToTensor:
    """ndarray (H x W [x C]) or PIL image -> float32 tensor (C x H x W); uint8 is
    scaled by 1/255 (a 1-bit PIL image gives 0.0 and 1.0)."""

    def __call__(self, pic):
        if _is_pil(pic):  # Pillow is optional: recognised without importing it
            pic = np.asarray(pic)
            pic = pic.astype(np.uint8) * np.uint8(255) if pic.dtype == np.bool_ else pic
        if not isinstance(pic, np.ndarray):
            raise TypeError(f"pic should be PIL Image or ndarray. Got {type(pic)}")
        if pic.ndim not in (2, 3):
            raise ValueError(f"pic should be 2 or 3 dimensional. Got {pic.ndim} dimensions.")
        if pic.ndim == 2:
            pic = pic[:, :, None]
        chw = np.ascontiguousarray(pic.transpose(2, 0, 1))
        if chw.dtype == np.uint8:
            return _wrap(chw.astype(np.float32) / np.float32(255))
        if chw.dtype.kind == "f":
            return _wrap(chw.astype(np.float32, copy=False))
        return _wrap(chw)

    def __repr__(self):
        return f"{type(self).__name__}()"


def _is_pil(pic):
    return any(c.__module__ == "PIL.Image" and c.__name__ == "Image" for c in type(pic).__mro__)


class Normalize:
    """``(x - mean[c]) / std[c]`` per channel of a float C x H x W (or N x C x H x W) tensor."""

    def __init__(self, mean, std, inplace=False):
        self.mean, self.std, self.inplace = mean, std, inplace

    def __call__(self, tensor):
        if not isinstance(tensor, Tensor):
            raise TypeError(f"Input tensor should be a distnn Tensor. Got {type(tensor)}.")
        if not tensor.is_floating_point():
            raise TypeError(f"Input tensor should be a float tensor. Got {tensor.dtype}.")
        if tensor.ndim < 3:
            raise ValueError(f"Expected tensor to be a tensor image of size (..., C, H, W). "
                             f"Got tensor.size() = {tuple(tensor.shape)}")
        data = tensor._data
        xp = backend.array_module(data)
        mean = xp.asarray(self.mean, dtype=data.dtype).reshape(-1, 1, 1)
        std = xp.asarray(self.std, dtype=data.dtype).reshape(-1, 1, 1)
        if bool((std == 0).any()):
            raise ValueError(f"std evaluated to zero after conversion to {tensor.dtype}, leading to "
                             "division by zero.")
        if self.inplace:  # through the tensor's in-place ops, so its version counter moves
            return tensor.sub_(_wrap(mean)).div_(_wrap(std))
        return _wrap((data - mean) / std)

    def __repr__(self):
        return f"{type(self).__name__}(mean={self.mean}, std={self.std})"


class Lambda:
    """Wrap any function as a transform."""

    def __init__(self, lambd):
        if not callable(lambd):
            raise TypeError(f"Argument lambd should be callable, got {type(lambd).__name__!r}")
        self.lambd = lambd

    def __call__(self, img):
        return self.lambd(img)

    def __repr__(self):
        return f"{type(self).__name__}()"

"""``distnn.vision.transforms``, as ``torchvision.transforms``: ``Compose``,
``ToTensor``, ``Normalize`` and ``Lambda`` (shared with ``distnn.datasets``), the
crops, flips, padding and resizing that training scripts use, and ``functional``.
Images are numpy arrays H x W [x C] where torchvision has PIL images; tensors
[..., C, H, W] and PIL images (with Pillow installed) work too."""

from . import functional
from ...datasets.transforms import Compose, Lambda, Normalize, ToTensor
from .functional import InterpolationMode
from .transforms import (CenterCrop, Pad, RandomCrop, RandomHorizontalFlip, RandomResizedCrop,
                         RandomVerticalFlip, Resize)

__all__ = ["Compose", "ToTensor", "Normalize", "Lambda", "Pad", "RandomCrop", "CenterCrop",
           "RandomHorizontalFlip", "RandomVerticalFlip", "Resize", "RandomResizedCrop", "InterpolationMode",
           "functional"]

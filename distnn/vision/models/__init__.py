"""``distnn.vision.models``, as ``torchvision.models``: the ResNet family, with
torchvision's module names and ``state_dict`` layout (no pretrained weights)."""

from ._api import WeightsEnum
from .resnet import *  # noqa: F401,F403
from .resnet import __all__ as _resnet_all

__all__ = ["WeightsEnum", *_resnet_all]

"""``distnn.datasets``: MNIST read from its IDX files (torchvision's interface),
``SyntheticDigits`` as an offline stand-in, and minimal ``transforms``."""

from . import transforms
from .mnist import MNIST, DatasetNotFoundError, DigitImages, IDXFormatError, read_idx
from .synthetic import SyntheticDigits

__all__ = ["MNIST", "SyntheticDigits", "DigitImages", "DatasetNotFoundError", "IDXFormatError",
           "read_idx", "transforms"]

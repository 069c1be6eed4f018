"""``distnn.vision.datasets``, as ``torchvision.datasets``: ``MNIST``,
``FashionMNIST``, ``CIFAR10``, ``CIFAR100``, ``FakeData``, and the download helpers in ``utils``."""

from . import utils
from ...datasets.mnist import DatasetNotFoundError, IDXFormatError
from .cifar import CIFAR10, CIFAR100, CIFARFormatError
from .fakedata import FakeData
from .mnist import MNIST, FashionMNIST
from .restricted_pickle import UnsafePickleError

__all__ = ["MNIST", "FashionMNIST", "CIFAR10", "CIFAR100", "FakeData", "DatasetNotFoundError", "IDXFormatError",
           "CIFARFormatError", "UnsafePickleError", "utils"]

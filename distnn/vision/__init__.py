"""``distnn.vision``: what ``torchvision`` is to ``torch``, with its layout, so
``import distnn.vision as torchvision`` (or ``from distnn.vision import datasets,
transforms, utils, models``) is the only change a program needs: ``datasets``
(MNIST, FashionMNIST, CIFAR10, CIFAR100), ``transforms``, ``utils`` (make_grid,
save_image) and ``models`` (ResNet)."""

from . import datasets, models, transforms, utils

__all__ = ["datasets", "models", "transforms", "utils"]

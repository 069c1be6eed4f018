"""The MNIST family in torchvision's layout: ``MNIST`` (``distnn.datasets.mnist``)
and ``FashionMNIST``, the same IDX files of 28x28 grey images under
``root/FashionMNIST/raw`` with clothing classes."""

from ...datasets.mnist import MNIST

__all__ = ["MNIST", "FashionMNIST"]


class FashionMNIST(MNIST):
    """Fashion-MNIST (Zalando) read from ``root/FashionMNIST/raw`` (downloaded there
    with MD5 checks when ``download=True``). A default sample (``transform=None``)
    is normalised with Fashion-MNIST's own mean and std, as MNIST's is with its own."""

    mirrors = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
    resources = {
        True: (("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
               ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe")),
        False: (("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
                ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310")),
    }
    classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
               "Ankle boot"]
    mean, std = 0.2860, 0.3530

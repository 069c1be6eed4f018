"""``distnn.utils``: helpers outside the tensor core; ``data`` holds the
Dataset/DataLoader machinery."""

from . import data

__all__ = ["data"]

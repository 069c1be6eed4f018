"""CIFAR-10 and CIFAR-100 from torchvision's folders (``root/cifar-10-batches-py``,
``root/cifar-100-python``) of python-pickle batches, read by the restricted
unpickler (never general unpickling), with optional download of the official
archive (MD5-verified, extracted atomically).

As for ``MNIST``, samples are numpy arrays where torchvision has PIL images: a
``transform`` gets the 32 x 32 x 3 ``uint8`` image (``transforms.ToTensor()``
makes it a float32 3 x 32 x 32 tensor in [0, 1]), and with ``transform=None`` a
sample is that array itself. Local batch files are not checksummed (a subset in
the same format works); the downloaded archive is.
"""

import os
from pathlib import Path

import numpy as np

from ...datasets.mnist import DatasetNotFoundError
from ...utils.data.dataset import Dataset
from . import restricted_pickle
from .utils import ArchiveError, download_url, extract_archive

__all__ = ["CIFAR10", "CIFAR100", "CIFARFormatError"]

_PIXELS = 3 * 32 * 32


class CIFARFormatError(ValueError):
    """A batch or meta file is not what the CIFAR format holds (a corrupt pickle, a
    missing key, wrong dtype or shape, labels out of range)."""


class CIFAR10(Dataset):
    """CIFAR-10: ``data`` (uint8 ndarray N x 32 x 32 x 3), ``targets`` (list of int),
    ``classes`` and ``class_to_idx`` from the meta file. Arguments as torchvision's."""

    base_folder = "cifar-10-batches-py"
    url = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    filename = "cifar-10-python.tar.gz"
    tgz_md5 = "c58f30108f718f92721af3b95e74349a"
    train_list = [
        ["data_batch_1", "c99cafc152244af753f735de768cd75f"],
        ["data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"],
        ["data_batch_3", "54ebc095f3ab1f0389bbae665268c751"],
        ["data_batch_4", "634d18415352ddfa80567beed471001a"],
        ["data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"],
    ]
    test_list = [["test_batch", "40351d587109b95175f43aff81a1287e"]]
    meta = {"filename": "batches.meta", "key": "label_names", "md5": "5ff9c542aee3614f3951f8cda6e48888"}
    label_key = "labels"

    def __init__(self, root, train=True, transform=None, target_transform=None, download=False):
        self.root, self.train = Path(os.path.expanduser(str(root))), bool(train)
        self.transform, self.target_transform = transform, target_transform
        if download and self._missing():
            self.download()
        missing = self._missing()
        if missing:
            raise DatasetNotFoundError(self._missing_message(missing))
        self._load_meta()
        images, self.targets = [], []
        for name, _ in (self.train_list if self.train else self.test_list):
            batch_images, batch_labels = self._read_batch(self.root / self.base_folder / name)
            images.append(batch_images)
            self.targets.extend(batch_labels)
        self.data = np.ascontiguousarray(np.concatenate(images).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        img, target = self.data[index].copy(), self.targets[index]
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target

    def __repr__(self):
        lines = [f"Dataset {type(self).__name__}", f"    Number of datapoints: {len(self)}",
                 f"    Root location: {self.root}", f"    Split: {'Train' if self.train else 'Test'}"]
        if self.transform is not None:
            lines.append(f"    Transform: {self.transform!r}")
        return "\n".join(lines)

    def download(self):
        """Fetch ``url`` into ``root`` (kept, as torchvision does), check its MD5 and
        extract it; an archive already there with the right MD5 is not fetched again."""
        try:
            archive = download_url(self.url, self.root, self.filename, self.tgz_md5)
            extract_archive(archive, self.root)
        except (OSError, RuntimeError, ArchiveError) as exc:
            missing = self._missing()
            raise DatasetNotFoundError(self._missing_message(missing, f"{self.url}: {exc}")) from exc

    def _missing(self):
        folder = self.root / self.base_folder
        names = [name for name, _ in self.train_list + self.test_list] + [self.meta["filename"]]
        return [name for name in names if not (folder / name).is_file()]

    def _missing_message(self, missing, failure=None):
        msg = (f"{type(self).__name__} files not found in {self.root / self.base_folder}: "
               f"missing {', '.join(missing)}.")
        manual = f"extract {self.filename} (from {self.url}) into {self.root}"
        if failure:
            return f"{msg} Download failed:\n  {failure}\nRetry with network access, or {manual}."
        return f"{msg} Pass download=True to fetch it (MD5-verified), or {manual}."

    def _load_meta(self):
        path = self.root / self.base_folder / self.meta["filename"]
        names = _entry(path, _load(path), self.meta["key"])
        if not (isinstance(names, list) and names and all(isinstance(n, (str, bytes)) for n in names)):
            raise CIFARFormatError(f"{path}: Expect: '{self.meta['key']}' a list of class names, "
                                   f"Actual: {type(names).__name__}")
        self.classes = [n.decode("latin1") if isinstance(n, bytes) else n for n in names]
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}

    def _read_batch(self, path):
        entry = _load(path)
        data, labels = _entry(path, entry, "data"), _entry(path, entry, self.label_key)
        if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
                and data.shape[1] == _PIXELS):
            shape = getattr(data, "shape", None)
            raise CIFARFormatError(f"{path}: Expect: 'data' uint8 array of shape (N, {_PIXELS}), "
                                   f"Actual: {getattr(data, 'dtype', type(data).__name__)} of shape {shape}")
        labels = _as_labels(path, labels, len(self.classes))
        if len(labels) != len(data):
            raise CIFARFormatError(f"{path}: Expect: {len(data)} labels (one per image), Actual: {len(labels)}")
        return data, labels


class CIFAR100(CIFAR10):
    """CIFAR-100 with its 100 fine labels (as torchvision; ``coarse_labels`` are ignored)."""

    base_folder = "cifar-100-python"
    url = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
    filename = "cifar-100-python.tar.gz"
    tgz_md5 = "eb9058c3a382ffc7106e4002c42a8d85"
    train_list = [["train", "16019d7e3df5f24257cddd939b257f8d"]]
    test_list = [["test", "f0ef6b0ae62326f3e7ffdfab6717acfc"]]
    meta = {"filename": "meta", "key": "fine_label_names", "md5": "7973b15100ade9c7d40fb424638fde48"}
    label_key = "fine_labels"


def _load(path):
    with open(path, "rb") as f:
        try:
            entry = restricted_pickle.load(f, source=path)
        except restricted_pickle.UnsafePickleError:
            raise
        except Exception as exc:  # a damaged stream fails in many ways; all mean "not a batch"
            raise CIFARFormatError(f"{path}: corrupt or truncated pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(entry, dict):
        raise CIFARFormatError(f"{path}: Expect: a pickled dict, Actual: {type(entry).__name__}")
    # Python 3 writers may leave keys as bytes; torchvision's latin-1 reading gives str.
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}


def _entry(path, entry, key):
    if key not in entry:
        raise CIFARFormatError(f"{path}: Expect: key '{key}', Actual: keys {sorted(map(str, entry))}")
    return entry[key]


def _as_labels(path, labels, num_classes):
    if isinstance(labels, np.ndarray) and labels.ndim == 1 and labels.dtype.kind in "iu":
        labels = labels.tolist()
    if not (isinstance(labels, list) and all(isinstance(v, (int, np.integer)) for v in labels)):
        raise CIFARFormatError(f"{path}: Expect: labels a list of ints, Actual: {type(labels).__name__}")
    labels = [int(v) for v in labels]
    if labels and not 0 <= min(labels) <= max(labels) < num_classes:
        raise CIFARFormatError(f"{path}: Expect: labels in 0..{num_classes - 1} (one per class in the meta "
                               f"file), Actual: {min(labels)}..{max(labels)}")
    return labels

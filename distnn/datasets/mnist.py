"""MNIST from its standard IDX ``.gz`` files: a validating IDX reader, the
``MNIST`` dataset (torchvision's arguments), and optional download from the
official mirrors with MD5 verification and atomic writes.

``DigitImages`` is the base MNIST shares with ``SyntheticDigits``: 28x28 uint8
images in ``.data``, int64 labels in ``.targets``. torchvision returns PIL
images; distnn has no PIL, so with ``transform=None`` a sample is the float32
1x28x28 tensor that ``ToTensor()`` then ``Normalize((0.1307,), (0.3081,))``
would give, which is what every MNIST tutorial asks for. A ``transform`` gets
the raw ``uint8`` 28x28 ndarray instead (``transforms.ToTensor()`` alone gives
[0, 1] pixels without normalisation).
"""

import gzip
import hashlib
import math
import os
import struct
import tempfile
import zlib
from pathlib import Path
from urllib.request import urlopen

import numpy as np

from ..tensor import _wrap
from ..utils.data.dataset import Dataset

__all__ = ["MNIST", "DigitImages", "DatasetNotFoundError", "IDXFormatError", "read_idx"]

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081

MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")

# (images, labels) per split: file name and MD5 of the official release.
RESOURCES = {
    True: (("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
           ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432")),
    False: (("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
            ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c")),
}

# The largest IDX payload read_idx accepts: EMNIST's biggest file holds 0.55 GB, so a
# header claiming more is a damaged or hostile file, refused before anything is read.
MAX_IDX_BYTES = 2 << 30
_READ_CHUNK = 1 << 20  # payload bytes inflated per read

_IDX_DTYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
               0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


class DatasetNotFoundError(FileNotFoundError):
    """The dataset files are absent (and could not be downloaded)."""


class IDXFormatError(ValueError):
    """A file is not a well-formed IDX file (bad magic, truncated, corrupt gzip...)."""


def read_idx(path):
    """The array stored in IDX file ``path`` (gzip-compressed when it ends in .gz),
    in native byte order. Raises ``IDXFormatError`` naming the file and the fault.

    The gzip stream is inflated as it is read: the header comes first, its dims fix
    the payload size (at most ``MAX_IDX_BYTES``), exactly that many bytes are read
    in chunks, and a stream holding more or fewer is refused, so a small file that
    inflates to gigabytes costs no more memory than its header claims."""
    path = Path(path)
    compressed = path.suffix == ".gz"
    with (gzip.open if compressed else open)(path, "rb") as stream:
        try:
            return _read_idx_stream(stream, path, None if compressed else os.fstat(stream.fileno()).st_size)
        except (OSError, EOFError, zlib.error) as exc:
            if not compressed:
                raise
            raise IDXFormatError(f"{path}: corrupt or truncated gzip data ({exc})") from None


def _read_idx_stream(stream, path, file_size):
    """``file_size``: the stream's length when known (uncompressed files), checked
    against the header before any payload is read."""
    magic = stream.read(4)
    if len(magic) < 4:
        raise IDXFormatError(f"{path}: too short for an IDX header: {len(magic)} bytes")
    zero0, zero1, code, ndim = magic
    if zero0 or zero1 or code not in _IDX_DTYPES or ndim == 0:
        raise IDXFormatError(f"{path}: not an IDX file: magic number 0x{magic.hex()}, "
                             "expected 0x0000TTNN with type TT in {08,09,0b,0c,0d,0e} and NN >= 1 dims")
    header = 4 + 4 * ndim
    raw_dims = stream.read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise IDXFormatError(f"{path}: truncated header: {ndim} dims need {header} bytes, "
                             f"file has {4 + len(raw_dims)}")
    dims = struct.unpack(f">{ndim}I", raw_dims)
    dtype = _IDX_DTYPES[code]
    expected = math.prod(dims) * dtype.itemsize  # Python ints: four u32 dims overflow int64
    need = f"{path}: dims {dims} of {dtype.name} need {expected} data bytes"
    if expected > MAX_IDX_BYTES:
        raise IDXFormatError(f"{need}, more than the limit of {MAX_IDX_BYTES} (mnist.MAX_IDX_BYTES)")
    if file_size is not None and file_size - header != expected:
        found = file_size - header
        raise IDXFormatError(f"{need}, found {found} ({'truncated' if found < expected else 'trailing data'})")
    payload = np.empty(expected, dtype=np.uint8)
    filled = 0
    while filled < expected:
        got = stream.readinto(memoryview(payload)[filled:filled + _READ_CHUNK])
        if not got:
            raise IDXFormatError(f"{need}, found {filled} (truncated)")
        filled += got
    extra = len(stream.read(_READ_CHUNK + 1))  # a bomb's tail is sampled, never inflated whole
    if extra:
        found = f"more than {expected + _READ_CHUNK}" if extra > _READ_CHUNK else expected + extra
        raise IDXFormatError(f"{need}, found {found} (trailing data)")
    return payload.view(dtype).reshape(dims).astype(dtype.newbyteorder("="), copy=False)


class DigitImages(Dataset):
    """28x28 grey digits with labels 0..9: ``data`` (uint8 N x 28 x 28 tensor),
    ``targets`` (int64 tensor). See the module docstring for what a sample is."""

    classes = ["0 - zero", "1 - one", "2 - two", "3 - three", "4 - four", "5 - five", "6 - six",
               "7 - seven", "8 - eight", "9 - nine"]
    mean, std = MNIST_MEAN, MNIST_STD  # what a default (transform=None) sample is normalised with

    def __init__(self, images, labels, transform=None, target_transform=None):
        self.data = _wrap(np.ascontiguousarray(images, dtype=np.uint8))
        self.targets = _wrap(np.ascontiguousarray(labels, dtype=np.int64))
        self.transform, self.target_transform = transform, target_transform

    @property
    def class_to_idx(self):
        return {name: i for i, name in enumerate(self.classes)}

    def __len__(self):
        return self.data.shape[0]

    def __getitem__(self, index):
        img, target = self.data._data[index], int(self.targets._data[index])
        img = self._normalized(img[None]) if self.transform is None else self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target

    def _collated_getitems(self, indices):
        if self.transform is not None or self.target_transform is not None:
            return NotImplemented
        idx = np.asarray(indices, dtype=np.int64)
        return [self._normalized(self.data._data[idx][:, None]), _wrap(self.targets._data[idx])]

    def arrays(self, normalize=True):
        """The whole split as numpy arrays ``(images, labels)``: images float32
        N x 1 x 28 x 28 (normalised like a default sample, or in [0, 1] with
        ``normalize=False``), labels int64 N. Ignores ``transform``."""
        images = self.data._data[:, None]
        x = self._normalized(images)._data if normalize else images.astype(np.float32) / np.float32(255)
        return x, self.targets._data.copy()

    def _normalized(self, images):
        """uint8 pixels -> float32, the same arithmetic as ToTensor then Normalize."""
        x = images.astype(np.float32) / np.float32(255)
        x -= np.float32(self.mean)
        x /= np.float32(self.std)
        return _wrap(x)


class MNIST(DigitImages):
    """MNIST read from ``root`` (or torchvision's ``root/MNIST/raw``): the four IDX
    ``.gz`` files ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
    ``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz`` (uncompressed
    copies without ``.gz`` are accepted too). Files found locally are not
    checksummed, so re-split or subset copies work; downloads are.

    Subclasses (``FashionMNIST``) set ``mirrors``, ``resources``, ``classes`` and
    read only their own ``root/<ClassName>/raw``, so two datasets can share a root."""

    mirrors = MIRRORS
    resources = RESOURCES

    def __init__(self, root, train=True, transform=None, target_transform=None, download=False):
        self.root, self.train = Path(os.path.expanduser(str(root))), bool(train)
        wanted = [name for name, _ in self.resources[self.train]]
        folders = self._search_folders()
        paths = [_locate(folders, name) for name in wanted]
        if None in paths:
            missing = [name for name, p in zip(wanted, paths) if p is None]
            if not download:
                raise DatasetNotFoundError(self._missing_message(missing, None))
            failures = _download(self._download_folder(),
                                 [r for r in self.resources[self.train] if r[0] in missing], self.mirrors)
            paths = [_locate(folders, name) for name in wanted]
            if None in paths:
                raise DatasetNotFoundError(self._missing_message(
                    [name for name, p in zip(wanted, paths) if p is None], failures))
        images, labels = read_idx(paths[0]), read_idx(paths[1])
        _check_pair(paths, images, labels)
        super().__init__(images, labels, transform, target_transform)

    def __repr__(self):
        lines = [f"Dataset {type(self).__name__}", f"    Number of datapoints: {len(self)}",
                 f"    Root location: {self.root}", f"    Split: {'Train' if self.train else 'Test'}"]
        if self.transform is not None:
            lines.append(f"    Transform: {self.transform!r}")
        return "\n".join(lines)

    @property
    def raw_folder(self):
        """torchvision's layout: ``root/<ClassName>/raw``."""
        return self.root / type(self).__name__ / "raw"

    def _search_folders(self):
        # MNIST alone is also read straight from root (the shared copy's layout).
        return (self.root, self.raw_folder) if type(self) is MNIST else (self.raw_folder,)

    def _download_folder(self):
        return self.root if type(self) is MNIST else self.raw_folder

    def _missing_message(self, missing, failures):
        all_files = ", ".join(name for split in self.resources.values() for name, _ in split)
        folders = self._search_folders()
        also = f" (also looked in {folders[1]})" if len(folders) > 1 else ""
        msg = f"{type(self).__name__} files not found in {folders[0]}{also}: missing {', '.join(missing)}."
        if failures:
            return (msg + " Download failed:\n  " + "\n  ".join(failures)
                    + f"\nCopy the IDX files ({all_files}) into {folders[0]}, or retry with network access.")
        return (msg + f" Pass download=True to fetch them from {' or '.join(self.mirrors)} (MD5-verified), "
                f"or copy the IDX files ({all_files}) into {folders[0]}.")


def _locate(folders, name):
    for folder in folders:
        for candidate in (folder / name, folder / name[:-3]):
            if candidate.is_file():
                return candidate
    return None


def _check_pair(paths, images, labels):
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise IDXFormatError(f"{paths[0]}: Expect: uint8 images of shape (N, 28, 28), "
                             f"Actual: {images.dtype} of shape {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise IDXFormatError(f"{paths[1]}: Expect: uint8 labels of shape (N,), "
                             f"Actual: {labels.dtype} of shape {labels.shape}")
    if labels.shape[0] != images.shape[0]:
        raise IDXFormatError(f"{paths[1]}: Expect: {images.shape[0]} labels (one per image in {paths[0].name}), "
                             f"Actual: {labels.shape[0]}")
    if labels.size and labels.max() > 9:
        raise IDXFormatError(f"{paths[1]}: Expect: labels in 0..9, Actual: max label {int(labels.max())}")


def _download(root, resources, mirrors):
    """Fetch each (name, md5) into ``root`` from the first mirror that serves it with
    the right MD5; returns the failed attempts, one line each."""
    failures = []
    for name, md5 in resources:
        for mirror in mirrors:
            url = mirror + name
            try:
                with urlopen(url, timeout=30) as response:
                    payload = response.read()
            except (OSError, ValueError) as exc:  # URLError and socket timeouts are OSErrors
                failures.append(f"{url}: {exc}")
                continue
            digest = hashlib.md5(payload).hexdigest()
            if digest != md5:
                failures.append(f"{url}: MD5 {digest} does not match the official {md5}")
                continue
            root.mkdir(parents=True, exist_ok=True)
            _write_atomically(root / name, payload)
            break
    return failures


def _write_atomically(path, payload):
    """A crash leaves either the old file or the complete new one, never half of it."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

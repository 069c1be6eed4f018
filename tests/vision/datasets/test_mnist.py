"""distnn.vision.datasets.MNIST / FashionMNIST: the MNIST re-export, FashionMNIST's
own folder, classes and normalisation, and its download (MD5, offline error)."""

import gzip
import hashlib
import io
import struct
import urllib.error

import numpy as np
import pytest

import distnn
from distnn.datasets import mnist as mnist_module
from distnn.vision import datasets, transforms
from distnn.vision.datasets import DatasetNotFoundError

FILES = {True: ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         False: ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def idx_gz(array):
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


def fake_split(n, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n).astype(np.uint8)


def write_split(folder, train, n=5, seed=0):
    images, labels = fake_split(n, seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in zip(FILES[train], (images, labels)):
        (folder / name).write_bytes(idx_gz(array))
    return images, labels


def test_mnist_is_the_distnn_dataset():
    assert datasets.MNIST is distnn.datasets.MNIST


def test_fashion_mnist_reads_its_own_folder(tmp_path):
    images, labels = write_split(tmp_path / "FashionMNIST" / "raw", train=False)
    ds = datasets.FashionMNIST(tmp_path, train=False)
    assert len(ds) == 5 and ds.targets.numpy().tolist() == labels.tolist()
    np.testing.assert_array_equal(ds.data.numpy(), images)
    assert ds.classes[0] == "T-shirt/top" and ds.class_to_idx["Ankle boot"] == 9
    img, _ = ds[2]  # the default sample is normalised with Fashion-MNIST's statistics
    np.testing.assert_allclose(img.numpy()[0], (images[2] / 255 - 0.2860) / 0.3530, rtol=1e-5, atol=1e-5)
    raw = datasets.FashionMNIST(tmp_path, train=False, transform=transforms.ToTensor())[2][0]
    np.testing.assert_allclose(raw.numpy()[0], images[2] / 255, rtol=1e-6)


def test_fashion_mnist_never_reads_mnist_files_from_the_same_root(tmp_path):
    write_split(tmp_path, train=True)  # MNIST's flat layout
    write_split(tmp_path / "MNIST" / "raw", train=True)
    assert len(datasets.MNIST(tmp_path)) == 5
    with pytest.raises(DatasetNotFoundError) as info:
        datasets.FashionMNIST(tmp_path)
    msg = str(info.value)
    assert msg.startswith("FashionMNIST files not found in " + str(tmp_path / "FashionMNIST" / "raw"))
    assert "fashion-mnist" in msg and "download=True" in msg


def test_fashion_mnist_constants_are_torchvisions(torchvision):
    theirs = torchvision.datasets.FashionMNIST
    assert datasets.FashionMNIST.classes == theirs.classes
    assert list(datasets.FashionMNIST.mirrors) == theirs.mirrors
    ours = datasets.FashionMNIST.resources
    assert list(ours[True] + ours[False]) == theirs.resources


def test_fashion_mnist_download_goes_to_its_raw_folder(tmp_path, monkeypatch):
    payloads = {}
    for train in (True, False):
        images, labels = fake_split(4, seed=int(train))
        payloads.update(zip(FILES[train], (idx_gz(images), idx_gz(labels))))
    resources = {train: tuple((n, hashlib.md5(payloads[n]).hexdigest()) for n in FILES[train])
                 for train in (True, False)}
    monkeypatch.setattr(datasets.FashionMNIST, "resources", resources)
    mirror = datasets.FashionMNIST.mirrors[0]
    monkeypatch.setattr(mnist_module, "urlopen", lambda url, timeout=None: io.BytesIO(payloads[url[len(mirror):]]))
    assert len(datasets.FashionMNIST(tmp_path, train=False, download=True)) == 4
    assert sorted(p.name for p in (tmp_path / "FashionMNIST" / "raw").iterdir()) == sorted(FILES[False])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["FashionMNIST"]


def test_fashion_mnist_offline_error(tmp_path, monkeypatch):
    def offline(url, timeout=None):
        raise urllib.error.URLError("network unreachable")

    monkeypatch.setattr(mnist_module, "urlopen", offline)
    with pytest.raises(DatasetNotFoundError) as info:
        datasets.FashionMNIST(tmp_path, download=True)
    msg = str(info.value)
    assert "Download failed" in msg and "network unreachable" in msg
    assert datasets.FashionMNIST.mirrors[0] + "train-images-idx3-ubyte.gz" in msg
    assert list(tmp_path.iterdir()) == []

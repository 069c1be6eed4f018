"""distnn.vision.datasets.CIFAR10 / CIFAR100 on tiny folders in the real format:
layout and pixels (against torchvision reading the same files when it is
installed), samples and transforms, malformed and malicious files, and download
(offline error, MD5 check, safe atomic extraction) without the network."""

import hashlib
import io
import os
import tarfile
import urllib.error

import numpy as np
import pytest

import distnn
from distnn.utils.data import DataLoader
from distnn.vision import datasets, transforms
from distnn.vision.datasets import CIFARFormatError, DatasetNotFoundError, UnsafePickleError
from distnn.vision.datasets import utils as dl_utils


def test_cifar10_layout_pixels_and_classes(cifar10_root):
    root, batches, classes = cifar10_root
    train, test = datasets.CIFAR10(root, train=True), datasets.CIFAR10(str(root), train=False)
    rows = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)])
    labels = sum((batches[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    assert len(train) == 10 and len(test) == 3
    assert isinstance(train.data, np.ndarray) and train.data.dtype == np.uint8
    assert train.data.shape == (10, 32, 32, 3)
    # a row is 1024 red, then green, then blue values, each row-major
    assert train.data[4, 5, 7, 2] == rows[4, 2 * 1024 + 5 * 32 + 7]
    np.testing.assert_array_equal(train.data, rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    assert train.targets == labels and all(type(t) is int for t in train.targets)
    assert train.classes == classes and train.class_to_idx["cat"] == 3
    img, target = train[4]
    assert isinstance(img, np.ndarray) and img.shape == (32, 32, 3) and target == labels[4]
    assert "Number of datapoints: 10" in repr(train) and "Split: Test" in repr(test)


def test_cifar100_uses_fine_labels(tmp_path, make_cifar):
    batches, classes = make_cifar(tmp_path, kind="cifar100", writer="protocol5")
    ds = datasets.CIFAR100(tmp_path, train=True)
    assert len(ds) == 4 and ds.targets == batches["train"][1] and ds.classes == classes
    assert len(datasets.CIFAR100(tmp_path, train=False)) == 3


@pytest.mark.parametrize("writer", ["python2", "protocol2", "protocol5"])
def test_every_pickle_writer_reads_the_same(tmp_path, make_cifar, writer):
    batches, _ = make_cifar(tmp_path, writer=writer, seed=3)
    ds = datasets.CIFAR10(tmp_path, train=False)
    np.testing.assert_array_equal(ds.data.reshape(3, -1), batches["test_batch"][0].reshape(3, 3, 1024)
                                  .transpose(0, 2, 1).reshape(3, -1))


def test_matches_torchvision_on_the_same_files(cifar10_root, torchvision, monkeypatch):
    root, _, _ = cifar10_root
    # torchvision checks the official MD5s of local files; these are fakes
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *args: True)
    for train in (True, False):
        ours, theirs = datasets.CIFAR10(root, train=train), torchvision.datasets.CIFAR10(root, train=train)
        np.testing.assert_array_equal(ours.data, theirs.data)
        assert ours.targets == theirs.targets and ours.classes == theirs.classes
        assert ours.class_to_idx == theirs.class_to_idx
    ours = datasets.CIFAR10(root, transform=transforms.ToTensor())[7][0]
    theirs = torchvision.datasets.CIFAR10(root, transform=torchvision.transforms.ToTensor())[7][0]
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


@pytest.mark.parametrize("cls", [datasets.CIFAR10, datasets.CIFAR100])
def test_official_constants_are_torchvisions(cls, torchvision):
    theirs = getattr(torchvision.datasets, cls.__name__)
    for name in ("base_folder", "url", "filename", "tgz_md5", "train_list", "test_list", "meta"):
        assert getattr(cls, name) == getattr(theirs, name), name


def test_transforms_and_dataloader(cifar10_root):
    root, _, _ = cifar10_root
    pipeline = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                                   transforms.ToTensor(),
                                   transforms.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))])
    ds = datasets.CIFAR10(root, transform=pipeline, target_transform=lambda t: t + 100)
    img, target = ds[0]
    assert img.shape == (3, 32, 32) and img.dtype == distnn.float32 and target == ds.targets[0] + 100
    images, targets = next(iter(DataLoader(ds, batch_size=4, shuffle=True)))
    assert images.shape == (4, 3, 32, 32) and targets.shape == (4,) and targets.dtype == distnn.int64


def test_a_transform_cannot_change_the_dataset(cifar10_root):
    root, _, _ = cifar10_root
    ds = datasets.CIFAR10(root, transform=lambda img: img.fill(0) or img)
    before = ds.data[1].copy()
    assert ds[1][0].max() == 0
    np.testing.assert_array_equal(ds.data[1], before)


def test_missing_files_name_folder_files_and_download(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        datasets.CIFAR10(tmp_path)
    msg = str(info.value)
    assert str(tmp_path / "cifar-10-batches-py") in msg and "data_batch_1" in msg and "batches.meta" in msg
    assert "download=True" in msg and "cifar-10-python.tar.gz" in msg
    assert isinstance(info.value, FileNotFoundError)


def test_malicious_batch_is_refused(cifar10_root):
    root, _, _ = cifar10_root

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {root / 'pwned'}",))

    import pickle
    (root / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps({"data": Exploit()}, protocol=2))
    with pytest.raises(UnsafePickleError, match=r"test_batch: refusing to load global 'posix.system'"):
        datasets.CIFAR10(root, train=False)
    assert not (root / "pwned").exists()


@pytest.mark.parametrize("entry, match", [
    ({"data": np.zeros((2, 3072), np.float32), "labels": [0, 1]}, r"'data' uint8 array of shape \(N, 3072\)"),
    ({"data": np.zeros((2, 1024), np.uint8), "labels": [0, 1]}, r"Actual: uint8 of shape \(2, 1024\)"),
    ({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 10]}, r"labels in 0..9 .* Actual: 0..10"),
    ({"data": np.zeros((2, 3072), np.uint8), "labels": [0]}, r"Expect: 2 labels"),
    ({"data": np.zeros((2, 3072), np.uint8)}, r"Expect: key 'labels'"),
    ([1, 2], r"Expect: a pickled dict, Actual: list"),
])
def test_malformed_batches_are_refused(cifar10_root, pickle_writer, entry, match):
    root, _, _ = cifar10_root
    (root / "cifar-10-batches-py" / "test_batch").write_bytes(pickle_writer[1](entry))
    with pytest.raises(CIFARFormatError, match=match):
        datasets.CIFAR10(root, train=False)


def test_truncated_batch_is_a_format_error(cifar10_root):
    root, _, _ = cifar10_root
    path = root / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(CIFARFormatError, match="test_batch: corrupt or truncated pickle"):
        datasets.CIFAR10(root, train=False)


# --- download -----------------------------------------------------------------------------

def tar_gz(folder, extra=None):
    """The bytes of a .tar.gz holding ``folder`` (as the official archive does), plus ``extra`` members."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(folder, arcname=folder.name)
        for info, payload in (extra or []):
            tar.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return buf.getvalue()


class FakeServer:
    def __init__(self, files):
        self.files, self.requested = files, []

    def __call__(self, url, timeout=None):
        self.requested.append(url)
        if url not in self.files:
            raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
        return io.BytesIO(self.files[url])


@pytest.fixture
def archive(tmp_path, make_cifar):
    make_cifar(tmp_path / "src")
    return tar_gz(tmp_path / "src" / "cifar-10-batches-py")


def test_offline_download_says_so_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(dl_utils, "urlopen", FakeServer({}))
    with pytest.raises(DatasetNotFoundError) as info:
        datasets.CIFAR10(tmp_path / "data", download=True)
    msg = str(info.value)
    assert "Download failed" in msg and datasets.CIFAR10.url in msg and "name resolution" in msg
    assert "Retry with network access" in msg and "data_batch_1" in msg
    assert not (tmp_path / "data").exists()


def test_download_verifies_md5_extracts_and_reuses_the_archive(tmp_path, monkeypatch, archive):
    server = FakeServer({datasets.CIFAR10.url: archive})
    monkeypatch.setattr(dl_utils, "urlopen", server)
    monkeypatch.setattr(datasets.CIFAR10, "tgz_md5", hashlib.md5(archive).hexdigest())
    ds = datasets.CIFAR10(tmp_path / "data", train=False, download=True)
    assert len(ds) == 3 and len(server.requested) == 1
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["cifar-10-batches-py",
                                                                      "cifar-10-python.tar.gz"]
    # files present: no request; files gone but a verified archive present: extracted again, no request
    datasets.CIFAR10(tmp_path / "data", download=True)
    (tmp_path / "data" / "cifar-10-batches-py" / "test_batch").unlink()
    assert len(datasets.CIFAR10(tmp_path / "data", train=False, download=True)) == 3
    assert len(server.requested) == 1


def test_download_with_wrong_md5_is_refused(tmp_path, monkeypatch, archive):
    monkeypatch.setattr(dl_utils, "urlopen", FakeServer({datasets.CIFAR10.url: archive}))
    with pytest.raises(DatasetNotFoundError, match="does not match the expected c58f30108f718f92721af3b95e74349a"):
        datasets.CIFAR10(tmp_path / "data", download=True)
    assert not (tmp_path / "data").exists()

"""distnn.datasets: the IDX reader and MNIST on the shared 10k re-split (counts,
class balance, pixels, layouts, error messages, download with MD5 checks),
the transforms, and SyntheticDigits (determinism, balance, learnability)."""

import gzip
import hashlib
import io
import re
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

import distnn
from distnn.datasets import MNIST, DatasetNotFoundError, IDXFormatError, SyntheticDigits, read_idx, transforms
from distnn.datasets import mnist as mnist_module
from distnn.utils.data import DataLoader, default_collate
from memory_limit import call_with_memory_cap, needs_proc_status

MNIST_10K = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mnist-10k"
needs_mnist = pytest.mark.skipif(not (MNIST_10K / "t10k-labels-idx1-ubyte.gz").is_file(),
                                 reason=f"shared MNIST files not found in {MNIST_10K}")

# From the README next to the files.
CLASS_COUNTS = {True: [773, 905, 834, 803, 788, 723, 756, 813, 787, 818],
                False: [207, 230, 198, 207, 194, 169, 202, 215, 187, 191]}
FILES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


@pytest.fixture(scope="module")
def mnist_train():
    return MNIST(MNIST_10K, train=True)


@needs_mnist
@pytest.mark.parametrize("train, count", [(True, 8000), (False, 2000)])
def test_counts_classes_and_pixels(train, count):
    ds = MNIST(MNIST_10K, train=train)
    assert len(ds) == count
    assert ds.data.shape == (count, 28, 28) and ds.data.dtype == distnn.uint8
    assert ds.targets.shape == (count,) and ds.targets.dtype == distnn.int64
    assert np.bincount(ds.targets.numpy(), minlength=10).tolist() == CLASS_COUNTS[train]
    pixels = ds.data.numpy()
    assert pixels.min() == 0 and pixels.max() == 255


@needs_mnist
def test_default_sample_is_normalized_float_image(mnist_train):
    img, label = mnist_train[3]
    raw = mnist_train.data.numpy()[3].astype(np.float32) / np.float32(255)
    assert img.shape == (1, 28, 28) and img.dtype == distnn.float32
    assert type(label) is int and label == int(mnist_train.targets[3])
    np.testing.assert_allclose(img.numpy()[0], (raw - 0.1307) / 0.3081, rtol=1e-6, atol=1e-6)
    same = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    np.testing.assert_array_equal(MNIST(MNIST_10K, transform=same)[3][0].numpy(), img.numpy())


@needs_mnist
def test_transform_receives_uint8_array_and_target_transform_the_label():
    seen = []
    ds = MNIST(MNIST_10K, train=False, transform=lambda a: seen.append(a) or a.shape,
               target_transform=lambda y: y + 100)
    shape, target = ds[0]
    assert seen[0].dtype == np.uint8 and shape == (28, 28) and target >= 100


@needs_mnist
def test_loader_batches_equal_per_sample_collate(mnist_train):
    idx = [5, 1, 7000, 42]
    fast = next(iter(DataLoader(distnn.utils.data.Subset(mnist_train, idx), batch_size=4)))
    slow = default_collate([mnist_train[i] for i in idx])
    for f, s in zip(fast, slow):
        assert f.dtype == s.dtype
        np.testing.assert_array_equal(f.numpy(), s.numpy())


@needs_mnist
def test_arrays_fast_path(mnist_train):
    x, y = mnist_train.arrays()
    assert x.shape == (8000, 1, 28, 28) and x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(x[10], mnist_train[10][0].numpy())
    raw, _ = mnist_train.arrays(normalize=False)
    assert raw.min() == 0.0 and raw.max() == 1.0 and raw.dtype == np.float32


@needs_mnist
def test_torchvision_raw_layout_is_found(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in FILES[2:]:
        (raw / name).symlink_to(MNIST_10K / name)
    assert len(MNIST(tmp_path, train=False)) == 2000


def test_missing_files_error_names_directory_and_files(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        MNIST(tmp_path / "nowhere", train=True)
    msg = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert str(tmp_path / "nowhere") in msg and "download=True" in msg
    assert "missing train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz" in msg
    assert all(name in msg for name in FILES)


def idx_bytes(array, code=0x08):
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.mark.parametrize("payload, match", [
    (b"\x00\x00\x08", "too short for an IDX header"),
    (b"\x12\x34\x08\x01" + b"\x00" * 8, "not an IDX file: magic number 0x12340801"),
    (b"\x00\x00\x07\x01" + b"\x00" * 8, "not an IDX file"),
    (b"\x00\x00\x08\x03\x00\x00", r"truncated header: 3 dims need 16 bytes"),
    (idx_bytes(np.zeros((3, 2, 2), np.uint8))[:-1], r"need 12 data bytes, found 11 \(truncated\)"),
    (idx_bytes(np.zeros(3, np.uint8)) + b"\x00", r"found 4 \(trailing data\)"),
])
def test_read_idx_rejects_malformed_files(tmp_path, payload, match):
    path = tmp_path / "bad-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(payload))
    with pytest.raises(IDXFormatError, match=match) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def gzip_bomb(header, zero_members):
    """gzip data whose stream is ``header`` then ``zero_members`` MiB of zeros: one
    1 KiB member per MiB, so a 1 GiB stream costs 1 MB and no time to build."""
    return gzip.compress(header) + gzip.compress(bytes(1 << 20)) * zero_members


def idx_header(code, dims):
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


@needs_proc_status
@pytest.mark.parametrize("header, zero_mib, match", [
    # 10,000 28x28 images (7.84 MB) claimed, 1 GiB of zeros inflated
    (idx_header(0x08, (10000, 28, 28)), 1024,
     r"dims \(10000, 28, 28\) of uint8 need 7840000 data bytes, found more than 8888576 \(trailing data\)"),
    # dims that multiply to 1e13 bytes: refused from the header alone
    (idx_header(0x08, (100000, 100000, 1000)), 1024,
     r"dims \(100000, 100000, 1000\) of uint8 need 10000000000000 data bytes, more than the limit of "
     r"\d+ \(mnist.MAX_IDX_BYTES\)"),
])
def test_gzip_bomb_is_refused_without_inflating_it(tmp_path, header, zero_mib, match):
    path = tmp_path / "bomb-idx3-ubyte.gz"
    path.write_bytes(gzip_bomb(header, zero_mib))
    assert path.stat().st_size < 2 << 20
    seconds, outcome = call_with_memory_cap(read_idx, path)
    assert outcome.startswith(f"IDXFormatError {path}: "), outcome
    assert re.search(match, outcome), outcome
    assert seconds < 5  # inflating all of it takes longer; reading 8 MB does not


def test_uncompressed_idx_size_is_checked_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "big-idx3-ubyte"
    path.write_bytes(idx_header(0x0C, (1000, 1000, 100)) + b"\0" * 12)
    monkeypatch.setattr(np, "empty", None)  # no buffer may be allocated for what the header claims
    with pytest.raises(IDXFormatError, match=r"need 400000000 data bytes, found 12 \(truncated\)"):
        read_idx(path)


def test_read_idx_round_trip_big_endian_types(tmp_path):
    arr = np.arange(12, dtype=np.int32).reshape(3, 4) - 5
    (tmp_path / "x").write_bytes(idx_bytes(arr, code=0x0C))
    out = read_idx(tmp_path / "x")
    assert out.dtype == np.int32 and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)


@needs_mnist
@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_damaged_mnist_file_error_names_the_file(tmp_path, damage):
    for name in FILES[2:]:
        shutil.copy(MNIST_10K / name, tmp_path / name)
    victim = tmp_path / FILES[2]
    data = victim.read_bytes()
    victim.write_bytes(data[:len(data) // 2] if damage == "truncate" else b"not gzip at all" * 10)
    with pytest.raises(IDXFormatError, match="corrupt or truncated gzip data") as info:
        MNIST(tmp_path, train=False)
    assert str(victim) in str(info.value)


@needs_mnist
def test_label_count_mismatch_is_reported(tmp_path):
    shutil.copy(MNIST_10K / FILES[2], tmp_path / FILES[2])
    (tmp_path / FILES[3]).write_bytes(gzip.compress(idx_bytes(np.zeros(5, np.uint8))))
    with pytest.raises(IDXFormatError, match="Expect: 2000 labels .* Actual: 5"):
        MNIST(tmp_path, train=False)


class FakeMirror:
    """Stands in for urlopen: serves ``files`` by URL, refuses everything else."""

    def __init__(self, files):
        self.files, self.requested = files, []

    def __call__(self, url, timeout=None):
        self.requested.append(url)
        if url not in self.files:
            raise OSError(f"unreachable: {url}")
        return io.BytesIO(self.files[url])


@needs_mnist
def test_download_verifies_md5_and_falls_back_to_next_mirror(tmp_path, monkeypatch):
    names = FILES[2:]
    real = {n: (MNIST_10K / n).read_bytes() for n in names}
    md5 = {n: hashlib.md5(real[n]).hexdigest() for n in names}
    monkeypatch.setattr(MNIST, "resources", {False: tuple((n, md5[n]) for n in names)})
    monkeypatch.setattr(MNIST, "mirrors", ("https://a/", "https://b/"))
    fake = FakeMirror({**{f"https://a/{n}": b"tampered" for n in names},
                       **{f"https://b/{n}": real[n] for n in names}})
    monkeypatch.setattr(mnist_module, "urlopen", fake)
    ds = MNIST(tmp_path / "dl", train=False, download=True)
    assert len(ds) == 2000 and fake.requested[:2] == [f"https://a/{names[0]}", f"https://b/{names[0]}"]
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == sorted(names)  # no temp files left


def test_download_failure_lists_each_mirror(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist_module, "urlopen", FakeMirror({}))
    with pytest.raises(DatasetNotFoundError) as info:
        MNIST(tmp_path, train=False, download=True)
    msg = str(info.value)
    for mirror in MNIST.mirrors:
        assert f"{mirror}t10k-images-idx3-ubyte.gz: unreachable" in msg
    assert "missing t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz" in msg
    assert list(tmp_path.iterdir()) == []


def test_official_checksums_are_the_documented_ones():
    assert dict(MNIST.resources[True] + MNIST.resources[False]) == {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"}


# --- transforms -------------------------------------------------------------------------

@pytest.mark.parametrize("array, expected_shape, scale", [
    (np.full((4, 5), 255, np.uint8), (1, 4, 5), 1.0),
    (np.full((4, 5, 3), 51, np.uint8), (3, 4, 5), 0.2),
    (np.full((2, 2), 0.5, np.float64), (1, 2, 2), 0.5),
])
def test_to_tensor(array, expected_shape, scale):
    t = transforms.ToTensor()(array)
    assert t.shape == expected_shape and t.dtype == distnn.float32
    np.testing.assert_allclose(t.numpy(), scale)


def test_normalize_and_errors():
    t = distnn.ones(2, 3, 3)
    out = transforms.Normalize((0.5, 1.0), (0.5, 2.0))(t)
    assert out.numpy()[0].max() == 1.0 and out.numpy()[1].max() == 0.0 and out.dtype == distnn.float32
    with pytest.raises(TypeError, match="float tensor. Got torch.int64"):
        transforms.Normalize((0,), (1,))(distnn.ones(1, 2, 2, dtype=distnn.int64))
    with pytest.raises(ValueError, match="std evaluated to zero"):
        transforms.Normalize((0,), (0,))(t)
    with pytest.raises(TypeError, match="ndarray"):
        transforms.ToTensor()(t)
    assert transforms.Lambda(lambda x: x + 1)(1) == 2


# --- SyntheticDigits --------------------------------------------------------------------

def test_synthetic_digits_deterministic_per_seed_and_split():
    a, b = SyntheticDigits(60, seed=3), SyntheticDigits(60, seed=3)
    np.testing.assert_array_equal(a.data.numpy(), b.data.numpy())
    np.testing.assert_array_equal(a.targets.numpy(), b.targets.numpy())
    assert not np.array_equal(a.data.numpy(), SyntheticDigits(60, seed=4).data.numpy())
    assert not np.array_equal(a.data.numpy(), SyntheticDigits(60, seed=3, train=False).data.numpy())


@pytest.mark.parametrize("n", [0, 7, 100, 253])
def test_synthetic_digits_balanced_classes_and_format(n):
    ds = SyntheticDigits(n, seed=0)
    counts = np.bincount(ds.targets.numpy(), minlength=10)
    assert counts.max() - counts.min() <= 1 and counts.sum() == n
    assert ds.data.shape == (n, 28, 28) and ds.data.dtype == distnn.uint8
    if n:
        img, label = ds[0]
        assert img.shape == (1, 28, 28) and img.dtype == distnn.float32 and 0 <= label <= 9


def test_synthetic_digits_are_learnable():
    """1-nearest-neighbour on raw pixels: a floor far below what a ConvNet reaches."""
    x_train, y_train = SyntheticDigits(2000, seed=0).arrays()
    x_test, y_test = SyntheticDigits(300, seed=0, train=False).arrays()
    a, b = x_test.reshape(300, -1), x_train.reshape(2000, -1)
    dist = (a * a).sum(1)[:, None] - 2 * a @ b.T + (b * b).sum(1)[None]
    assert (y_train[dist.argmin(1)] == y_test).mean() > 0.9


def test_synthetic_digits_rejects_bad_n():
    with pytest.raises(ValueError, match="Expect: n a non-negative int, Actual: -1"):
        SyntheticDigits(-1)

"""Tiny CIFAR folders in the real format, written into tmp_path.

The official batches were pickled by Python 2's cPickle (protocol 2): strings as
BINSTRING, arrays through ``numpy.core.multiarray._reconstruct`` with their bytes
as a Python 2 ``str``. ``py2_pickle`` writes exactly those opcodes; the Python 3
writers (protocols 2 and 5) cover files re-saved by newer tools."""

import pickle
import struct

import numpy as np
import pytest


def py2_pickle(obj):
    """``obj`` (dicts, lists, ints, str, uint8 arrays) as Python 2 cPickle protocol 2 bytes."""
    out = bytearray(b"\x80\x02")

    def string(s):
        data = s.encode("latin1") if isinstance(s, str) else s
        out.extend((b"U" + bytes([len(data)])) if len(data) < 256 else (b"T" + struct.pack("<I", len(data))))
        out.extend(data)

    def integer(n):
        if 0 <= n < 256:
            out.extend(b"K" + bytes([n]))
        elif 0 <= n < 65536:
            out.extend(b"M" + struct.pack("<H", n))
        else:
            out.extend(b"J" + struct.pack("<i", n))

    def emit(o):
        if isinstance(o, dict):
            out.extend(b"}(")
            for k, v in o.items():
                emit(k)
                emit(v)
            out.extend(b"u")
        elif isinstance(o, list):
            out.extend(b"](")
            for v in o:
                emit(v)
            out.extend(b"e")
        elif isinstance(o, (int, np.integer)):
            integer(int(o))
        elif isinstance(o, (str, bytes)):
            string(o)
        elif isinstance(o, np.ndarray):
            out.extend(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85")
            string("b")
            out.extend(b"\x87R(K\x01(")  # REDUCE, then the state: version 1, shape...
            for n in o.shape:
                integer(n)
            out.extend(b"tcnumpy\ndtype\n")
            string(o.dtype.str[1:])
            out.extend(b"K\x00K\x01\x87R(K\x03")
            string(o.dtype.str[0])
            out.extend(b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89")  # dtype BUILD, is_fortran False
            string(np.ascontiguousarray(o).tobytes())
            out.extend(b"tb")  # the array's BUILD
        else:
            raise TypeError(f"py2_pickle cannot write {type(o)}")

    emit(obj)
    out.extend(b".")
    return bytes(out)


WRITERS = {
    "python2": py2_pickle,
    "protocol2": lambda obj: pickle.dumps(obj, protocol=2),
    "protocol5": lambda obj: pickle.dumps(obj, protocol=5),
}


def write_cifar(root, kind="cifar10", writer="python2", sizes=None, seed=0):
    """A CIFAR-10 or -100 folder under ``root`` with random images; returns
    {file name: (raw rows N x 3072, labels)} and the class names."""
    rng = np.random.default_rng(seed)
    if kind == "cifar10":
        folder, meta_name, meta_key, label_key = "cifar-10-batches-py", "batches.meta", "label_names", "labels"
        classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
        sizes = sizes or {"data_batch_1": 2, "data_batch_2": 3, "data_batch_3": 1, "data_batch_4": 2,
                          "data_batch_5": 2, "test_batch": 3}
    else:
        folder, meta_name, meta_key, label_key = "cifar-100-python", "meta", "fine_label_names", "fine_labels"
        classes = [f"class_{i:02d}" for i in range(100)]
        sizes = sizes or {"train": 4, "test": 3}
    path = root / folder
    path.mkdir(parents=True, exist_ok=True)
    dump = WRITERS[writer]
    batches = {}
    for name, n in sizes.items():
        rows = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, len(classes), n)]
        entry = {"batch_label": f"fake batch {name}", label_key: labels, "data": rows,
                 "filenames": [f"img_{i}.png" for i in range(n)]}
        if kind == "cifar100":
            entry["coarse_labels"] = [v // 5 for v in labels]
        (path / name).write_bytes(dump(entry))
        batches[name] = (rows, labels)
    (path / meta_name).write_bytes(dump({meta_key: classes, "num_cases_per_batch": 10000}))
    return batches, classes


@pytest.fixture
def cifar10_root(tmp_path):
    batches, classes = write_cifar(tmp_path / "data")
    return tmp_path / "data", batches, classes


@pytest.fixture
def make_cifar():
    """``write_cifar`` for tests that need other kinds, writers or sizes."""
    return write_cifar


@pytest.fixture(params=sorted(WRITERS))
def pickle_writer(request):
    """Each way a CIFAR batch may have been pickled: (name, dumps function)."""
    return request.param, WRITERS[request.param]

"""distnn.vision.datasets.restricted_pickle: plain data and numeric arrays come back
from every way they are pickled; anything that could run code, object arrays and
inconsistent array states are refused before anything is called."""

import io
import os
import pickle

import numpy as np
import pytest

from distnn.vision.datasets import UnsafePickleError
from distnn.vision.datasets.restricted_pickle import load


def loads(payload):
    return load(io.BytesIO(payload), source="batch")


def test_plain_data_and_uint8_arrays_round_trip(pickle_writer):
    _, dumps = pickle_writer
    rows = np.random.default_rng(0).integers(0, 256, (4, 3072), dtype=np.uint8)
    entry = {"data": rows, "labels": [0, 9, 255, 70000], "batch_label": "training batch 1 of 5",
             "filenames": ["a.png", "b.png"]}
    out = loads(dumps(entry))
    assert out.keys() == entry.keys()
    assert out["data"].dtype == np.uint8 and out["data"].shape == (4, 3072)
    np.testing.assert_array_equal(out["data"], rows)
    assert out["labels"] == entry["labels"] and out["filenames"] == entry["filenames"]
    assert out["batch_label"] == entry["batch_label"]


@pytest.mark.parametrize("protocol", [2, 5])
@pytest.mark.parametrize("array", [
    np.arange(6, dtype=">f4").reshape(2, 3),
    np.asfortranarray(np.arange(12, dtype=np.int64).reshape(3, 4)),
    np.array([True, False]),
    np.zeros((0, 5), np.uint8),
], ids=["big-endian-f4", "fortran-i8", "bool", "empty"])
def test_numeric_arrays_and_scalars_of_python3_writers(protocol, array):
    out = loads(pickle.dumps({"a": array, "s": np.int64(7), "b": b"raw"}, protocol=protocol))
    np.testing.assert_array_equal(out["a"], array)
    assert out["a"].dtype == array.dtype and out["a"].shape == array.shape
    assert out["s"] == 7 and out["b"] == b"raw"


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Evaluates:
    def __reduce__(self):
        return (eval, ("1 + 1",))


@pytest.mark.parametrize("make, refused", [
    (lambda marker: _RunsCode(marker), "posix.system"),
    (lambda marker: _Evaluates(), r"(builtins|__builtin__)\.eval"),
    (lambda marker: {"data": np.array([1, "x"], dtype=object)}, "dtype code"),
    (lambda marker: np.rec.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f4")]), "numpy.rec"),
    (lambda marker: np.ma.masked_array([1, 2], mask=[0, 1]), "numpy.ma"),
])
@pytest.mark.parametrize("protocol", [2, 5])
def test_crafted_pickles_are_refused_without_side_effects(tmp_path, make, refused, protocol):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(make(marker), protocol=protocol)
    with pytest.raises(UnsafePickleError, match=refused) as info:
        loads(payload)
    assert str(info.value).startswith("batch: ")
    assert isinstance(info.value, pickle.UnpicklingError)
    assert not marker.exists()


def test_array_state_that_does_not_match_its_bytes_is_refused():
    # A hand-edited Python 2 style array: shape claims 10**9 x 3072 bytes, 4 are there.
    payload = (b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R"
               b"(K\x01J\x00\xca\x9a;M\x00\x0c\x86cnumpy\ndtype\nU\x02u1K\x00K\x01\x87R"
               b"(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89U\x04abcdtb.")
    with pytest.raises(UnsafePickleError, match=r"needs 3072000000000 bytes, the pickle holds 4"):
        loads(payload)


@pytest.mark.parametrize("payload, match", [
    (b"\x80\x02cnumpy\nndarray\n)\x81.", "placeholder|ndarray"),  # NEWOBJ on the marker: harmless, but no data
    (b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\ndtype\nK\x00\x85U\x01b\x87R.",
     r"_reconstruct\(numpy.ndarray"),
    (b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x04\x00\x00\x00zlib\x86R.", "encoding 'zlib'"),
    (b"\x80\x02c__builtin__\nbytes\nJ\x00\x00\x00@\x85R.", r"bytes\(\) with no arguments"),  # bytes(2**30)
])
def test_allowed_names_refuse_arguments_they_never_need(payload, match):
    try:
        result = loads(payload)
    except UnsafePickleError as exc:
        assert __import__("re").search(match, str(exc))
    else:  # an instance of the inert marker class is all NEWOBJ can make
        assert type(result).__name__ == "_NdarrayName"


def test_persistent_ids_and_truncation_fail_as_pickle_errors():
    with pytest.raises(pickle.UnpicklingError):
        loads(b"\x80\x02X\x01\x00\x00\x00aQ.")  # BINPERSID: needs persistent_load, which is absent
    with pytest.raises((EOFError, pickle.UnpicklingError)):
        loads(pickle.dumps({"data": np.zeros((2, 3), np.uint8)}, protocol=2)[:-20])


def test_shared_and_cyclic_structures_are_walked_once():
    shared = [np.arange(3, dtype=np.uint8)]
    for _ in range(30):  # 2**30 paths to the array, one object per level in the pickle
        shared = [shared, shared]
    out = loads(pickle.dumps({"data": shared}, protocol=5))["data"]
    for _ in range(30):
        assert out[0] is out[1]
        out = out[0]
    np.testing.assert_array_equal(out[0], [0, 1, 2])
    cycle = [np.zeros(2, np.uint8)]
    cycle.append(cycle)
    out = loads(pickle.dumps(cycle, protocol=2))
    assert out[1] is out and out[0].dtype == np.uint8
    deep = []
    for _ in range(40):
        deep = [deep]
    with pytest.raises(UnsafePickleError, match="nested deeper than 32 levels"):
        loads(pickle.dumps(deep))

"""distnn.save / distnn.load: round trips of nested structures, files that are
not ours or are damaged, unsupported objects, and crash-safe writes."""

import collections
import io
import json
import math
import os
import re
import struct
import zipfile

import numpy as np
import pytest

import distnn
from distnn import serialization
from distnn.serialization import SerializationError, load, save
from memory_limit import call_with_memory_cap, needs_proc_status


def assert_same(a, b, path="obj"):
    """Equal values, equal types (tuple vs list, int vs float), equal tensor metadata."""
    assert type(a) is type(b), f"{path}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, distnn.Tensor):
        assert (a.dtype, a.shape, a.requires_grad) == (b.dtype, b.shape, b.requires_grad), path
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy(), err_msg=path)
    elif isinstance(a, np.ndarray):
        # arrays come back in native byte order, whatever order they were saved in
        assert a.dtype.newbyteorder("=") == b.dtype and b.dtype.isnative and a.shape == b.shape, path
        np.testing.assert_array_equal(a, b, err_msg=path)
    elif isinstance(a, dict):
        assert list(a) == list(b), path
        for (ka, va), kb in zip(a.items(), b):
            assert type(ka) is type(kb), f"{path} key {ka!r}"
            assert_same(va, b[kb], f"{path}[{ka!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), path
    else:
        assert a == b, path


def optimizer_like_state():
    return {"state": {0: {"step": distnn.tensor(3.0), "exp_avg": distnn.randn(4, 3),
                          "momentum_buffer": None},
                      1: {"step": distnn.tensor(3.0), "exp_avg": distnn.zeros(3)}},
            "param_groups": [{"lr": 0.001, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0,
                              "amsgrad": False, "params": [0, 1], "foreach": None}]}


CASES = {
    "float32_tensor": lambda: distnn.randn(3, 4),
    "requires_grad": lambda: distnn.randn(2, 2, requires_grad=True),
    "int64_bool_float16": lambda: [distnn.tensor([1, -2**62]), distnn.tensor([True, False]),
                                  distnn.tensor([1.5, -2.25], dtype=distnn.float16)],
    "float64_uint8_int8": lambda: (distnn.tensor([1e-300], dtype=distnn.float64),
                                  distnn.tensor([255], dtype=distnn.uint8), distnn.tensor([-3], dtype=distnn.int8)),
    "empty_and_scalar": lambda: {"empty": distnn.zeros(0, 3), "scalar": distnn.tensor(2.5),
                                 "empty_long": distnn.zeros(0, dtype=distnn.int64)},
    "non_contiguous": lambda: distnn.from_numpy(np.arange(12, dtype=np.float32).reshape(3, 4).T),
    "state_dict": lambda: collections.OrderedDict([("fc.weight", distnn.randn(2, 3)), ("fc.bias", distnn.zeros(2))]),
    "optimizer_state": optimizer_like_state,
    "python_values": lambda: {"none": None, "t": True, "f": False, "i": -7, "big": 2**80, "x": 0.1,
                              "nan": float("nan"), "inf": -float("inf"), "s": "näme\n", "b": b"\x00\xff",
                              "nested": [(1, [2.0, ("3",)]), {}]},
    "keys": lambda: {1: "int", "1": "str", 2.5: "float", None: "none", (1, "a"): "tuple"},
    "numpy": lambda: {"a": np.arange(6, dtype=np.int16).reshape(2, 3), "s": np.float32(1.25),
                      "i": np.int64(-4), "c": np.array([1 + 2j]), "f": np.asfortranarray(np.ones((2, 3))),
                      "be": np.arange(3, dtype=">f8")},
    "misc": lambda: {"dtype": distnn.float16, "device": distnn.device("cpu"), "size": distnn.zeros(2, 3).shape},
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("target", ["path", "file"])
def test_round_trip(tmp_path, name, target):
    obj = CASES[name]()
    if target == "path":
        save(obj, tmp_path / "ckpt.dn")
        out = load(str(tmp_path / "ckpt.dn"))
    else:
        buf = io.BytesIO()
        save(obj, buf)
        buf.seek(0)
        out = load(buf)
    assert_same(obj, out)


def test_loaded_tensors_are_writable_leaves_and_sharing_is_kept(tmp_path):
    t = distnn.randn(3, requires_grad=True)
    save({"a": t, "b": [t], "c": (t * 2)}, tmp_path / "x")
    out = load(tmp_path / "x")
    assert out["a"] is out["b"][0] and out["a"].is_leaf and out["c"].requires_grad and out["c"].is_leaf
    out["c"].detach().add_(1)  # loaded memory is writable, not a read-only buffer view


def test_module_and_optimizer_state_dicts_round_trip(tmp_path):
    net = distnn.nn.Linear(3, 2)
    opt = distnn.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net(distnn.randn(4, 3)).sum().backward()
    opt.step()
    save({"model": net.state_dict(), "opt": opt.state_dict(), "w": net.weight}, tmp_path / "ck")
    ck = load(tmp_path / "ck")
    assert_same(net.state_dict(), ck["model"])
    assert ck["model"]._metadata == net.state_dict()._metadata  # per-module versions survive
    assert_same(opt.state_dict(), ck["opt"])
    assert type(ck["w"]) is distnn.nn.Parameter and ck["w"].requires_grad
    other = distnn.nn.Linear(3, 2)
    other.load_state_dict(ck["model"])
    np.testing.assert_array_equal(other.weight.detach().numpy(), net.weight.detach().numpy())


def test_save_is_deterministic(tmp_path):
    obj = {"w": distnn.arange(5).float(), "lr": 0.1}
    save(obj, tmp_path / "a")
    save(obj, tmp_path / "b")
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()


@pytest.mark.parametrize("obj, message", [
    ({"layers": [1, 2, len]}, r"obj\['layers'\]\[2\]: cannot save object of type builtin_function_or_method"),
    ({"fn": lambda: 0}, r"obj\['fn'\]: cannot save object of type function"),
    ([{1, 2}], r"obj\[0\]: cannot save object of type set"),
    ({"k": np.array([object()])}, r"obj\['k'\]: cannot save numpy array of dtype object"),
    ({distnn.zeros(1): 1}, "cannot save dict key"),
    ({"n": collections.namedtuple("P", "x")(1)}, r"obj\['n'\]: cannot save object of type P"),
    (type("Net", (), {"state_dict": lambda self: {}})(), r"obj: cannot save object of type Net \(save its state_dict"),
])
def test_unsupported_objects_raise_type_error_naming_the_path(tmp_path, obj, message):
    with pytest.raises(TypeError, match=message):
        save(obj, tmp_path / "x")
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temp file


def test_self_referencing_container_is_refused(tmp_path):
    loop = []
    loop.append(loop)
    with pytest.raises(ValueError, match=r"obj\[0\]: cannot save a container that contains itself"):
        save(loop, tmp_path / "x")


def _zip_with(entries):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _manifest(root, **extra):
    return json.dumps({"format": "distnn.save", "version": 1, "root": root, **extra})


def _valid_bytes():
    buf = io.BytesIO()
    save({"w": distnn.arange(64).float(), "step": 3}, buf)
    return buf.getvalue()


def _flip_data_byte(data):
    i = data.index(np.arange(64, dtype=np.float32).tobytes()) + 17
    return data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]


BAD_FILES = {
    "empty": (lambda: b"", "not a distnn checkpoint"),
    "text": (lambda: b"hello, I am not a checkpoint" * 10, "not a distnn checkpoint"),
    "other_zip": (lambda: _zip_with({"data.pkl": b"x"}), "a zip archive without manifest.json"),
    "foreign_manifest": (lambda: _zip_with({"manifest.json": '{"format": "other"}'}), "no 'distnn.save' manifest"),
    "future_version": (lambda: _zip_with({"manifest.json": _manifest(None).replace('"version": 1', '"version": 9')}),
                       "Expect: format version 1, Actual: 9"),
    "truncated_half": (lambda: _valid_bytes()[:len(_valid_bytes()) // 2], "not a distnn checkpoint"),
    "truncated_tail": (lambda: _valid_bytes()[:-1], "not a distnn checkpoint"),
    "flipped_data_byte": (lambda: _flip_data_byte(_valid_bytes()), "Bad CRC-32"),
    "bad_json": (lambda: _zip_with({"manifest.json": "{not json"}), "corrupted checkpoint"),
    "unknown_node": (lambda: _zip_with({"manifest.json": _manifest({"$": "pickle"})}), "unknown node kind 'pickle'"),
    "object_dtype": (lambda: _zip_with({"manifest.json": _manifest({"$": "ndarray", "dtype": "|O", "shape": [1],
                                                                    "entry": "arrays/0"}),
                                        "arrays/0": b"\x00" * 8}), "unsupported dtype '|O'"),
    "missing_entry": (lambda: _zip_with({"manifest.json": _manifest({"$": "ndarray", "dtype": "<f4", "shape": [2],
                                                                     "entry": "arrays/0"})}),
                      "entry 'arrays/0' is missing"),
    "size_mismatch": (lambda: _zip_with({"manifest.json": _manifest({"$": "ndarray", "dtype": "<f4", "shape": [3],
                                                                     "entry": "arrays/0"}),
                                         "arrays/0": b"\x00" * 8}), "holds 8 bytes, .* needs 12"),
    "declared_size_smaller": (lambda: _patch_sizes(_array_zip([4], b"\1" * 8), "arrays/0", file_size=4),
                              "entry 'arrays/0' declares 4 bytes but stores 8"),
    "negative_shape": (lambda: _zip_with({"manifest.json": _manifest({"$": "ndarray", "dtype": "<f4", "shape": [-1],
                                                                      "entry": "arrays/0"})}), "invalid shape"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_files_raise_serialization_error_naming_the_file(tmp_path, name):
    make, match = BAD_FILES[name]
    path = tmp_path / f"{name}.dn"
    path.write_bytes(make())
    with pytest.raises(SerializationError, match=match) as info:
        load(path)
    assert str(path) in str(info.value) and isinstance(info.value, RuntimeError)


# --- files built to exhaust memory: sizes are checked against the file before allocating ----

def _patch_sizes(data, entry, file_size=None, compress_size=None):
    """``data`` with the central directory record of ``entry`` claiming other sizes."""
    i = -1
    while True:
        i = data.index(b"PK\x01\x02", i + 1)
        name_length = struct.unpack_from("<H", data, i + 28)[0]
        if data[i + 46:i + 46 + name_length] == entry.encode():
            break
    out = bytearray(data)
    for offset, size in ((20, compress_size), (24, file_size)):
        if size is not None:
            struct.pack_into("<I", out, i + offset, size)
    return bytes(out)


def _array_zip(shape, data):
    root = {"$": "ndarray", "dtype": "|u1", "shape": shape, "entry": "arrays/0"}
    return _zip_with({"manifest.json": _manifest(root), "arrays/0": data})


_HUGE = 0xF000_0000  # 3.75 GiB: a size the central directory claims, far beyond the file
_MiB = 1 << 20
HOSTILE_FILES = {
    "one_entry_decoded_1024_times": (  # 1 MiB on disk, 1 GiB decoded before the fix
        lambda: _zip_with({"manifest.json": _manifest({"$": "list", "v": [
            {"$": "ndarray", "dtype": "|u1", "shape": [_MiB], "entry": "arrays/0"}] * 1024}),
            "arrays/0": b"\0" * _MiB}),
        r"entry 'arrays/0' is referenced twice"),
    "declared_size_larger_than_file": (
        lambda: _patch_sizes(_array_zip([_HUGE], b"\0" * 8), "arrays/0", _HUGE, _HUGE),
        r"entries declare \d+ bytes in total, more than the \d+ bytes of the whole file"),
    "declared_size_only_in_file_size": (
        lambda: _patch_sizes(_array_zip([_HUGE], b"\0" * 8), "arrays/0", file_size=_HUGE),
        rf"entry 'arrays/0' declares {_HUGE} bytes but stores 8"),
    "manifest_declared_larger_than_file": (
        lambda: _patch_sizes(_zip_with({"manifest.json": _manifest(None)}), "manifest.json", _HUGE, _HUGE),
        r"entries declare \d+ bytes in total, more than the \d+ bytes of the whole file"),
}


@needs_proc_status
@pytest.mark.parametrize("name", sorted(HOSTILE_FILES))
def test_hostile_sizes_are_refused_before_allocating(tmp_path, name):
    make, match = HOSTILE_FILES[name]
    path = tmp_path / f"{name}.dn"
    path.write_bytes(make())
    _, outcome = call_with_memory_cap(load, path)
    assert outcome.startswith(f"SerializationError {path}: corrupted checkpoint"), outcome
    assert re.search(match, outcome), outcome


def test_shared_tensor_entry_loads_once_but_may_not_change_its_description(tmp_path):
    t = distnn.arange(4).float()
    buf = io.BytesIO()
    save([t, t], buf)  # one entry, referenced by two equal tensor nodes
    data = buf.getvalue()
    out = load(io.BytesIO(data))
    assert out[0] is out[1]
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        array = zf.read("arrays/0")
    manifest["root"]["v"][1]["shape"] = [2, 2]
    (tmp_path / "x").write_bytes(_zip_with({"manifest.json": json.dumps(manifest), "arrays/0": array}))
    with pytest.raises(SerializationError, match="entry 'arrays/0' is referenced twice"):
        load(tmp_path / "x")


def test_compressed_entries_are_refused_without_inflating_them(tmp_path, monkeypatch):
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w") as zf:
        zf.writestr("manifest.json", _manifest({"$": "bytes", "entry": "arrays/0"}))
        zf.writestr("arrays/0", b"\0" * (64 * _MiB), compress_type=zipfile.ZIP_DEFLATED)
    (tmp_path / "x").write_bytes(_patch_sizes(bomb.getvalue(), "arrays/0", file_size=100))
    opened, real_open = [], zipfile.ZipFile.open
    monkeypatch.setattr(zipfile.ZipFile, "open",
                        lambda zf, info, *args, **kw: opened.append(info) or real_open(zf, info, *args, **kw))
    with pytest.raises(SerializationError, match="entry 'arrays/0' is compressed; distnn.save never compresses"):
        load(tmp_path / "x")
    assert [getattr(info, "filename", info) for info in opened] == ["manifest.json"]


class StreamOnly(io.RawIOBase):
    """A pipe-like binary stream: no seek, no tell."""

    def __init__(self, data=b""):
        self.buf = io.BytesIO(data)

    def writable(self):
        return True

    def readable(self):
        return True

    def write(self, b):
        return self.buf.write(b)

    def readinto(self, b):
        return self.buf.readinto(b)


def test_unseekable_streams():
    out = StreamOnly()
    save({"w": distnn.arange(3)}, out)
    assert load(StreamOnly(out.buf.getvalue()))["w"].tolist() == [0, 1, 2]


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "absent.dn")


class Crash(Exception):
    pass


@pytest.mark.parametrize("error", [Crash, KeyboardInterrupt])
def test_crash_mid_write_keeps_previous_file_and_leaves_no_temp(tmp_path, monkeypatch, error):
    path = tmp_path / "model.dn"
    save({"version": 1, "w": distnn.ones(100)}, path)
    before = path.read_bytes()
    real = serialization._write_entry
    calls = []

    def crash_on_second_array(zf, name, array):
        calls.append(name)
        if len(calls) == 2:
            with zf.open(zipfile.ZipInfo(name), "w") as out:  # half an array, then the "crash"
                out.write(array.tobytes()[:array.nbytes // 2])
            raise error("power cut")
        real(zf, name, array)

    monkeypatch.setattr(serialization, "_write_entry", crash_on_second_array)
    with pytest.raises(error):
        save({"version": 2, "w": distnn.zeros(100), "b": distnn.zeros(100)}, path)
    assert path.read_bytes() == before
    assert load(path)["version"] == 1
    assert sorted(os.listdir(tmp_path)) == ["model.dn"]


def test_map_location(tmp_path):
    save({"w": distnn.ones(2)}, tmp_path / "x")
    assert load(tmp_path / "x", map_location="cpu")["w"].device == distnn.device("cpu")
    assert load(tmp_path / "x", map_location={"cpu": "cpu"})["w"].device == distnn.device("cpu")
    seen = []
    out = load(tmp_path / "x", map_location=lambda t, loc: seen.append(loc) or t * 3)
    assert seen == ["cpu"] and out["w"].tolist() == [3.0, 3.0]
    assert load(tmp_path / "x", weights_only=True)["w"].tolist() == [1.0, 1.0]


@pytest.mark.skipif(distnn.cuda.is_available(), reason="checks the CPU-only error")
def test_cuda_location_without_cuda_is_a_clear_error(tmp_path):
    save({"w": distnn.ones(2)}, tmp_path / "x")
    with pytest.raises(RuntimeError, match="CUDA is not available. Pass map_location='cpu'"):
        load(tmp_path / "x", map_location="cuda:0")


def test_exported_as_distnn_save_and_load():
    if not hasattr(distnn, "save"):
        pytest.skip("distnn/__init__.py does not export save/load yet (lead adds the import)")
    assert distnn.save is save and distnn.load is load


_SAVER = """
import sys, numpy as np, distnn
path = sys.argv[1]
big = np.arange(4 << 20, dtype=np.float32)
i = 0
while True:
    distnn.save({"version": i, "weights": distnn.from_numpy(big + i)}, path)
    print(i, flush=True)
    i += 1
"""


@pytest.mark.timeout(120)
def test_sigkill_during_save_leaves_a_loadable_checkpoint(tmp_path):
    """A process killed at any moment while saving leaves the last complete file."""
    import signal
    import subprocess
    import sys
    import time
    path = tmp_path / "ck.dt"
    for delay in (0.05, 0.13, 0.21, 0.37, 0.52):
        proc = subprocess.Popen([sys.executable, "-c", _SAVER, str(path)], stdout=subprocess.PIPE, text=True)
        try:
            proc.stdout.readline()  # at least one save has completed
            time.sleep(delay)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        state = distnn.load(path)
        version = state["version"]
        assert state["weights"][0].item() == version and state["weights"][-1].item() == (4 << 20) - 1 + version
    distnn.save({"version": -1}, path)  # the next save clears temp files the killed writers left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.dt"]


def test_temp_files_of_live_writers_and_other_paths_are_kept(tmp_path):
    import os
    import socket
    import subprocess
    import sys
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout)
    host = "".join(c if c.isalnum() or c in "_-" else "_" for c in socket.gethostname())[:64]
    names = [f".ck.dt.{host}.{dead}.0123456789ab.tmp",  # a killed writer's: removed
             f".ck.dt.{host}.{os.getpid()}.0123456789ab.tmp",  # a live writer's: kept
             f".ck.dt.other-host.{dead}.0123456789ab.tmp",  # another host's (shared file system): kept
             f".other.dt.{host}.{dead}.0123456789ab.tmp"]  # another checkpoint's: kept
    for name in names:
        (tmp_path / name).write_bytes(b"partial")
    save({"x": 1}, tmp_path / "ck.dt")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[1:] + ["ck.dt"])

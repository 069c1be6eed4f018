"""``distnn.save`` / ``distnn.load`` without pickle: checkpoints are zip archives
of raw little-endian array bytes plus a JSON manifest describing the object
tree, so loading a file can never run code.

Layout (all entries stored uncompressed, with fixed timestamps so equal
objects give equal bytes)::

    manifest.json   {"format": "distnn.save", "version": 1, "root": <node>}
    arrays/<k>      the bytes of the k-th tensor / numpy array / numpy scalar

A node is a JSON value for None, bool, int, finite float and str, or an
object ``{"$": kind, ...}`` for containers (list, tuple, dict with its key
nodes, OrderedDict with its ``_metadata``, Size), tensors (dtype, shape,
requires_grad, device, Parameter), numpy arrays and scalars (loaded in native
byte order), bytes, dtypes and devices. A tensor object that appears twice is
stored once and loads as one object; views are stored as copies. Saving to a
path writes a temp file in the same directory, fsyncs it and renames it over
the target (then fsyncs the directory), so a crash leaves the old file or the
new one, never a mix. The temp file's name carries the host and pid of its
writer, so the next save to the same path removes one left by a killed process.

Loading trusts no size in the file: before anything is allocated, the sizes the
zip directory declares must add up to no more than the file itself (every entry
we read is stored, and compressed entries are refused unread, so no inflation
ratio arises), an array's dtype x shape must equal its entry's size, and each
entry is decoded at most once (a shared tensor's equal nodes load as one object),
so a checkpoint never decodes to more bytes than it holds. Entries are read in
bounded chunks, never past their declared size.
"""

import io
import json
import os
import re
import secrets
import socket
import sys
import zipfile
from collections import OrderedDict

import numpy as np

from . import backend
from . import dtypes as _dt
from ._process import process_running
from .tensor import Size, Tensor, _wrap

__all__ = ["save", "load", "SerializationError", "add_safe_globals", "clear_safe_globals", "get_safe_globals",
           "safe_globals"]

FORMAT, VERSION, MANIFEST = "distnn.save", 1, "manifest.json"
_READ_CHUNK = 1 << 20  # an entry is copied in pieces of this size, never through a full-size temporary
_EPOCH = (1980, 1, 1, 0, 0, 0)  # zip's earliest timestamp: output depends only on the object
_KEY_TYPES = (str, int, float, bool, type(None), tuple)


class SerializationError(RuntimeError):
    """A file is not a distnn checkpoint, or is truncated or corrupted."""


# --- save ----------------------------------------------------------------------------

def save(obj, f):
    """Write ``obj`` (nested dicts/lists/tuples of Tensors, numpy arrays, numbers,
    strings, bools, None) to ``f``, a path or a writable binary file object."""
    encoder = _Encoder()
    manifest = {"format": FORMAT, "version": VERSION, "root": encoder.encode(obj, "obj")}
    if isinstance(f, (str, os.PathLike)):
        _atomic_write(os.fspath(f), lambda fh: _write_zip(fh, manifest, encoder.arrays))
    else:
        _write_zip(f, manifest, encoder.arrays)


class _Encoder:
    def __init__(self):
        self.arrays = []        # (entry name, ndarray) in write order
        self._tensor_nodes = {}  # id(tensor) -> its node, so a shared tensor is stored once
        self._open = set()       # ids of containers on the current path, to refuse cycles

    def _entry(self, array):
        name = f"arrays/{len(self.arrays)}"
        self.arrays.append((name, array))
        return name

    def encode(self, x, path):
        t = type(x)
        if x is None or t in (bool, int, str):
            return x
        if t is float:
            return x if np.isfinite(x) else {"$": "float", "v": repr(x)}
        if isinstance(x, Tensor):
            return self._tensor(x, path)
        if t is np.ndarray:
            return {"$": "ndarray", **self._array(x, path)}
        if isinstance(x, (np.bool_, np.number)):
            return {"$": "npscalar", **self._array(np.asarray(x), path)}
        if t is bytes:
            return {"$": "bytes", "entry": self._entry(np.frombuffer(x, dtype=np.uint8))}
        if t is _dt.dtype:
            return {"$": "dtype", "v": x.name}
        if t is backend.Device:
            return {"$": "device", "v": str(x)}
        if t in (list, tuple, Size, dict, OrderedDict):
            if id(x) in self._open:
                raise ValueError(f"{path}: cannot save a container that contains itself")
            self._open.add(id(x))
            try:
                return self._container(x, t, path)
            finally:
                self._open.discard(id(x))
        hint = ""
        if callable(getattr(x, "state_dict", None)):
            hint = (" (save its state_dict() instead: distnn.save never pickles objects, so save the "
                    "weights with torch.save(model.state_dict(), path) and load them into a model built "
                    "by the same code with model.load_state_dict(torch.load(path)))")
        raise TypeError(f"{path}: cannot save object of type {t.__name__}{hint}")

    def _container(self, x, t, path):
        if t in (dict, OrderedDict):
            keys = list(x)
            for k in keys:
                if not _valid_key(k):
                    raise TypeError(f"{path}: cannot save dict key {k!r} of type {type(k).__name__} "
                                    "(keys must be str, int, float, bool, None or tuples of them)")
            node = {"$": "dict" if t is dict else "odict",
                    "k": [self.encode(k, f"{path} key {k!r}") for k in keys],
                    "v": [self.encode(x[k], f"{path}[{k!r}]") for k in keys]}
            if getattr(x, "_metadata", None) is not None:  # Module.state_dict()'s per-module versions
                node["meta"] = self.encode(x._metadata, f"{path}._metadata")
            return node
        kind = {list: "list", tuple: "tuple", Size: "size"}[t]
        return {"$": kind, "v": [self.encode(v, f"{path}[{i}]") for i, v in enumerate(x)]}

    def _array(self, array, path):
        if array.dtype.kind not in "biufc" or array.dtype.fields is not None:
            raise TypeError(f"{path}: cannot save numpy array of dtype {array.dtype} "
                            "(only bool and numeric dtypes)")
        little = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False)
        return {"dtype": little.dtype.str, "shape": list(array.shape), "entry": self._entry(little)}

    def _tensor(self, t, path):
        node = self._tensor_nodes.get(id(t))
        if node is None:
            node = {"$": "tensor", **self._array(backend.to_numpy(t._data), path),
                    "requires_grad": bool(t.requires_grad), "device": str(t.device)}
            parameter = getattr(sys.modules.get("distnn.nn"), "Parameter", None)
            if parameter is not None and isinstance(t, parameter):
                node["parameter"] = True
            self._tensor_nodes[id(t)] = node
        return node


def _valid_key(k):
    if type(k) is tuple:
        return all(_valid_key(v) for v in k)
    return type(k) in _KEY_TYPES


def _write_zip(fh, manifest, arrays):
    with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        zf.writestr(zipfile.ZipInfo(MANIFEST, _EPOCH), json.dumps(manifest, separators=(",", ":"), allow_nan=False))
        for name, array in arrays:
            _write_entry(zf, name, array)


def _write_entry(zf, name, array):
    with zf.open(zipfile.ZipInfo(name, _EPOCH), "w", force_zip64=array.nbytes >= 1 << 31) as out:
        out.write(memoryview(array.reshape(-1).view(np.uint8)))


def _atomic_write(path, write):
    directory = os.path.dirname(os.path.abspath(path))
    prefix = f".{os.path.basename(path)}.{_host_tag()}."
    _remove_stale_temps(directory, prefix)
    tmp = os.path.join(directory, f"{prefix}{os.getpid()}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for open()
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(directory)


def _host_tag():
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:64]


def _remove_stale_temps(directory, prefix):
    """Temp files of this path whose writer on this host has died (a SIGKILL mid-save)."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        match = re.fullmatch(r"(\d+)\.[0-9a-f]{12}\.tmp", name[len(prefix):]) if name.startswith(prefix) else None
        if match and not process_running(int(match.group(1))):
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                pass


def _fsync_directory(directory):
    # Makes the rename itself durable; some platforms cannot open directories.
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


# --- load ----------------------------------------------------------------------------

def load(f, map_location=None, *, weights_only=None):
    """Read what ``save`` wrote. ``map_location``: None (the saved devices), a
    device or string (everything there), a dict ``{"cuda:0": "cpu"}`` of saved
    -> new locations, or ``fn(tensor, location)`` returning a tensor (or None to
    keep it on the CPU). ``weights_only`` is accepted for PyTorch compatibility;
    distnn files never contain code, so loading is always weights-only."""
    name = os.fspath(f) if isinstance(f, (str, os.PathLike)) else getattr(f, "name", repr(f))
    if not isinstance(f, (str, os.PathLike)) and not (hasattr(f, "seekable") and f.seekable()):
        f = io.BytesIO(f.read())
    try:
        zf = zipfile.ZipFile(f)
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise SerializationError(f"{name}: not a distnn checkpoint (not a readable zip archive: {exc})") from None
    with zf:
        if MANIFEST not in zf.namelist():
            raise SerializationError(f"{name}: not a distnn checkpoint (a zip archive without {MANIFEST})")
        try:
            decoder = _Decoder(zf, name, map_location)
            decoder.check_declared_sizes()
            manifest = json.loads(decoder.read_entry(MANIFEST).decode("utf-8"))
            if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
                raise SerializationError(f"{name}: not a distnn checkpoint (no '{FORMAT}' manifest)")
            if manifest.get("version") != VERSION:
                raise SerializationError(f"{name}: Expect: format version {VERSION}, "
                                         f"Actual: {manifest.get('version')!r}")
            return decoder.decode(manifest["root"])
        except SerializationError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, RecursionError, EOFError, OSError,
                zipfile.BadZipFile) as exc:
            raise SerializationError(f"{name}: corrupted checkpoint ({type(exc).__name__}: {exc})") from None


class _Decoder:
    def __init__(self, zf, name, map_location):
        self.zf, self.name, self.map_location = zf, name, map_location
        self._tensors = {}  # entry -> Tensor, so a tensor saved once loads as one object
        self._claimed = {}  # entry -> the node that decoded it; a second claim is refused

    def fail(self, what):
        raise SerializationError(f"{self.name}: corrupted checkpoint ({what})")

    def check_declared_sizes(self):
        """The directory's sizes against the file's, before any of them is allocated."""
        file_size = self.zf.fp.seek(0, os.SEEK_END)
        total = 0
        for info in self.zf.infolist():
            if info.compress_type != zipfile.ZIP_STORED:
                continue  # refused unread if the manifest names it (_info)
            if info.file_size != info.compress_size:
                self.fail(f"stored entry {info.filename!r} declares {info.file_size} bytes but stores "
                          f"{info.compress_size}")
            total += info.file_size
        if total > file_size:
            self.fail(f"its entries declare {total} bytes in total, more than the {file_size} bytes "
                      "of the whole file")

    def _claim(self, entry, node):
        # Decoding an entry once bounds the decoded total by the file's size (see
        # check_declared_sizes), however often a hostile manifest names the entry.
        if entry in self._claimed:
            self.fail(f"entry {entry!r} is referenced twice; save() stores each array once")
        self._claimed[entry] = node

    def _info(self, entry):
        try:
            info = self.zf.getinfo(entry)
        except KeyError:
            self.fail(f"entry {entry!r} is missing")
        if info.compress_type != zipfile.ZIP_STORED:
            self.fail(f"entry {entry!r} is compressed; distnn.save never compresses")
        return info

    def read_entry(self, entry, node=None):
        self._claim(entry, node)
        info = self._info(entry)
        out = bytearray(info.file_size)
        self._read_into(info, memoryview(out))
        return bytes(out)

    def _read_into(self, info, out):
        """Exactly ``len(out)`` bytes of the entry, which must hold no more and no fewer."""
        with self.zf.open(info) as src:
            filled = 0
            while filled < len(out):
                chunk = src.read(min(_READ_CHUNK, len(out) - filled))
                if not chunk:
                    self.fail(f"entry {info.filename!r} ends after {filled} of its {len(out)} bytes")
                out[filled:filled + len(chunk)] = chunk
                filled += len(chunk)
            if src.read(1):
                self.fail(f"entry {info.filename!r} holds more than its {len(out)} bytes")

    def decode(self, node):
        if node is None or type(node) in (bool, int, str, float):
            return node
        if type(node) is not dict or "$" not in node:
            self.fail(f"unexpected manifest node {str(node)[:80]!r}")
        kind = node["$"]
        if kind in ("list", "tuple", "size"):
            items = [self.decode(v) for v in node["v"]]
            return {"list": list, "tuple": tuple, "size": Size}[kind](items)
        if kind in ("dict", "odict"):
            keys, values = node["k"], node["v"]
            if len(keys) != len(values):
                self.fail(f"dict with {len(keys)} keys but {len(values)} values")
            pairs = ((self.decode(k), self.decode(v)) for k, v in zip(keys, values))
            if kind == "dict":
                return dict(pairs)
            out = OrderedDict(pairs)
            if "meta" in node:
                out._metadata = self.decode(node["meta"])
            return out
        if kind == "tensor":
            return self._tensor(node)
        if kind == "ndarray":
            return self._array(node)
        if kind == "npscalar":
            return self._array(node)[()]
        if kind == "bytes":
            return self.read_entry(node["entry"], node)
        if kind == "float":
            return float(node["v"])
        if kind == "dtype":
            return _dt.from_any(node["v"])
        if kind == "device":
            return backend.Device(node["v"])
        self.fail(f"unknown node kind {kind!r}")

    def _array(self, node):
        dtype = np.dtype(node["dtype"])
        if dtype.kind not in "biufc" or dtype.fields is not None or dtype.subdtype is not None:
            self.fail(f"unsupported dtype {node['dtype']!r}")
        shape = node["shape"]
        if type(shape) is not list or not all(type(d) is int and d >= 0 for d in shape):
            self.fail(f"invalid shape {shape!r}")
        self._claim(node["entry"], node)
        info = self._info(node["entry"])
        nbytes = dtype.itemsize * int(np.prod(shape, dtype=object))
        if info.file_size != nbytes:
            self.fail(f"entry {node['entry']!r} holds {info.file_size} bytes, a {dtype} array of shape "
                      f"{tuple(shape)} needs {nbytes}")
        out = np.empty(shape, dtype=dtype)
        self._read_into(info, memoryview(out.reshape(-1).view(np.uint8)))
        return out.astype(dtype.newbyteorder("="), copy=False)

    def _tensor(self, node):
        entry = node["entry"]
        if entry in self._tensors:
            if node != self._claimed[entry]:  # save() writes a shared tensor's node twice, equal
                self.fail(f"entry {entry!r} is referenced twice, by different tensor nodes")
            return self._tensors[entry]
        array = self._array(node)
        _dt.from_numpy_dtype(array.dtype)
        if node["requires_grad"] and array.dtype.kind != "f":
            self.fail(f"a {array.dtype} tensor marked requires_grad")
        t = self._place(_wrap(array), node["device"])
        if node.get("parameter"):
            from .nn import Parameter  # only files that hold Parameters need distnn.nn
            t = Parameter(t, requires_grad=bool(node["requires_grad"]))
        elif node["requires_grad"]:
            t.requires_grad_(True)
        self._tensors[entry] = t
        return t

    def _place(self, t, location):
        ml = self.map_location
        if callable(ml):
            moved = ml(t, location)
            return t if moved is None else moved
        if isinstance(ml, dict):
            target = ml.get(location, location)
        else:
            target = location if ml is None else ml
        device = backend.as_device(target)
        if device.type == "cuda" and not backend.cuda_is_available():
            raise RuntimeError(f"Attempting to deserialize a tensor saved on {location} to {device}, but "
                               "CUDA is not available. Pass map_location='cpu' to load it on the CPU.")
        return t if device.type == "cpu" else _wrap(backend.move_to(t._data, device))


# --- safe globals ----------------------------------------------------------------------
# PyTorch's weights_only unpickler calls only allow-listed globals. distnn.load never
# unpickles, so it calls no global whatever the list holds: the list is kept only so
# that get_safe_globals() reads back what a program added (each global once, as torch).

_safe_globals = []


def add_safe_globals(safe_globals):
    """Record ``safe_globals`` (functions/classes or ``(obj, "module.name")`` pairs); loading is
    unchanged, since a distnn file holds no pickled object that could name one."""
    for g in list(safe_globals):
        if g not in _safe_globals:
            _safe_globals.append(g)


def get_safe_globals():
    return list(_safe_globals)


def clear_safe_globals():
    _safe_globals.clear()


class safe_globals:
    """Context manager recording ``safe_globals`` inside the block only. It changes nothing
    about loading: distnn.load never unpickles, so it needs no allow-list."""

    def __init__(self, safe_globals):
        self.safe_globals = safe_globals

    def __enter__(self):
        add_safe_globals(self.safe_globals)

    def __exit__(self, type, value, tb):
        _safe_globals[:] = [g for g in _safe_globals if g not in self.safe_globals]

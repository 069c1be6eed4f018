"""Convolutions through oneDNN, the library PyTorch's CPU convolutions run on, called
by ctypes through its C API when its shared library is installed (the
``onednn-cpu-gomp`` wheel, a dependency on Linux x86-64; no compiled code of ours).

Its JIT kernels work on blocked layouts (``nChw16c``): each call reorders the NCHW
operands into the layouts the primitive chose, runs it, and reorders the result
back, as PyTorch does for NCHW tensors. Against im2col + OpenBLAS (``conv.py``)
that made a small ResNet's 3x3 layers 1.3-1.5x faster forward and backward, and
the results are PyTorch's to the bit (same kernels, same summation order).

``distnn.backends.mkldnn.enabled = False`` (or ``DISTNN_ONEDNN=0`` in the
environment) turns it off; ``conv.py`` then uses its own paths. Only float32 numpy
convolutions come here. A transposed convolution is the input gradient of the
convolution from its output back to its input, with the same weight array: its
forward runs that convolution's backward-data primitive, its input gradient the
forward one and its weight gradient the backward-weights one (a DCGAN layer's
fwd+bwd went from 2-5x PyTorch's time on conv.py's col2im to PyTorch's).

Threads: oneDNN runs on GNU OpenMP, whose thread count belongs to the calling
thread; it is set to ``threads.get_num_threads()`` before a primitive is made or
run (primitives fix their thread count when made). Splitting the batch over our
own pool instead, one OpenMP thread per call, ran ResNet-18 at 2 threads 1.2-1.5x
PyTorch's step against 1.03-1.07 (each half-batch call reorders the weights again,
and scales worse). GNU OpenMP's idle threads spin (``GOMP_SPINCOUNT``) before
sleeping; 10K spins instead of its default 300K made whole steps 5-30% slower at
2 threads: each parallel region then pays a wake-up. 30K (``_GOMP_SPINCOUNT``, set
while libdnnl loads libgomp, unless the user set one) keeps those starts and gives
the core back to OpenBLAS's GEMMs sooner: at 2 threads, distnn alone in fresh
processes, alternating, 4-6 runs each, the LSTM LM 97.8 -> 86.0 ms a step, DCGAN
43.4 -> 40.7, the MNIST CNN 41.6 -> 39.7, the other real models within 2%. GNU OpenMP's threads do not
survive a fork, and a forked child that runs a primitive made before the fork
hangs in it, so a child forked after oneDNN ran uses ``conv.py``'s own paths.

``_Primitives`` (primitives, their operands' reorders, memory objects and
scratchpads) is shared with the LSTM primitive of ``onednn_rnn.py``.
"""

import ctypes
import os
import sys
import threading
from collections import OrderedDict

import numpy as np

from .. import threads
from .conv_direct import _out_hw, bias_grad
from .im2col import scratch_array

_F32, _ANY = 3, 1
_FORWARD_TRAINING, _DIRECT = 64, 1  # dnnl_forward_training, dnnl_convolution_direct
# execute arguments and primitive-descriptor queries (dnnl_types.h)
_SRC, _DST, _WEIGHTS, _BIAS, _SCRATCHPAD = 1, 17, 33, 41, 80
_DIFF_SRC, _DIFF_DST, _DIFF_WEIGHTS, _DIFF_BIAS = 129, 145, 161, 169
_Q_IMPL, _Q_WORKSPACE, _Q_SCRATCHPAD, _Q_EXEC_ARG = 8, 135, 136, 255
_CACHE_SIZE = 256  # convolution geometries kept (primitive creation takes about a millisecond)

_Dims = ctypes.c_int64 * 12


class _ExecArg(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_int), ("memory", ctypes.c_void_p)]


class OneDNNError(RuntimeError):
    pass


def _dims(values):
    out = _Dims()
    for i, v in enumerate(values):
        out[i] = v
    return out


# GNU OpenMP's idle threads spin this many times before sleeping (its default: 300K);
# libgomp reads GOMP_SPINCOUNT once, when it loads (see the module docstring).
_GOMP_SPINCOUNT = "30000"


def _load_with_spin_count(path):
    """``ctypes.CDLL(path)`` with ``GOMP_SPINCOUNT`` at ``_GOMP_SPINCOUNT`` while it loads,
    unless the user set it; only then, so child processes do not inherit ours. A
    libgomp loaded before (by PyTorch, say) keeps its own count."""
    ours = "GOMP_SPINCOUNT" not in os.environ
    if ours:
        os.environ["GOMP_SPINCOUNT"] = _GOMP_SPINCOUNT
    try:
        return ctypes.CDLL(path)
    finally:
        if ours:
            os.environ.pop("GOMP_SPINCOUNT", None)


class _Library:
    """The loaded libdnnl: its CPU engine, a primitive attribute asking for
    user-provided scratchpads, and libgomp's thread-count setter."""

    def __init__(self, path):
        self.lib = lib = _load_with_spin_count(path)
        lib.dnnl_primitive_desc_query_md.restype = ctypes.c_void_p
        lib.dnnl_primitive_desc_query_md.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        lib.dnnl_memory_desc_get_size.restype = ctypes.c_size_t
        lib.dnnl_memory_desc_get_size.argtypes = [ctypes.c_void_p]
        lib.dnnl_memory_desc_equal.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        lib.dnnl_memory_create.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        self.set_data_handle = lib.dnnl_memory_set_data_handle
        self.set_data_handle.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        self.engine = self.out_handle("dnnl_engine_create", ctypes.c_int(1), ctypes.c_size_t(0))
        self.attr = self.out_handle("dnnl_primitive_attr_create")
        self.check(lib.dnnl_primitive_attr_set_scratchpad_mode(self.attr, 1), "dnnl_primitive_attr_set_scratchpad_mode")
        self.gomp = ctypes.CDLL("libgomp.so.1")  # OSError: not loaded
        self.set_omp_threads = self.gomp.omp_set_num_threads
        self.streams = threading.local()
        self.ran = False  # a primitive ran in this process

    def check(self, status, what):
        if status != 0:
            raise OneDNNError(f"oneDNN {what} failed with status {status}")

    def out_handle(self, fn, *args):
        handle = ctypes.c_void_p()
        self.check(getattr(self.lib, fn)(ctypes.byref(handle), *args), fn)
        return handle

    def stream(self):
        """This thread's stream, with OpenMP's thread count for this thread up to date."""
        local = self.streams
        stream = getattr(local, "stream", None)
        if stream is None:
            stream = local.stream = self.out_handle("dnnl_stream_create", self.engine, ctypes.c_uint(1))
        n = threads.get_num_threads()
        if getattr(local, "omp", None) != n:
            self.set_omp_threads(n)
            local.omp = n
        return stream

    def memory_desc(self, shape, tag):
        return self.out_handle("dnnl_memory_desc_create_with_tag", ctypes.c_int(len(shape)), _dims(shape),
                               ctypes.c_int(_F32), ctypes.c_int(tag))

    def strided_desc(self, shape, strides):
        """A float32 descriptor of ``shape`` laid out by ``strides`` (in elements)."""
        return self.out_handle("dnnl_memory_desc_create_with_strides", ctypes.c_int(len(shape)), _dims(shape),
                               ctypes.c_int(_F32), _dims(strides))

    def primitive(self, pd):
        return self.out_handle("dnnl_primitive_create", pd)

    def run(self, primitive, bindings, arrays):
        """Run ``primitive`` on ``arrays``, in its ``_Bindings``' argument order."""
        memories, packed = bindings.take()
        try:
            for memory, array in zip(memories, arrays):
                self.set_data_handle(memory, _address(array))
            stream = self.stream()
            if not self.ran:
                self.ran = True
                threads.share_openmp_team(self.gomp)  # map_chunks' chunks on the same threads
            self.check(self.lib.dnnl_primitive_execute(primitive, stream, len(memories), packed),
                       "dnnl_primitive_execute")
            self.check(self.lib.dnnl_stream_wait(stream), "dnnl_stream_wait")
        finally:
            bindings.give_back(memories, packed)


def _address(array):
    """Where ``array``'s data starts: through the buffer protocol, a third of
    ``array.ctypes.data``'s microsecond; that for read-only arrays."""
    try:
        return ctypes.addressof(ctypes.c_char.from_buffer(array))
    except (TypeError, ValueError):
        return array.ctypes.data


class _Bindings:
    """Memory objects for one primitive's arguments (argument numbers and
    descriptors fixed), made once and re-pointed at each call's arrays: making and
    destroying them took 10 of a call's 12 us of Python. One set per concurrent
    caller; all destroyed with their owner (``destroy``)."""

    def __init__(self, lib, args):
        self.lib, self.args = lib, tuple(args)  # ((argument, descriptor), ...)
        self.free, self.made = [], []

    def take(self):
        try:
            return self.free.pop()  # atomic under the GIL: two callers never share a set
        except IndexError:
            pass
        memories = [self.lib.out_handle("dnnl_memory_create", md, self.lib.engine, None) for _, md in self.args]
        self.made.extend(memories)
        packed = (_ExecArg * len(memories))(*(_ExecArg(arg, m) for (arg, _), m in zip(self.args, memories)))
        return memories, packed

    def give_back(self, memories, packed):
        self.free.append((memories, packed))

    def destroy(self):
        for memory in self.made:
            self.lib.lib.dnnl_memory_destroy(memory)
        self.made, self.free = [], []


_PATHS_TRIED = False
_library = None
_load_lock = threading.Lock()


def _candidates():
    env = os.environ.get("DISTNN_ONEDNN_LIBRARY")
    if env:
        return [env]
    prefixes = [sys.prefix, sys.base_prefix, os.path.join(os.path.expanduser("~"), ".local")]
    return [os.path.join(p, "lib", "libdnnl.so.3") for p in prefixes] + ["libdnnl.so.3"]


def library():
    """The loaded oneDNN, or None when it is absent, turned off, or failed to load."""
    global _PATHS_TRIED, _library
    if not _PATHS_TRIED:
        with _load_lock:
            if not _PATHS_TRIED and os.environ.get("DISTNN_ONEDNN", "1") != "0" and sys.platform.startswith("linux"):
                for path in _candidates():
                    try:
                        _library = _Library(path)
                        break
                    except (OSError, OneDNNError, AttributeError):
                        continue
            _PATHS_TRIED = True
    return _library


def _after_fork_in_child():
    global _library, _load_lock
    _load_lock = threading.Lock()  # another thread may have held them at the fork
    for cache in _Cache.made:
        cache.lock = threading.Lock()
    if _library is not None and _library.ran:
        _library = None  # its primitives would wait forever for the parent's OpenMP threads


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# --- convolution primitives -------------------------------------------------------------

def _aligned(slot, size, dtype=np.float32):
    """A scratch array of ``size`` elements starting on a cache line. numpy's big
    buffers start 16 bytes past one, and oneDNN's kernels on such blocked layouts
    and scratchpads ran a ResNet layer's weight gradient 3.5 ms against PyTorch's 2.7."""
    itemsize = np.dtype(dtype).itemsize
    buf = scratch_array(np, slot, (size * itemsize + 64,), np.uint8)
    start = -_address(buf) % 64
    return buf[start:start + size * itemsize].view(dtype)


class _Operand:
    """One argument of a primitive: the NCHW array's plain descriptor, the layout the
    primitive chose, and the reorder between them (None when they are the same):
    into the chosen layout for an input (``into``), out of it for an output."""

    def __init__(self, lib, pd, arg, plain, into, owner):
        self.plain, self.into = plain, into
        self.chosen = ctypes.c_void_p(lib.lib.dnnl_primitive_desc_query_md(pd, _Q_EXEC_ARG, arg))
        self.size = lib.lib.dnnl_memory_desc_get_size(self.chosen) // 4
        self.reorder = None
        self.used = plain  # the descriptor the primitive sees
        if not lib.lib.dnnl_memory_desc_equal(self.chosen, plain):
            src, dst = (plain, self.chosen) if into else (self.chosen, plain)
            rpd = lib.out_handle("dnnl_reorder_primitive_desc_create", src, lib.engine, dst, lib.engine, None)
            try:
                self.reorder = owner.own("dnnl_primitive_destroy", lib.primitive(rpd))
            finally:
                lib.lib.dnnl_primitive_desc_destroy(rpd)
            self.bindings = owner.bind([(_SRC, src), (_DST, dst)])
            self.used = self.chosen

    def enter(self, lib, array, slot):
        """The array the primitive reads: ``array``, or it reordered into a blocked buffer."""
        if self.reorder is None:
            return array
        blocked = _aligned(slot, self.size)
        lib.run(self.reorder, self.bindings, (array, blocked))
        return blocked

    def output(self, slot, array):
        """The array the primitive writes: ``array`` itself, or a blocked buffer."""
        return array if self.reorder is None else _aligned(slot, self.size)

    def leave(self, lib, blocked, array):
        if self.reorder is not None:
            lib.run(self.reorder, self.bindings, (blocked, array))


class _Primitives:
    """Primitives made through one library and the handles they own: each part (a
    kind of call, "forward", ...) is a primitive with its operands' reorders, memory
    objects and scratchpad size, made when first run. Subclasses make the parts."""

    def __init__(self, lib):
        self.lib = lib
        self.handles = []  # (destroy function, handle), freed in __del__
        self.bindings = []  # _Bindings, destroyed first
        self.parts, self.answers = {}, {}  # answers: oneDNN queried once per question

    def own(self, destroy, handle):
        self.handles.append((destroy, handle))
        return handle

    def bind(self, args):
        bindings = _Bindings(self.lib, args)
        self.bindings.append(bindings)
        return bindings

    def _md(self, shape, tag):
        return self.own("dnnl_memory_desc_destroy", self.lib.memory_desc(shape, tag))

    def _strided_md(self, shape, strides):
        return self.own("dnnl_memory_desc_destroy", self.lib.strided_desc(shape, strides))

    def _pd(self, fn, *args):
        return self.own("dnnl_primitive_desc_destroy", self.lib.out_handle(fn, self.lib.engine, *args))

    def _part(self, kind):
        """(primitive descriptor, primitive, {argument: _Operand}, _Bindings, scratchpad
        bytes) of ``kind``, made by ``_make_part`` on first use."""
        part = self.parts.get(kind)
        return part if part is not None else self._make_part(kind)

    def _made(self, kind, pd, operands, direct=()):
        """Record ``kind``'s part: its primitive on ``pd``, an _Operand per
        ``(argument, user descriptor, is input)`` of ``operands`` and the ``direct``
        ``(argument, descriptor)``s that take the caller's arrays as they are."""
        lib = self.lib
        primitive = self.own("dnnl_primitive_destroy", lib.primitive(pd))
        ops = {arg: _Operand(lib, pd, arg, plain, into, self) for arg, plain, into in operands}
        scratch_md = lib.lib.dnnl_primitive_desc_query_md(pd, _Q_SCRATCHPAD, 0)
        scratch = lib.lib.dnnl_memory_desc_get_size(scratch_md)
        args = [(arg, op.used) for arg, op in ops.items()] + list(direct)
        if scratch:
            args.append((_SCRATCHPAD, ctypes.c_void_p(scratch_md)))
        part = self.parts[kind] = (pd, primitive, ops, self.bind(args), scratch)
        return part

    def _once(self, question, answer):
        known = self.answers.get(question)
        if known is None:
            known = self.answers[question] = answer()
        return known

    def implementation(self, kind="forward"):
        """oneDNN's name for the kernel ``kind`` runs."""
        text = ctypes.c_char_p()
        self.lib.check(self.lib.lib.dnnl_primitive_desc_query(self._part(kind)[0], _Q_IMPL, 0, ctypes.byref(text)),
                       "dnnl_primitive_desc_query")
        return text.value.decode()

    def same_layout(self, kind, other, arg):
        """Whether ``kind`` and ``other`` read ``arg`` in the same layout (asked once)."""
        return self._once(("layout", kind, other, arg), lambda: bool(self.lib.lib.dnnl_memory_desc_equal(
            self._part(kind)[2][arg].used, self._part(other)[2][arg].used)))

    def run(self, kind, arrays, entered=None, zeroed=()):
        """Execute ``kind`` on ``arrays``, user-layout arrays by argument (outputs
        written); ``entered``: inputs already in the layout it reads, by argument;
        ``zeroed``: outputs it adds into, zeroed first. Returns the inputs as it read
        them, by argument."""
        lib = self.lib
        _, primitive, ops, bindings, scratch = self._part(kind)
        ordered, outs, read = [], [], {}
        for arg, _ in bindings.args:
            op = ops.get(arg)
            if arg == _SCRATCHPAD:
                ordered.append(_aligned("dnnl_scratchpad", scratch, np.uint8))
            elif op is None:  # a bias, its gradient or a workspace, as it is
                ordered.append(arrays[arg])
            elif op.into:
                read[arg] = entered[arg] if entered and arg in entered else op.enter(lib, arrays[arg], f"dnnl{arg}")
                ordered.append(read[arg])
            else:
                buf = op.output(f"dnnl{arg}", arrays[arg])
                if arg in zeroed:
                    buf.fill(0)
                ordered.append(buf)
                outs.append((op, buf, arrays[arg]))
        lib.run(primitive, bindings, ordered)
        for op, buf, array in outs:
            op.leave(lib, buf, array)
        return read

    def __del__(self):  # when no cache entry or running call holds it any more
        for bindings in self.bindings:
            bindings.destroy()
        for fn, handle in reversed(self.handles):
            getattr(self.lib.lib, fn)(handle)
        self.handles, self.bindings = [], []


class _Convolution(_Primitives):
    """The forward, backward-data and backward-weights primitives of one geometry,
    each made when first needed."""

    def __init__(self, lib, x_shape, w_shape, y_shape, groups, strides, dilates, pad_l, pad_r, bias):
        super().__init__(lib)
        if groups > 1:
            w_shape = (groups, w_shape[0] // groups) + tuple(w_shape[1:])
        self.shapes = x_shape, w_shape, y_shape
        self.geometry = tuple(_dims(v) for v in (strides, dilates, pad_l, pad_r))
        self.plain = [self._md(s, _plain_tag(len(s))) for s in (x_shape, w_shape, y_shape)]
        self.plain_bias = self._md((y_shape[1],), _plain_tag(1))
        self.any = [self._md(s, _ANY) for s in (x_shape, w_shape, y_shape)]
        self.bias = bias
        self.forward_pd = self._pd("dnnl_convolution_forward_primitive_desc_create", ctypes.c_int(_FORWARD_TRAINING),
                                   ctypes.c_int(_DIRECT), self.any[0], self.any[1],
                                   self.plain_bias if bias else None, self.any[2], *self.geometry, lib.attr)
        if self.implementation().startswith("ref"):  # no JIT kernel for this CPU or shape: conv.py is faster
            raise OneDNNError(f"only oneDNN's reference convolution for {x_shape} by {w_shape}")

    def _make_part(self, kind):
        lib, (x, w, y), (ax, aw, ay) = self.lib, self.plain, self.any
        bias = ()
        if kind == "forward":
            pd, operands = self.forward_pd, ((_SRC, x, True), (_WEIGHTS, w, True), (_DST, y, False))
            bias = ((_BIAS, self.plain_bias),) if self.bias else ()
        elif kind == "data":
            pd = self._pd("dnnl_convolution_backward_data_primitive_desc_create", ctypes.c_int(_DIRECT),
                          ax, aw, ay, *self.geometry, self.forward_pd, lib.attr)
            operands = ((_DIFF_DST, y, True), (_WEIGHTS, w, True), (_DIFF_SRC, x, False))
        else:
            pd = self._pd("dnnl_convolution_backward_weights_primitive_desc_create", ctypes.c_int(_DIRECT),
                          ax, aw, self.plain_bias if self.bias else None, ay, *self.geometry, self.forward_pd,
                          lib.attr)
            operands = ((_SRC, x, True), (_DIFF_DST, y, True), (_DIFF_WEIGHTS, w, False))
            bias = ((_DIFF_BIAS, self.plain_bias),) if self.bias else ()
        return self._made(kind, pd, operands, bias)

    def jit(self, kind):
        """Whether ``kind`` runs a JIT kernel, not oneDNN's reference one (asked once)."""
        return self._once(("jit", kind), lambda: not self.implementation(kind).startswith("ref"))


def _plain_tag(ndims):
    return 1 + ndims  # dnnl_a = 2, dnnl_ab = 3, ... (dnnl_types.h)


class _Cache(OrderedDict):
    """Primitives by geometry, least recently used dropped past ``_CACHE_SIZE``."""

    made = []  # every cache, for their locks' renewal in a forked child

    def __init__(self):
        super().__init__()
        self.lock = threading.Lock()
        _Cache.made.append(self)

    def get_or_make(self, key, make):
        with self.lock:
            conv = self.get(key)
            if conv is not None or key in self:
                self.move_to_end(key)
                return conv
        try:
            conv = make()
        except OneDNNError:
            conv = None  # no implementation for this geometry: conv.py computes it
        with self.lock:
            self[key] = conv
            while len(self) > _CACHE_SIZE:
                self.popitem(last=False)
        return conv


_cache = _Cache()


def convolution(x_shape, w_shape, geo, bias):
    """The oneDNN convolution for these shapes and ``conv.Geometry``, or None where
    oneDNN is off, absent or has no kernel for it."""
    from ..backends import mkldnn
    lib = library()
    if lib is None or not mkldnn.enabled or geo.transposed or x_shape[0] == 0:
        return None
    out = _out_hw(x_shape, w_shape, geo)
    # the right padding oneDNN wants: how far the last window reaches past the input
    # (negative where the input's last rows are never read)
    pad_r = [(o - 1) * s + d * (k - 1) + 1 - size - before for o, size, k, s, d, (before, _)
             in zip(out, x_shape[2:], w_shape[2:], geo.stride, geo.dilation, geo.padding)]
    y_shape = (x_shape[0], w_shape[0]) + out
    pad_l = tuple(p[0] for p in geo.padding)
    dilates = tuple(d - 1 for d in geo.dilation)
    # a primitive keeps the thread count it was made with
    key = (x_shape, w_shape, geo.stride, dilates, pad_l, tuple(pad_r), geo.groups, bias, threads.get_num_threads())
    lib.stream()  # this thread's OpenMP thread count set before a primitive is made
    return _cache.get_or_make(key, lambda: _Convolution(lib, x_shape, w_shape, y_shape, geo.groups, geo.stride,
                                                        dilates, pad_l, pad_r, bias))


def _applies(xp, *arrays):
    return xp is np and all(a is None or a.dtype == np.float32 for a in arrays)


def transposed_convolution(x_shape, w_shape, geo):
    """The convolution whose input gradient is the transposed convolution of
    ``geo`` (its input has the transposed one's output shape, its weight the same
    array), or None as ``convolution``; None too where an output padding reaches
    past the stride (PyTorch allows it below the dilation) or oneDNN has only its
    reference kernel for that gradient."""
    out = tuple((size - 1) * s - p0 - p1 + d * (k - 1) + op + 1 for size, k, s, d, (p0, p1), op
                in zip(x_shape[2:], w_shape[2:], geo.stride, geo.dilation, geo.padding, geo.output_padding))
    conv = convolution((x_shape[0], w_shape[1] * geo.groups) + out, w_shape,
                       geo._replace(transposed=False, output_padding=(0,) * len(out)), False)
    if not conv or conv.shapes[2] != tuple(x_shape) or not conv.jit("data"):
        return None
    return conv


def convolve(xp, x, w, b, geo):
    """The convolution's output, or None where oneDNN does not take it."""
    if not _applies(xp, x, w, b):
        return None
    if geo.transposed:
        return _transposed_forward(x, w, b, geo)
    conv = convolution(x.shape, w.shape, geo, b is not None)
    if not conv:
        return None
    y = np.empty(conv.shapes[2], np.float32)
    arrays = {_SRC: np.ascontiguousarray(x), _WEIGHTS: np.ascontiguousarray(w), _DST: y}
    if b is not None:
        arrays[_BIAS] = np.ascontiguousarray(b)
    conv.run("forward", arrays)
    return y


def gradients(xp, x, w, g, geo, need_x, need_w, need_b):
    """(input, weight, bias) gradients, None for those not asked for; or None where
    oneDNN does not take the convolution."""
    if not _applies(xp, x, w, g):
        return None
    if geo.transposed:
        return _transposed_gradients(x, w, g, geo, need_x, need_w, need_b)
    conv = convolution(x.shape, w.shape, geo, need_w and need_b)
    if not conv:
        return None
    g = np.ascontiguousarray(g)
    gx = gw = gb = read = None
    if need_x:
        gx = np.empty(x.shape, np.float32)
        read = conv.run("data", {_DIFF_DST: g, _WEIGHTS: np.ascontiguousarray(w), _DIFF_SRC: gx})
    if need_w:
        gw = np.empty(w.shape, np.float32)
        arrays = {_SRC: np.ascontiguousarray(x), _DIFF_DST: g, _DIFF_WEIGHTS: gw}
        if conv.bias:
            gb = arrays[_DIFF_BIAS] = np.empty(w.shape[0], np.float32)
        # the output gradient reordered once for both, where both read the same layout
        # (its blocked buffer is untouched by the data primitive's run)
        shared = read is not None and conv.same_layout("data", "weights", _DIFF_DST)
        conv.run("weights", arrays, {_DIFF_DST: read[_DIFF_DST]} if shared else None)
    if need_b and gb is None:
        gb = bias_grad(np, g)
    return gx, gw, gb


def _transposed_forward(x, w, b, geo):
    conv = transposed_convolution(x.shape, w.shape, geo)
    if not conv:
        return None
    y = np.empty(conv.shapes[0], np.float32)
    conv.run("data", {_DIFF_DST: np.ascontiguousarray(x), _WEIGHTS: np.ascontiguousarray(w), _DIFF_SRC: y})
    if b is not None:
        y += b.reshape((1, -1) + (1,) * (y.ndim - 2))
    return y


def _transposed_gradients(x, w, g, geo, need_x, need_w, need_b):
    """A transposed convolution's gradients: its convolution's forward of ``g`` for the
    input, and that convolution's weight gradient with ``x`` as the output gradient."""
    conv = transposed_convolution(x.shape, w.shape, geo)
    if not conv:
        return None
    g = np.ascontiguousarray(g)
    gx = gw = None
    if need_x:
        gx = np.empty(x.shape, np.float32)
        conv.run("forward", {_SRC: g, _WEIGHTS: np.ascontiguousarray(w), _DST: gx})
    if need_w:
        gw = np.empty(w.shape, np.float32)
        conv.run("weights", {_SRC: g, _DIFF_DST: np.ascontiguousarray(x), _DIFF_WEIGHTS: gw})
    return gx, gw, bias_grad(np, g) if need_b else None

"""Shared by the worker scripts: deterministic per-rank inputs (so every rank can
compute every expected value with numpy), result checks, and a case runner that
prints one JSON line per case for the test to parse."""

import functools
import hashlib
import json
import os
import sys
import time
import traceback
from datetime import timedelta

import numpy as np

import distnn
import distnn.distributed as dist
from distnn.tensor import Tensor

DTYPES = ("float32", "float64", "float16", "int64", "int32", "int8", "uint8", "bool")
FLOATS = ("float32", "float64", "float16")
UFUNCS = {"sum": np.add, "product": np.multiply, "min": np.minimum, "max": np.maximum}
REDUCE_OPS = {"sum": dist.ReduceOp.SUM, "avg": dist.ReduceOp.AVG, "min": dist.ReduceOp.MIN,
              "max": dist.ReduceOp.MAX, "product": dist.ReduceOp.PRODUCT}


def emit(**fields):
    print(json.dumps(fields), flush=True)


def init(timeout_s=None):
    """Join the job with the group timeout the test chose (DISTNN_TEST_TIMEOUT, seconds)."""
    timeout_s = float(os.environ.get("DISTNN_TEST_TIMEOUT", 30)) if timeout_s is None else timeout_s
    dist.init_process_group(timeout=timedelta(seconds=timeout_s))
    return dist.get_rank(), dist.get_world_size()


def data(rank, n, dtype, salt=0, op="sum"):
    """Rank ``rank``'s input: ``n`` values of ``dtype``, different per rank and salt.
    Floats are irrational-looking (so summation order shows as round-off); products
    stay near 1; integers wrap identically in numpy and in the collective."""
    i = np.arange(n, dtype=np.int64)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        x = np.sin(i * 0.37 + rank * 1.3 + salt * 0.11)
        return (1 + 0.25 * x if op == "product" else x).astype(dt)
    if dt.kind == "b":
        return (i * 5 + rank * 3 + salt) % 3 == 0
    v = (i * 7 + rank * 13 + salt * 5) % 11
    return (v - 5 if dt.kind == "i" else v * 23).astype(dt)


def reduced(world, n, dtype, op, salt=0):
    """numpy's reduction of every rank's ``data`` (in rank order), ``avg`` included."""
    parts = [data(q, n, dtype, salt, op) for q in range(world)]
    total = functools.reduce(UFUNCS["sum" if op == "avg" else op], parts)
    return (total / np.array(world, dtype)).astype(dtype) if op == "avg" else total


def wrap(array, kind):
    return distnn.from_numpy(array) if kind == "tensor" else array


def host(obj):
    return obj.numpy() if isinstance(obj, Tensor) else obj


def check(actual, expected, what, terms=1):
    """Exact for integers and bool; float round-off of ``terms`` additions for floats."""
    actual = host(actual)
    if actual.dtype != expected.dtype or actual.shape != expected.shape:
        raise AssertionError(f"{what}: Expect: {expected.dtype} {expected.shape}, "
                             f"Actual: {actual.dtype} {actual.shape}")
    if expected.dtype.kind == "f":
        eps = np.finfo(expected.dtype).eps
        tol = 4 * max(terms, 1) * eps * np.maximum(1.0, np.abs(expected.astype(np.float64)))
        bad = np.abs(actual.astype(np.float64) - expected.astype(np.float64)) > tol
    else:
        bad = actual != expected
    if bad.any():
        idx = np.flatnonzero(bad.reshape(-1))
        first = idx[0]
        raise AssertionError(f"{what}: {idx.size} of {expected.size} elements differ; first at flat index "
                             f"{first}: Expect: {expected.reshape(-1)[first]!r}, Actual: "
                             f"{actual.reshape(-1)[first]!r}")


def digest(*arrays):
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(host(a)).tobytes())
    return h.hexdigest()[:16]


class Runner:
    """Runs named cases ``fn(rank, world, *args)``; a failed check is reported and the
    run goes on, a failed collective (the group is then unusable) marks every later
    case as not run."""

    def __init__(self, rank, world):
        self.rank, self.world = rank, world
        self.broken = None
        self.failed = 0

    def case(self, name, fn, *args):
        if self.broken:
            self.failed += 1
            emit(case=name, fail=f"not run: group broken by {self.broken}")
            return
        try:
            emit(case=name, hash=fn(self.rank, self.world, *args))
        except Exception as exc:  # reported to the test, which shows every failure at once
            self.failed += 1
            emit(case=name, fail=f"{type(exc).__name__}: {exc}", trace=traceback.format_exc()[-3000:])
            if isinstance(exc, dist.DistributedError):
                self.broken = name

    def finish(self):
        dist.destroy_process_group()
        sys.exit(1 if self.failed else 0)


def report_error(exc, started, **extra):
    """One JSON line describing an expected failure, for the fault tests. With
    DISTNN_TEST_FAST_EXIT=1 the process then ends half a second later (time for queued
    messages such as the abort notice to leave), skipping the library's shutdown:
    tests of the error itself need not wait for that."""
    emit(rank=int(os.environ["RANK"]), error=type(exc).__name__, message=str(exc),
         is_distributed=isinstance(exc, dist.DistributedError), is_timeout=isinstance(exc, TimeoutError),
         elapsed=time.monotonic() - started, at=time.time(), **extra)
    if os.environ.get("DISTNN_TEST_FAST_EXIT") == "1":
        time.sleep(0.5)
        os._exit(0)

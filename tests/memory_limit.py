"""The one helper tests of hostile files share: call a loader in a fresh process whose
address space (RLIMIT_AS) is capped a little above what importing the loader took, so a
decoder that allocates what a file claims dies there with MemoryError instead of
thrashing this machine.

    seconds, outcome = call_with_memory_cap(read_idx, path)
    assert outcome.startswith(f"IDXFormatError {path}: "), outcome
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import distnn

HEADROOM = 256 << 20  # bytes; a quarter of what the smallest attack in the tests decodes to

# The cap is measured through /proc and enforced by setrlimit: Linux only.
needs_proc_status = pytest.mark.skipif(not Path("/proc/self/status").exists(),
                                       reason="measures address space through Linux /proc")

_CALL_WITH_MEMORY_CAP = """
import importlib, re, resource, sys, time
module, name, path, headroom = sys.argv[1:]
function = getattr(importlib.import_module(module), name)
address_space = int(re.search(r"VmSize:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)) << 10
limit = address_space + int(headroom)
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
start = time.perf_counter()
try:
    function(path)
except Exception as exc:
    print(f"{time.perf_counter() - start:.3f}", type(exc).__name__, exc)
else:
    print(f"{time.perf_counter() - start:.3f}", "returned")
"""


def call_with_memory_cap(function, path, headroom=HEADROOM):
    """(seconds, outcome) of ``function(path)`` in a process allowed ``headroom`` bytes
    more address space than it needed to import ``function``'s module; outcome is
    "ExceptionName message", or "returned" when the call raised nothing."""
    # The child imports the distnn this process imported, wherever that is.
    root = Path(distnn.__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", _CALL_WITH_MEMORY_CAP, function.__module__,
                           function.__qualname__, str(path), str(headroom)],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(root)})
    assert proc.returncode == 0, proc.stderr
    seconds, outcome = proc.stdout.strip().split(" ", 1)
    return float(seconds), outcome

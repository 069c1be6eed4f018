"""launcher/process_tree.py: finding a job's processes by marker and parent,
and never signalling a process that failed the check."""

import os
import signal
import subprocess
import sys
import uuid

import pytest

from launcher import process_tree


@pytest.fixture
def sleeper():
    launch_id = uuid.uuid4().hex
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                            env=dict(os.environ, **{process_tree.LAUNCH_ID_VAR: launch_id}))
    yield proc, launch_id
    proc.kill()
    proc.wait()


def test_snapshot_finds_marked_children(sleeper):
    proc, launch_id = sleeper
    table = process_tree.processes()
    assert table[os.getpid()].pgid == os.getpgid(0)
    assert table[proc.pid].ppid == os.getpid()
    assert process_tree.marked(launch_id, table) == [proc.pid]
    assert process_tree.marked(uuid.uuid4().hex, table) == []
    assert proc.pid in process_tree.children(table)
    assert process_tree.is_child(proc.pid) and not process_tree.is_child(os.getpid())


def test_signal_only_after_the_check(sleeper):
    proc, launch_id = sleeper
    process_tree.signal_if(proc.pid, signal.SIGKILL, lambda pid: False)
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(timeout=0.2)
    assert process_tree.kill_marked(launch_id, signal.SIGKILL) == [proc.pid]
    assert proc.wait(timeout=5) == -signal.SIGKILL

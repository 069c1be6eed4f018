"""launcher/cgroup.py: a job cgroup of each kind that works here holds a process
tree wherever its processes go, and one kill takes all of it down, even when
the caller is itself a member."""

import os
import sys
import uuid

import pytest

from launcher import cgroup
from multiproc import kill_tree, start, wait_gone

# Joins the cgroup, leaves a grandchild in its own session with an empty
# environment, prints both pids, then either sleeps or kills the cgroup itself.
MEMBER = """
import os, subprocess, sys, time
from launcher.cgroup import JobCgroup
job = JobCgroup(sys.argv[1], sys.argv[2])
job.join()
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True, env={})
print(os.getpid(), child.pid, flush=True)
if sys.argv[3] == "kill-from-inside":
    killed = job.kill()
    print(sorted(killed) == [child.pid], job.remove(), flush=True)
else:
    time.sleep(60)
"""


@pytest.fixture(params=cgroup.KINDS)
def job_cgroup(request):
    job = cgroup.JobCgroup.create(f"distnn-launcher-test-{uuid.uuid4().hex[:8]}", kinds=(request.param,))
    if job is None:
        pytest.skip(f"no writable {request.param} cgroup here")
    yield job
    job.kill()
    job.remove()


def start_member(job, mode):
    proc = start([sys.executable, "-c", MEMBER, job.kind, job.path, mode],
                 dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(cgroup.__file__))))
    pids = [int(p) for p in proc.stdout.readline().split()]
    assert len(pids) == 2, proc.stderr.read()
    return proc, pids


@pytest.mark.timeout(30)
def test_kill_takes_down_every_member_wherever_it_went(job_cgroup):
    proc, pids = start_member(job_cgroup, "sleep")
    try:
        assert sorted(job_cgroup.pids()) == sorted(pids)
        assert sorted(job_cgroup.kill()) == sorted(pids)
        assert wait_gone(pids, 5.0) == []
        assert job_cgroup.remove() and not os.path.exists(job_cgroup.path)
    finally:
        kill_tree(proc, grace=0.1)


@pytest.mark.timeout(30)
def test_a_member_that_kills_its_cgroup_moves_out_first(job_cgroup):
    proc, pids = start_member(job_cgroup, "kill-from-inside")
    try:
        assert proc.stdout.readline().split() == ["True", "True"]
        assert proc.wait(timeout=10) == 0
        assert wait_gone(pids[1:], 5.0) == []
        assert not os.path.exists(job_cgroup.path)
    finally:
        kill_tree(proc, grace=0.1)


def test_nothing_to_create_or_open_where_no_cgroup_works(tmp_path):
    assert cgroup.JobCgroup.create("distnn-launcher-test-none", kinds=()) is None
    assert cgroup.JobCgroup.open(str(tmp_path)) is None
    assert cgroup.JobCgroup.open(str(tmp_path / "missing")) is None

"""Rank/world/master resolution from arguments and launcher or cluster variables
(distnn/distributed/env.py); pure functions over an explicit environ dict."""

import socket

import pytest

from distnn.distributed import env

LAUNCHER = {"RANK": "2", "WORLD_SIZE": "4", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "2"}
SLURM = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_NTASKS_PER_NODE": "4",
         "SLURM_STEP_ID": "0"}
OMPI = {"OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "6", "OMPI_COMM_WORLD_LOCAL_RANK": "1",
        "OMPI_COMM_WORLD_LOCAL_SIZE": "3"}
PMI = {"PMI_RANK": "1", "PMI_SIZE": "3", "MPI_LOCALRANKID": "1", "MPI_LOCALNRANKS": "3"}


@pytest.mark.parametrize("environ, expected", [
    (LAUNCHER, (2, 4, 0, 2)),
    (SLURM, (5, 8, 1, 4)),
    (OMPI, (3, 6, 1, 3)),
    (PMI, (1, 3, 1, 3)),
    ({"RANK": "1", "WORLD_SIZE": "3"}, (1, 3, 1, 3)),  # no local info: one host assumed
    (dict(SLURM, SLURM_NTASKS_PER_NODE="4(x2)"), (5, 8, 1, 4)),
    ({"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_TASKS_PER_NODE": "4(x2)",
      "SLURM_STEPID": "3"}, (5, 8, 1, 4)),
    ({"SLURM_PROCID": "2", "SLURM_NTASKS": "3", "SLURM_LOCALID": "0", "SLURM_STEP_TASKS_PER_NODE": "1(x3)",
      "SLURM_TASKS_PER_NODE": "2(x3)", "SLURM_STEP_ID": "0"}, (2, 3, 0, 1)),  # the step's layout wins
])
def test_each_source_alone(environ, expected):
    assert env.resolve_ranks(environ=environ) == expected


@pytest.mark.parametrize("environ, expected", [
    ({**SLURM, **LAUNCHER}, (2, 4, 0, 2)),          # the launcher's variables beat srun's
    ({**OMPI, **SLURM}, (3, 6, 1, 3)),              # mpirun in an allocation: its orted's srun task id is
    ({**PMI, **SLURM}, (1, 3, 1, 3)),               # the node's, not the rank (likewise hydra's PMI)
    ({**PMI, **OMPI}, (3, 6, 1, 3)),                # mpirun (Open MPI) beats PMI
    ({**PMI, **OMPI, **SLURM, **LAUNCHER}, (2, 4, 0, 2)),
    ({"RANK": "1", **SLURM}, (5, 8, 1, 4)),         # RANK without WORLD_SIZE is not a source
])
def test_precedence(environ, expected):
    assert env.resolve_ranks(environ=environ) == expected


def test_explicit_arguments_beat_the_environment():
    assert env.resolve_ranks(rank=0, world_size=2, environ={}) == (0, 2, 0, 2)
    assert env.resolve_ranks(rank=1, world_size=2, environ=SLURM)[:2] == (1, 2)
    assert env.resolve_ranks(rank=3, environ=LAUNCHER)[:2] == (3, 4)


def test_explicit_arguments_ignore_bad_environment_values():
    # Both given: the environment is not consulted, so garbage in it cannot matter.
    assert env.resolve_ranks(rank=0, world_size=2, environ={"RANK": "x", "WORLD_SIZE": "2"})[:2] == (0, 2)


@pytest.mark.parametrize("environ, names", [
    ({"RANK": "one", "WORLD_SIZE": "4"}, ["RANK", "'one'"]),
    ({"RANK": "1", "WORLD_SIZE": "4.0"}, ["WORLD_SIZE", "'4.0'"]),
    ({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "x"}, ["LOCAL_RANK", "'x'"]),
    ({"SLURM_PROCID": "", "SLURM_NTASKS": "2", "SLURM_STEP_ID": "0"}, ["SLURM_PROCID"]),
    ({"RANK": "4", "WORLD_SIZE": "4"}, ["rank=4", "world_size=4"]),
    ({"RANK": "-1", "WORLD_SIZE": "4"}, ["rank=-1"]),
    ({"RANK": "0", "WORLD_SIZE": "0"}, ["world_size=0"]),
])
def test_bad_values_name_the_variable(environ, names):
    with pytest.raises(ValueError) as info:
        env.resolve_ranks(environ=environ)
    for name in names:
        assert name in str(info.value)


BATCH_STEP = {"SLURM_PROCID": "0", "SLURM_NTASKS": "2", "SLURM_LOCALID": "0", "SLURM_JOB_ID": "7"}  # sbatch -n 2


@pytest.mark.parametrize("environ, launched", [
    (LAUNCHER, True), (SLURM, True), (OMPI, True), (PMI, True),
    ({}, False),
    ({"RANK": "0", "WORLD_SIZE": "1"}, False),      # a world of one needs no process group
    (BATCH_STEP, False),                            # an sbatch script run without srun is no task of a step
    ({"RANK": "1"}, False),
])
def test_is_launched_reads_what_init_process_group_reads(environ, launched):
    assert env.is_launched(environ) is launched
    if launched:
        assert env.resolve_ranks(environ=environ)[1] > 1


def test_batch_step_is_not_taken_for_rank_0_of_the_allocation():
    with pytest.raises(ValueError, match="RANK and WORLD_SIZE"):
        env.resolve_ranks(environ=BATCH_STEP)


@pytest.mark.parametrize("environ, fallback, expected", [
    (LAUNCHER, None, 0), (SLURM, None, 1), (OMPI, None, 1), (PMI, None, 1),
    ({"LOCAL_RANK": "3"}, None, 3), ({}, 5, 5),
])
def test_get_node_local_rank(environ, fallback, expected):
    assert env.get_node_local_rank(fallback, environ) == expected


def test_get_node_local_rank_without_one_raises_as_torch():
    with pytest.raises(RuntimeError, match="LOCAL_RANK is not in the environment"):
        env.get_node_local_rank(environ={})


@pytest.mark.parametrize("nodelist, first", [
    ("node07", "node07"), ("node[03-05,9],gpu1", "node03"), ("gpu[5,7-9]", "gpu5"), ("a,b", "a"),
    ("rack[2-3]-n[01-04]", "rack2-n01"),
])
def test_first_host_of_a_slurm_hostlist(nodelist, first):
    assert env.first_host(nodelist) == first


STEP = dict(SLURM, SLURM_JOB_ID="1234", SLURM_STEP_NODELIST="node[03-04]", SLURM_JOB_NODELIST="node[01-04]")


def test_srun_task_finds_the_store_without_exports():
    master = env.resolve_master(environ=dict(STEP, MASTER_ADDR="127.0.0.1"))  # a name that resolves here
    assert (master.host, master.port) == ("127.0.0.1", 20000 + (1234 * 16 + 0) % 10000)
    assert env.slurm_master(STEP) == ("node03", 29744)                     # the step's first node
    assert env.slurm_master(dict(STEP, SLURM_STEP_ID="1"))[1] == 29745    # another step, another port
    explicit = env.resolve_master(environ=dict(STEP, MASTER_ADDR="127.0.0.1", MASTER_PORT="29500"))
    assert explicit.port == 29500                                          # exported values win


@pytest.mark.parametrize("environ", [BATCH_STEP, dict(BATCH_STEP, SLURM_JOB_NODELIST="n1"), LAUNCHER])
def test_outside_an_srun_step_the_store_must_be_given(environ):
    assert env.slurm_master(environ) is None
    with pytest.raises(ValueError, match="MASTER_ADDR, MASTER_PORT not set"):
        env.resolve_master(environ=environ)


def test_unknown_rank_says_how_to_start():
    with pytest.raises(ValueError, match="RANK and WORLD_SIZE"):
        env.resolve_ranks(environ={"PATH": "/bin"})
    with pytest.raises(ValueError, match="launcher"):
        env.resolve_ranks(rank=0, environ={})


@pytest.mark.parametrize("init_method, environ, expected", [
    (None, {"MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500"}, ("10.0.0.1", 29500)),
    ("env://", {"MASTER_ADDR": "localhost", "MASTER_PORT": "1234"}, ("localhost", 1234)),
    ("tcp://127.0.0.1:23456", {"MASTER_ADDR": "ignored", "MASTER_PORT": "1"}, ("127.0.0.1", 23456)),
    ("tcp://[::1]:23456", {}, ("::1", 23456)),
    (None, {"MASTER_ADDR": "::1", "MASTER_PORT": "29500"}, ("::1", 29500)),
    (None, {"MASTER_ADDR": "[::1]", "MASTER_PORT": "29500"}, ("::1", 29500)),  # as init_method spells it
    (None, {"MASTER_ADDR": "fe80::1%eth0", "MASTER_PORT": "29500"}, ("fe80::1%eth0", 29500)),
])
def test_master_address(init_method, environ, expected):
    master = env.resolve_master(init_method, environ=environ)
    assert (master.host, master.port) == expected


@pytest.mark.parametrize("host, addresses", [
    ("10.0.0.1", ((socket.AF_INET, ("10.0.0.1", 29500)),)),
    ("::1", ((socket.AF_INET6, ("::1", 29500, 0, 0)),)),
    ("[::1]", ((socket.AF_INET6, ("::1", 29500, 0, 0)),)),
])
def test_literal_master_carries_its_address_without_a_lookup(host, addresses, monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", _no_lookup)
    assert env.resolve_master(environ={"MASTER_ADDR": host, "MASTER_PORT": "29500"}).addresses == addresses


def _no_lookup(*args, **kwargs):
    raise AssertionError(f"unexpected lookup: getaddrinfo{args}")


def test_master_name_is_looked_up_once_ipv4_first(monkeypatch):
    calls = []

    def dual_stack(host, port, *args, **kwargs):
        calls.append(host)
        return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("2001:db8::7", port, 0, 0)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.7", port))]

    monkeypatch.setattr(socket, "getaddrinfo", dual_stack)
    master = env.resolve_master("tcp://node7:23456")
    assert calls == ["node7"]
    assert master == ("node7", 23456, ((socket.AF_INET, ("192.0.2.7", 23456)),
                                       (socket.AF_INET6, ("2001:db8::7", 23456, 0, 0))))


@pytest.mark.parametrize("environ, missing", [
    ({"MASTER_PORT": "29500"}, "MASTER_ADDR"),
    ({"MASTER_ADDR": "localhost"}, "MASTER_PORT"),
    ({}, "MASTER_ADDR, MASTER_PORT"),
])
def test_missing_master_names_the_variables(environ, missing):
    with pytest.raises(ValueError) as info:
        env.resolve_master(environ=environ)
    assert f"{missing} not set" in str(info.value)
    assert "init_method" in str(info.value)


@pytest.mark.parametrize("init_method, environ, names", [
    ("file:///tmp/x", {}, ["tcp://host:port", "'file:///tmp/x'"]),
    (None, {"MASTER_ADDR": "localhost", "MASTER_PORT": "http"}, ["MASTER_PORT", "'http'"]),
    (None, {"MASTER_ADDR": "localhost", "MASTER_PORT": "70000"}, ["MASTER_PORT", "70000"]),
    ("tcp://localhost", {}, ["tcp://localhost"]),
    ("tcp://localhost:x", {}, ["tcp://localhost:x"]),
])
def test_bad_master_names_the_value(init_method, environ, names):
    with pytest.raises(ValueError) as info:
        env.resolve_master(init_method, environ=environ)
    for name in names:
        assert name in str(info.value)


@pytest.mark.parametrize("host", ["", " ", "node 7", " node7", "node7\n", "tcp://10.0.0.1", "node/7",
                                  "user@node7", "[]"])
def test_implausible_master_addr_is_refused_naming_it(host):
    # Refused before any socket opens: an empty MASTER_ADDR used to make rank 0 wait at tcp://:port.
    with pytest.raises(ValueError) as info:
        env.resolve_master(environ={"MASTER_ADDR": host, "MASTER_PORT": "29500"})
    assert "MASTER_ADDR" in str(info.value) and repr(host) in str(info.value)


@pytest.mark.parametrize("init_method", ["tcp://node 7:29500", "tcp://[]:29500", "tcp://no/de:29500"])
def test_implausible_init_method_host_is_refused_naming_it(init_method):
    with pytest.raises(ValueError) as info:
        env.resolve_master(init_method, environ={"MASTER_ADDR": "localhost", "MASTER_PORT": "1"})
    assert f"init_method={init_method!r}" in str(info.value)


@pytest.mark.parametrize("init_method, environ, names", [
    (None, {"MASTER_ADDR": "no-such-host.invalid", "MASTER_PORT": "29500"},
     ["MASTER_ADDR='no-such-host.invalid'", "does not resolve"]),
    ("tcp://no-such-host.invalid:29500", {}, ["init_method='tcp://no-such-host.invalid:29500'", "does not resolve"]),
    (None, {"MASTER_ADDR": "no-such-host.invalid:29500", "MASTER_PORT": "29500"},
     ["MASTER_ADDR='no-such-host.invalid:29500'", "the port goes in MASTER_PORT"]),
])
def test_unresolvable_master_names_the_variable(init_method, environ, names):
    # .invalid never resolves (RFC 2606); this used to surface later as a bare socket.gaierror.
    with pytest.raises(ValueError) as info:
        env.resolve_master(init_method, environ=environ)
    for name in names:
        assert name in str(info.value)


@pytest.mark.parametrize("environ, expected", [({}, 300.0), ({"DISTNN_TIMEOUT": "2.5"}, 2.5),
                                               ({"DISTNN_TIMEOUT": "60"}, 60.0)])
def test_default_timeout(environ, expected):
    assert env.default_timeout(environ) == expected


@pytest.mark.parametrize("value", ["soon", "0", "-3", ""])
def test_bad_default_timeout_names_the_variable(value):
    with pytest.raises(ValueError, match="DISTNN_TIMEOUT"):
        env.default_timeout({"DISTNN_TIMEOUT": value})


def test_job_token():
    assert env.job_token({env.TOKEN_VAR: "s3cret"}) == b"s3cret"
    assert env.job_token({}) == b""

"""Where a process learns its rank and world: explicit arguments, the launcher's
environment (RANK, WORLD_SIZE, ...), or a cluster engine's (Open MPI's mpirun,
PMI, Slurm's srun), in that order; and where the rendezvous store is
(MASTER_ADDR/MASTER_PORT or ``init_method``; under srun, by default, the step's
first node and a port derived from the job), checked and resolved once, before
any socket opens."""

import ipaddress
import os
import socket
from typing import NamedTuple

# The most specific starter first. mpirun (and MPICH's hydra, which sets PMI_*) started
# inside a Slurm allocation launches its daemons with srun, so its ranks also carry the
# daemon's SLURM_PROCID (the node's index): the MPI variables must win over Slurm's.
_SOURCES = (
    ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"),
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
     "OMPI_COMM_WORLD_LOCAL_SIZE"),
    ("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"),
    ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID",
     ("SLURM_NTASKS_PER_NODE", "SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE")),
)

TOKEN_VAR = "DISTNN_JOB_TOKEN"


def _int_env(name, environ):
    value = environ.get(name)
    if value is None:
        return None
    try:
        return int(value.split("(")[0].split(",")[0])  # Slurm writes e.g. "4(x2),3" per node
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def launched_ranks(environ=None):
    """(rank, world_size, local_rank, local_world_size) that a launcher or cluster engine
    set in the environment (the first of _SOURCES with a rank and a size; the local
    values None where it gives none), or None when nothing started this process as a rank."""
    environ = os.environ if environ is None else environ
    for rank_var, size_var, local_var, local_size_var in _SOURCES:
        if rank_var == "SLURM_PROCID" and "SLURM_STEP_ID" not in environ and "SLURM_STEPID" not in environ:
            continue  # an sbatch script itself (the batch step, always "task 0"), not a task srun started
        if rank_var in environ and size_var in environ:
            names = local_size_var if isinstance(local_size_var, tuple) else (local_size_var,)
            local_size = next((_int_env(n, environ) for n in names if n in environ), None)
            return _int_env(rank_var, environ), _int_env(size_var, environ), _int_env(local_var, environ), local_size
    return None


def is_launched(environ=None):
    """Whether this process is one rank of a job of several that a launcher started:
    ``python -m launcher`` (or torchrun-style RANK/WORLD_SIZE), Slurm's srun, Open MPI's
    mpirun or a PMI launcher; the same variables ``init_process_group()`` reads, so a
    script that calls it exactly when this is True distributes under any of them and
    runs alone otherwise. A world of one is not "launched": it needs no process group."""
    found = launched_ranks(environ)
    return found is not None and found[1] > 1


def get_node_local_rank(fallback_rank=None, environ=None):
    """This process's rank among those on its node, as ``torch.distributed.get_node_local_rank``:
    LOCAL_RANK, else Slurm's, Open MPI's or PMI's local rank, else ``fallback_rank``."""
    found = launched_ranks(environ)
    if found is not None and found[2] is not None:
        return found[2]
    environ = os.environ if environ is None else environ
    if "LOCAL_RANK" in environ:
        return _int_env("LOCAL_RANK", environ)
    if fallback_rank is not None:
        return int(fallback_rank)
    raise RuntimeError("LOCAL_RANK is not in the environment. Consider passing fallback_rank to allow "
                       "`get_node_local_rank` to work, assuming you are not running in a multi-device "
                       "context and want the code to run locally instead.")


def resolve_ranks(rank=None, world_size=None, environ=None):
    """(rank, world_size, local_rank, local_world_size) from arguments or the environment."""
    environ = os.environ if environ is None else environ
    if rank is not None and world_size is not None:
        _check_rank(rank, world_size)
        return rank, world_size, rank, world_size
    local, local_size = None, None
    found = launched_ranks(environ)
    if found is not None:
        env_rank, env_size, local, local_size = found
        rank = env_rank if rank is None else rank
        world_size = env_size if world_size is None else world_size
    if rank is None or world_size is None:
        raise ValueError("rank and world_size are unknown: pass rank= and world_size=, start the script "
                         "with `python -m launcher`, or set RANK and WORLD_SIZE (srun and mpirun set theirs)")
    _check_rank(rank, world_size)
    return rank, world_size, rank if local is None else local, world_size if local_size is None else local_size


def _check_rank(rank, world_size):
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"Expect: 0 <= rank < world_size, Actual: rank={rank}, world_size={world_size}")


class Master(NamedTuple):
    """The rendezvous store's address. ``addresses``: (family, sockaddr) of each address
    ``host`` resolves to, IPv4 first. The one lookup of ``host``: the process group
    picks its bind interface from these, so no later lookup can disagree with this one."""

    host: str
    port: int
    addresses: tuple


def resolve_master(init_method=None, environ=None):
    """The ``Master`` of the rendezvous store, from ``tcp://host:port`` or MASTER_ADDR/MASTER_PORT."""
    environ = os.environ if environ is None else environ
    if init_method not in (None, "env://"):
        if not init_method.startswith("tcp://"):
            raise ValueError(f"Expect: init_method 'env://' or 'tcp://host:port', Actual: {init_method!r}")
        host, sep, port = init_method[len("tcp://"):].rpartition(":")
        if not sep or not host:
            raise ValueError(f"Expect: init_method 'tcp://host:port', Actual: {init_method!r}")
        port = _port(port, f"the port of init_method {init_method!r}")
        return _master(host.strip("[]"), port, f"the host of init_method={init_method!r}")
    host, port = environ.get("MASTER_ADDR"), environ.get("MASTER_PORT")
    slurm = slurm_master(environ)
    if slurm is not None:  # a task of an srun step: what is not exported comes from the step
        host = slurm[0] if host is None else host
        port = str(slurm[1]) if port is None else port
    if host is None or port is None:
        missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if environ.get(v) is None]
        raise ValueError(f"environment variable(s) {', '.join(missing)} not set: the rendezvous address "
                         "is unknown (the launcher sets them; or pass init_method='tcp://host:port')")
    port = _port(port, f"MASTER_PORT={port!r}")
    return _master(host.strip("[]"), port, f"MASTER_ADDR={host!r}")


def slurm_master(environ=None):
    """``(host, port)`` for a task that srun started: the first node of the step (where Slurm
    puts task 0) and 20000 + (SLURM_JOB_ID * 16 + SLURM_STEP_ID) % 10000, the same in every
    task of the step and different for two jobs (or steps) sharing a node; None outside a
    step. MASTER_ADDR and MASTER_PORT, when exported, win over these."""
    environ = os.environ if environ is None else environ
    nodes = environ.get("SLURM_STEP_NODELIST") or environ.get("SLURM_JOB_NODELIST")
    job, step = environ.get("SLURM_JOB_ID"), environ.get("SLURM_STEP_ID", environ.get("SLURM_STEPID"))
    if not nodes or job is None or step is None or launched_ranks(environ) is None:
        return None
    try:
        port = 20000 + (int(job) * 16 + int(step)) % 10000
    except ValueError:
        return None
    return first_host(nodes), port


def first_host(nodelist):
    """The first host of a Slurm hostlist: "node[03-05,9],gpu1" -> "node03"."""
    depth, end = 0, len(nodelist)
    for i, c in enumerate(nodelist):
        depth += (c == "[") - (c == "]")
        if c == "," and depth == 0:
            end = i
            break
    first = nodelist[:end]
    while "[" in first:
        start = first.index("[")
        stop = first.index("]", start)
        first = first[:start] + first[start + 1:stop].split(",")[0].split("-")[0] + first[stop + 1:]
    return first


def _master(host, port, what):
    """``Master(host, port, ...)`` once ``host`` is a plausible host name or IP address
    that resolves.

    Checked here, where the variable that holds it is known: later a bad host only
    surfaces as a socket error (or, empty, as a rendezvous that waits for nothing)."""
    if not host or not all(c.isalnum() or c in "._-:%" for c in host):
        raise ValueError(f"Expect: a host name or IP address of the machine running rank 0 as "
                         f"{what.split('=')[0]}, Actual: {what}")
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:  # needs no lookup; a scope such as %eth0 is checked when a socket uses it
        if literal.version == 4:
            return Master(host, port, ((socket.AF_INET, (host, port)),))
        return Master(host, port, ((socket.AF_INET6, (host, port, 0, 0)),))
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        # "node:29500" is the usual slip; an address with a colon is IPv6 and parsed above.
        hint = "; the port goes in MASTER_PORT or init_method's ':port'" if ":" in host else ""
        raise ValueError(f"{what} does not resolve to an address ({exc}{hint})") from None
    # IPv4 first: the data sockets bind IPv6 only for a master that has no IPv4 address
    addresses = sorted(((family, sockaddr) for family, _, _, _, sockaddr in found),
                       key=lambda a: a[0] != socket.AF_INET)
    return Master(host, port, tuple(addresses))


def _port(text, what):
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise ValueError(f"Expect: a TCP port in 1..65535 as {what.split('=')[0]}, Actual: {what}")
    return port


def job_token(environ=None):
    """The per-job secret from the launcher (bytes), or empty when run without one."""
    environ = os.environ if environ is None else environ
    return environ.get(TOKEN_VAR, "").encode()


def default_timeout(environ=None):
    """Seconds every blocking wait may take: $DISTNN_TIMEOUT (set by the launcher's
    --timeout), else 300."""
    environ = os.environ if environ is None else environ
    value = environ.get("DISTNN_TIMEOUT")
    if value is None:
        return 300.0
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"DISTNN_TIMEOUT={value!r} is not a number of seconds") from None
    if seconds <= 0:
        raise ValueError(f"Expect: DISTNN_TIMEOUT > 0 seconds, Actual: {value}")
    return seconds

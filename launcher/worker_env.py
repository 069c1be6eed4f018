"""The contract with workers: the environment each one starts with (ranks,
rendezvous address, job token, run id, restart count, BLAS thread caps and idle spin), the
job token itself, and the free port rank 0 will serve the store on.
"""

import os
import secrets
import socket

TOKEN_VAR = "DISTNN_JOB_TOKEN"  # distnn.distributed reads exactly this name
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
# OpenBLAS's idle threads spin 2**20 cycles, not 2**28, after a threaded call (why:
# distnn/threads.py, which sets the same when numpy is not loaded before distnn)
BLAS_SPIN = ("OPENBLAS_THREAD_TIMEOUT", "20")


def new_token():
    """A fresh per-job secret: 32 random bytes, as hex (the distributed layer reads a string)."""
    return secrets.token_hex(32)


def usable_cores():
    """Cores this process may run on (honours taskset/cpusets, unlike os.cpu_count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def threads_per_worker(local_workers, cores=None):
    """So that N workers on C cores run C BLAS threads in all, not N * C."""
    return max(1, (usable_cores() if cores is None else cores) // local_workers)


def worker_env(base, cfg, local_rank, *, restart_count, master_port, token, error_file, launch_id,
               launcher_pid, run_id, runtime_dir):
    """The environment of local worker ``local_rank`` for one attempt. ``run_id`` names
    the launch: new for each ``python -m launcher`` (node 0's), the same for all its
    attempts and nodes, so a restart can tell its own checkpoints from older runs'."""
    env = dict(base)
    env.update(
        RANK=str(cfg.node_rank * cfg.workers + local_rank),
        LOCAL_RANK=str(local_rank),
        WORLD_SIZE=str(cfg.world_size),
        LOCAL_WORLD_SIZE=str(cfg.workers),
        GROUP_RANK=str(cfg.node_rank),
        GROUP_WORLD_SIZE=str(cfg.nnodes),
        MASTER_ADDR=cfg.master_addr,
        MASTER_PORT=str(master_port),
        DISTNN_TIMEOUT=f"{cfg.timeout:g}",
        DISTNN_RESTART_COUNT=str(restart_count),
        DISTNN_RUN_ID=run_id,
        DISTNN_MAX_RESTARTS=str(cfg.max_restarts),
        DISTNN_ERROR_FILE=error_file,
        DISTNN_LAUNCH_ID=launch_id,
        DISTNN_LAUNCHER_PID=str(launcher_pid),
        DISTNN_RUNTIME_DIR=runtime_dir,  # private to the job (0700), removed with it: ipc sockets go there
    )
    env[TOKEN_VAR] = token
    threads = str(threads_per_worker(cfg.workers))
    for var in THREAD_VARS:
        env.setdefault(var, threads)
    env.setdefault(*BLAS_SPIN)  # in case the program loads numpy before distnn
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


class PortReservation:
    """A free TCP port held for rank 0 until the attempt ends.

    The socket is bound with SO_REUSEADDR but never listens: ZeroMQ (which also
    sets SO_REUSEADDR) can still bind and listen on the port, while the kernel
    will not hand it to anyone asking for a free port meanwhile, so two
    launchers started at once never pick the same one.
    """

    def __init__(self, port=None, master_addr="127.0.0.1"):
        family = socket.AF_INET6 if ":" in master_addr else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._socket.bind(("", port or 0))
        except OSError:
            self._socket.close()
            raise
        self.port = self._socket.getsockname()[1]

    def release(self):
        self._socket.close()

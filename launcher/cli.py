"""The command line of ``python -m launcher``: torchrun-like options, checked up
front so every bad value gets a one-line error naming the expected and the
actual value, and a ``LaunchConfig`` the rest of the launcher reads.
"""

import argparse
import os
import re
from dataclasses import dataclass

DESCRIPTION = """\
distnn worker launcher: starts N worker processes of a script on this node
(and, with --nnodes, meets the launchers of the other nodes), gives each one
its rank, prefixes every line it prints with [rank N], and supervises them:
the first worker to fail stops the others, and the launcher exits non-zero
with a summary naming that rank, its exit code or signal and the end of its
traceback."""

EPILOG = """\
environment of every worker:
  RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE  rank = node_rank * workers + local_rank
  GROUP_RANK, GROUP_WORLD_SIZE                    this node's rank, the number of nodes
  MASTER_ADDR, MASTER_PORT                        where rank 0 serves the rendezvous store
                                                  (multi-node: MASTER_PORT = --master-port + 1)
  DISTNN_JOB_TOKEN        per-job secret (64 hex digits; never printed); export it on
                          every node to fix it, otherwise a new one is made per attempt
  DISTNN_TIMEOUT          --timeout, in seconds, for the workers' own rendezvous
  DISTNN_RESTART_COUNT, DISTNN_MAX_RESTARTS      this attempt's number, --max-restarts
  DISTNN_RUN_ID           one id per launch, the same in every attempt and on every node
                          (examples/mnist.py resumes only checkpoints of its own run)
  DISTNN_RUNTIME_DIR      a private (0700) folder for the job's sockets, removed on every exit
  OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, MKL_NUM_THREADS
                          max(1, cores // workers) unless already set
  PYTHONUNBUFFERED=1      unless already set, so output arrives line by line

examples:
  python -m launcher --workers 4 examples/mnist.py --epochs 1
  python -m launcher --workers 2 -m mypkg.train --lr 0.1
  # two hosts, 4 workers each: on 10.0.0.1 (node 0) and, with --node-rank 1, on the other
  python -m launcher --nnodes 2 --node-rank 0 --workers 4 \\
      --master-addr 10.0.0.1 --master-port 29500 train.py

exit status: 0 when every worker succeeded; 1 when a worker failed (after the
last restart) or the nodes could not meet; 2 for a bad command line; 128+N
when stopped by signal N (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP)."""

_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass
class LaunchConfig:
    workers: int
    nnodes: int
    node_rank: int
    master_addr: str
    master_port: int | None  # None: pick a free one per attempt (single node only)
    max_restarts: int
    log_dir: str | None
    echo: bool  # worker output to the console
    timeout: float
    monitor_interval: float
    grace_period: float
    module: bool  # run ``target`` with -m
    target: str
    args: list

    @property
    def world_size(self):
        return self.nnodes * self.workers

    @property
    def multi_node(self):
        return self.nnodes > 1

    @property
    def workers_port(self):
        """The workers' MASTER_PORT (None: a free one per attempt): --master-port on one node;
        with several, --master-port + 1 (the launchers meet on --master-port), so a firewall
        between nodes needs exactly those two open on node 0, plus the data ports."""
        if self.master_port is None:
            return None
        return self.master_port + 1 if self.multi_node else self.master_port


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m launcher", description=DESCRIPTION, epilog=EPILOG, allow_abbrev=False,
        usage="%(prog)s [options] script.py [script args]\n       %(prog)s [options] -m module [module args]",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    workers = parser.add_argument_group("workers and nodes")
    workers.add_argument("--workers", "--nproc-per-node", "--nproc_per_node", dest="workers", type=int,
                         default=1, metavar="N", help="worker processes on this node (default: 1)")
    workers.add_argument("--nnodes", type=int, default=1, metavar="M",
                         help="number of nodes, one launcher on each (default: 1)")
    workers.add_argument("--node-rank", "--node_rank", dest="node_rank", type=int, default=0, metavar="R",
                         help="this node's rank, 0 <= R < M (default: 0)")
    rdzv = parser.add_argument_group("rendezvous")
    rdzv.add_argument("--master-addr", "--master_addr", dest="master_addr", default="127.0.0.1", metavar="A",
                      help="address of node 0, where rank 0 serves the store (default: 127.0.0.1)")
    rdzv.add_argument("--master-port", "--master_port", dest="master_port", type=int, default=None,
                      metavar="P", help="single node: the workers' MASTER_PORT (default: a free port, a new "
                      "one per attempt); multi-node (required): the port on node 0 where the launchers meet; "
                      "the workers' MASTER_PORT is then P + 1")
    rdzv.add_argument("--timeout", type=float, default=300.0, metavar="S",
                      help="seconds the nodes, and then the workers (as DISTNN_TIMEOUT), wait for each "
                      "other to show up (default: 300)")
    supervision = parser.add_argument_group("supervision")
    supervision.add_argument("--max-restarts", "--max_restarts", dest="max_restarts", type=int, default=0,
                             metavar="K", help="restart the whole group up to K times after a failure "
                             "(default: 0)")
    supervision.add_argument("--monitor-interval", "--monitor_interval", dest="monitor_interval", type=float,
                             default=0.1, metavar="S", help="seconds between checks of the workers "
                             "(default: 0.1)")
    supervision.add_argument("--grace-period", dest="grace_period", type=float, default=5.0, metavar="S",
                             help="seconds a stopped worker gets between SIGTERM and SIGKILL (default: 5)")
    output = parser.add_argument_group("output")
    output.add_argument("--log-dir", "--log_dir", dest="log_dir", default=None, metavar="D",
                        help="write each rank's stdout and stderr to "
                        "D/attempt_<n>/rank_<r>/{stdout,stderr}.log (console echo then needs --tee)")
    echo = output.add_mutually_exclusive_group()
    echo.add_argument("--tee", action="store_true", help="with --log-dir, also print worker output")
    echo.add_argument("--quiet", action="store_true", help="do not print worker output (the failure "
                      "summary is still printed)")
    parser.add_argument("-m", "--module", action="store_true",
                        help="run the target as a module, like `python -m module`")
    parser.add_argument("target", nargs="?", metavar="script.py | module",
                        help="the training script (or module, with -m), followed by its own arguments")
    parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def _check(parser, ok, message):
    if not ok:
        parser.error(message)


def parse_args(argv=None):
    """The LaunchConfig for ``argv``; exits with status 2 and a one-line error for any bad value."""
    parser = build_parser()
    ns = parser.parse_args(argv)
    _check(parser, ns.workers >= 1, f"Expect: --workers >= 1, Actual: {ns.workers}")
    _check(parser, ns.nnodes >= 1, f"Expect: --nnodes >= 1, Actual: {ns.nnodes}")
    _check(parser, 0 <= ns.node_rank < ns.nnodes,
           f"Expect: 0 <= --node-rank < --nnodes, Actual: --node-rank {ns.node_rank} with --nnodes {ns.nnodes}")
    _check(parser, ns.master_port is None or 1 <= ns.master_port <= 65535,
           f"Expect: 1 <= --master-port <= 65535, Actual: {ns.master_port}")
    _check(parser, ns.nnodes == 1 or ns.master_port is not None,
           f"--master-port is required with --nnodes {ns.nnodes}: every node's launcher must be given the "
           "same port on node 0")
    _check(parser, ns.nnodes == 1 or ns.master_port is None or ns.master_port < 65535,
           f"Expect: --master-port <= 65534 with --nnodes {ns.nnodes} (the workers' rendezvous takes "
           f"--master-port + 1), Actual: {ns.master_port}")
    _check(parser, ns.max_restarts >= 0, f"Expect: --max-restarts >= 0, Actual: {ns.max_restarts}")
    _check(parser, ns.timeout > 0, f"Expect: --timeout > 0 seconds, Actual: {ns.timeout:g}")
    _check(parser, ns.monitor_interval > 0,
           f"Expect: --monitor-interval > 0 seconds, Actual: {ns.monitor_interval:g}")
    _check(parser, ns.grace_period >= 0, f"Expect: --grace-period >= 0 seconds, Actual: {ns.grace_period:g}")
    _check(parser, bool(ns.master_addr.strip()), "Expect: a host name or address for --master-addr, Actual: ''")
    _check(parser, ns.target is not None,
           "Expect: a script to run (or -m module), Actual: none" if not ns.module
           else "Expect: a module name after -m, Actual: none")
    if ns.module:
        _check(parser, bool(_MODULE_NAME.match(ns.target)),
               f"Expect: a dotted module name after -m, Actual: {ns.target!r}")
    else:
        _check(parser, os.path.exists(ns.target), f"script {ns.target!r} does not exist")
        _check(parser, os.path.isfile(ns.target), f"script {ns.target!r} is not a file")
        try:
            with open(ns.target, "rb") as f:
                f.read(1)
        except OSError as e:
            parser.error(f"script {ns.target!r} is not readable: {e.strerror}")
    if ns.log_dir is not None:
        _check(parser, not os.path.exists(ns.log_dir) or os.path.isdir(ns.log_dir),
               f"--log-dir {ns.log_dir!r} exists and is not a directory")
    _check(parser, not ns.tee or ns.log_dir is not None, "--tee only makes sense with --log-dir")
    echo = not ns.quiet and (ns.tee or ns.log_dir is None)
    return LaunchConfig(workers=ns.workers, nnodes=ns.nnodes, node_rank=ns.node_rank,
                        master_addr=ns.master_addr.strip(), master_port=ns.master_port,
                        max_restarts=ns.max_restarts, log_dir=ns.log_dir, echo=echo, timeout=ns.timeout,
                        monitor_interval=ns.monitor_interval, grace_period=ns.grace_period,
                        module=ns.module, target=ns.target, args=list(ns.args))

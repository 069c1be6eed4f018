"""Runs the job on this node and turns its outcome into an exit status.

Node 0 (or the only node) drives: for each attempt it picks the workers'
port and token, tells the other nodes to start, watches its own workers and
the other launchers, stops everything on the first failure, and restarts or
gives up with the summary. The other nodes follow node 0's messages:

    node 0 -> others: start {restart_count, master_port, token, run_id}, alive (every few seconds while
                      it watches), stop, finish {rc, summary}, abort {reason}
    others -> node 0: done, failed {rank}, stopped {failures, stopped}, interrupted {signal}
"""

import os
import signal
import time

from . import process_tree, rendezvous
from .output import OutputPump, log, print_block
from .rendezvous import ChannelClosed, NodeRendezvousError
from .summary import AttemptRecord, format_summary, root_cause_first
from .worker_env import TOKEN_VAR, PortReservation, new_token
from .workers import WorkerFailure, WorkerGroup

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Signals:
    """The first of SIGINT/SIGTERM/SIGHUP is forwarded to the workers; a second
    one means kill now. ``front_died`` (the front process is gone, so nobody
    waits for us) means kill everything now."""

    def __init__(self, front_died):
        self.signum = None
        self.count = 0
        self.front_died = front_died
        for signum in (*FORWARDED_SIGNALS, front_died):
            signal.signal(signum, self._handle)

    def _handle(self, signum, frame):
        if signum == self.front_died:
            self.front_gone()
            return
        self.count += 1
        if self.signum is None:
            self.signum = signum

    def front_gone(self):
        self.signum, self.count = signal.SIGKILL, 2

    def interrupted(self):
        return self.signum is not None

    def hurry(self):
        return self.count > 1

    @property
    def name(self):
        if self.signum == signal.SIGKILL:
            return "SIGKILL (of the launcher's front process)"
        return signal.Signals(self.signum).name


class Node:
    """This node's launcher: the safety nets, the output pump and the run directory."""

    def __init__(self, cfg, launch_id, front_pid, front_died, workspace):
        self.cfg = cfg
        self.launch_id = launch_id
        process_tree.become_subreaper()
        self.signals = Signals(front_died)  # the handler first, then ask for the signal
        process_tree.set_parent_death_signal(front_died)
        if os.getppid() != front_pid:  # the front died before the line above
            self.signals.front_gone()
        self.pump = OutputPump(cfg.echo)
        self.run_dir = cfg.log_dir or workspace.path  # the front removes the workspace, however we end
        self.runtime_dir = workspace.runtime_dir
        self.fixed_token = os.environ.get(TOKEN_VAR) or None

    def log(self, message):
        log(message, self.cfg.node_rank if self.cfg.multi_node else None)

    def start_group(self, restart_count, master_port, token, run_id):
        group = WorkerGroup(self.cfg, restart_count, master_port, token, launch_id=self.launch_id,
                            pump=self.pump, run_dir=self.run_dir, run_id=run_id, runtime_dir=self.runtime_dir)
        try:
            group.start()
        except OSError:
            group.stop(grace=0)
            raise
        return group

    def stop(self, group):
        """Stop the group: forward a received signal (SIGKILL on a second one), else SIGTERM."""
        signum = self.signals.signum or signal.SIGTERM
        return group.stop(signum, hurry=self.signals.hurry)

    def close(self):
        self.pump.close()

    def interrupted_status(self):
        return 128 + self.signals.signum


def run(cfg, launch_id, front_pid, front_died, workspace):
    """This node's exit status (runs in the supervisor process, see ``launcher.front``)."""
    node = Node(cfg, launch_id, front_pid, front_died, workspace)
    try:
        if cfg.node_rank == 0:
            peers = {}
            if cfg.multi_node:
                peers = rendezvous.serve(cfg, node.fixed_token, node.signals.interrupted)
            return Driver(node, peers).run()
        channel = rendezvous.join(cfg, node.fixed_token, node.signals.interrupted)
        return follow(node, channel)
    except rendezvous.Interrupted:
        node.log(f"interrupted by {node.signals.name} while the nodes were meeting")
        return node.interrupted_status()
    except NodeRendezvousError as e:
        node.log(f"error: {e}")
        return 1
    except OSError as e:  # e.g. --log-dir not writable, no processes left to fork
        node.log(f"error: {e}")
        return 1
    finally:
        node.close()


class Driver:
    """Node 0: runs the attempts, for itself and the other nodes."""

    def __init__(self, node, peers):
        self.node = node
        self.cfg = node.cfg
        self.peers = dict(peers)  # node rank -> Channel, while connected
        self.records = []

    def broadcast(self, message):
        for rank, channel in list(self.peers.items()):
            try:
                channel.send(message)
            except ChannelClosed:
                self.peers.pop(rank).close()

    def run(self):
        for restart_count in range(self.cfg.max_restarts + 1):
            try:
                reservation = PortReservation(self.cfg.workers_port, self.cfg.master_addr)
            except OSError as e:
                what = (f"port {self.cfg.workers_port} (--master-port + 1: the workers' rendezvous)"
                        if self.cfg.multi_node else f"--master-port {self.cfg.master_port}")
                self.node.log(f"error: Expect: {what} free on this host, Actual: {e.strerror}")
                self.broadcast({"type": "finish", "rc": 1, "summary": "node 0 could not reserve a port"})
                return 1
            try:
                outcome = self.attempt(restart_count, reservation.port)
            finally:
                reservation.release()
            if outcome == "success":
                self.broadcast({"type": "finish", "rc": 0, "summary": None})
                return 0
            if self.node.signals.interrupted():
                self.node.log(f"interrupted by {self.node.signals.name}; all workers stopped")
                self.broadcast({"type": "finish", "rc": 1,
                                "summary": f"node 0's launcher was interrupted by {self.node.signals.name}"})
                return self.node.interrupted_status()
            if outcome == "lost" or restart_count == self.cfg.max_restarts:
                break
            self.node.log(f"{self._headline(self.records[-1])}; restarting all workers "
                          f"(restart {restart_count + 1} of {self.cfg.max_restarts})")
        summary = format_summary(self.records, self.cfg.max_restarts, self.cfg.log_dir)
        print_block(summary)
        self.broadcast({"type": "finish", "rc": 1, "summary": summary})
        return 1

    @staticmethod
    def _headline(record):
        if record.failures:
            first = record.failures[0]
            return f"rank {first.rank} failed ({first.exit_description})"
        return record.reason or "the attempt failed"

    def attempt(self, restart_count, master_port):
        """One attempt on every node: "success", "failure" or "lost" (a node is gone: no restart).
        The run id is node 0's launch id: new for each launch, the same for all its attempts."""
        token = self.node.fixed_token or new_token()
        run_id = self.node.launch_id
        self.broadcast({"type": "start", "restart_count": restart_count, "master_port": master_port,
                        "token": None if self.node.fixed_token else token, "run_id": run_id})
        group = self.node.start_group(restart_count, master_port, token, run_id)
        outcome, trigger, reason = self.watch(group)
        if outcome == "success":
            self.node.stop(group)  # leftovers of finished workers
            return outcome
        self.broadcast({"type": "stop"})
        stopped = self.node.stop(group)
        failures = group.failures()
        remote_failures, remote_stopped, lost_reason = self.collect_stopped()
        failures = root_cause_first(failures + remote_failures, trigger)
        frozen = {f.rank for f in failures if f.frozen_state is not None}  # named as failures, not as stopped
        record = AttemptRecord(restart_count, failures, sorted(set(stopped + remote_stopped) - frozen),
                               reason or lost_reason)
        self.records.append(record)
        return "lost" if reason or lost_reason else outcome  # a node is gone: a restart could only hang

    def watch(self, group):
        """Until all nodes are done or something fails: (outcome, (node, rank) that failed first, reason).
        Meanwhile tells every other node ``alive`` every few seconds, so a node whose workers are done
        can tell a node 0 still watching its own from one that went silent (see ``_follow_attempt``)."""
        done = set()
        missing = sorted(set(range(1, self.cfg.nnodes)) - set(self.peers))
        if missing:  # dropped by the broadcast of ``start``: it would never say done
            return "lost", None, f"node {missing[0]}'s launcher is gone (it could not be told to start)"
        next_beat = time.monotonic() + rendezvous.HEARTBEAT
        while True:
            if self.node.signals.interrupted():
                return "interrupted", None, None
            if time.monotonic() >= next_beat:
                next_beat = time.monotonic() + rendezvous.HEARTBEAT
                for channel in list(self.peers.values()):
                    try:
                        channel.send({"type": "alive"})
                    except ChannelClosed as e:
                        self.peers.pop(channel.node_rank, None)
                        channel.close()
                        return "lost", None, f"node {channel.node_rank}'s launcher is gone ({e})"
            newly_failed, all_done = group.poll()
            if newly_failed:
                return "failure", (0, newly_failed[0].rank), None
            if all_done:
                done.add(0)
            wait = min(self.cfg.monitor_interval, max(0.0, next_beat - time.monotonic()))
            for channel, message in rendezvous.receive_any(list(self.peers.values()), wait):
                if isinstance(message, ChannelClosed):
                    self.peers.pop(channel.node_rank, None)
                    channel.close()
                    return "lost", None, f"node {channel.node_rank}'s launcher is gone ({message})"
                kind = message["type"]
                if kind == "done":
                    done.add(channel.node_rank)
                elif kind == "failed":
                    return "failure", (channel.node_rank, message.get("rank")), None
                elif kind == "interrupted":
                    return "lost", None, (f"node {channel.node_rank}'s launcher was interrupted by "
                                          f"{message.get('signal')}")
            if len(done) == self.cfg.nnodes:
                return "success", None, None

    def collect_stopped(self):
        """Every other node's report after a stop: (failures, stopped ranks, reason a node was lost)."""
        failures, stopped, reason = [], [], None
        waiting = dict(self.peers)
        deadline = time.monotonic() + self.cfg.grace_period + 15
        while waiting and time.monotonic() < deadline:
            for channel, message in rendezvous.receive_any(list(waiting.values()), 0.2):
                if isinstance(message, ChannelClosed):
                    waiting.pop(channel.node_rank, None)
                    self.peers.pop(channel.node_rank, None)
                    reason = reason or f"node {channel.node_rank}'s launcher is gone ({message})"
                elif message["type"] == "stopped":
                    waiting.pop(channel.node_rank, None)
                    failures += [WorkerFailure.from_json(f) for f in message.get("failures", [])]
                    stopped += message.get("stopped", [])
        for rank in waiting:
            reason = reason or f"node {rank}'s launcher did not report back after the stop"
        return failures, stopped, reason


def follow(node, channel):
    """Nodes 1..M-1: run the attempts node 0 starts; its exit status."""
    cfg = node.cfg
    wait_for_start = cfg.timeout + 30  # node 0 gives up (and says so) after cfg.timeout
    while True:
        message = _next_message(node, channel, wait_for_start)
        if message is None:
            return node.interrupted_status() if node.signals.interrupted() else 1
        wait_for_start = cfg.grace_period + 60
        kind = message["type"]
        if kind == "abort":
            raise NodeRendezvousError(message.get("reason"))
        if kind == "finish":
            if message.get("summary"):
                print_block(message["summary"])
            return message.get("rc", 1)
        if kind == "start":
            token = node.fixed_token or message["token"]
            group = node.start_group(message["restart_count"], message["master_port"], token, message.get("run_id"))
            status = _follow_attempt(node, channel, group)
            if status is not None:
                return status


def _next_message(node, channel, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if node.signals.interrupted():
            node.log(f"interrupted by {node.signals.name}")
            return None
        try:
            message = channel.receive(timeout=0.2)
        except ChannelClosed as e:
            node.log(f"error: lost node 0's launcher: {e}")
            return None
        if message is not None:
            return message
    node.log(f"error: node 0's launcher sent nothing for {timeout:g}s")
    return None


def _follow_attempt(node, channel, group):
    """Watch this node's workers until node 0 says stop or finish; None to wait for the next start.

    Once this node has reported (failed or done), node 0 must answer within the grace period and
    a few seconds: ``stop`` after a failure; ``alive``, ``stop`` or ``finish`` after done (node 0
    sends ``alive`` while its own workers run). A silent node 0 is given up on, because behind a
    partition TCP retransmits for ~15 minutes before the socket reports anything."""
    cfg = node.cfg
    told_failed = told_done = False
    answer_within = cfg.grace_period + rendezvous.ANSWER_SLACK
    answer_by = None  # when node 0 counts as lost, once this node has reported
    try:
        while True:
            if node.signals.interrupted():
                node.stop(group)
                node.log(f"interrupted by {node.signals.name}; this node's workers stopped")
                channel.send({"type": "interrupted", "signal": node.signals.name})
                return node.interrupted_status()
            newly_failed, all_done = group.poll()
            if newly_failed and not told_failed:
                channel.send({"type": "failed", "rank": newly_failed[0].rank})
                told_failed = True
                answer_by = time.monotonic() + answer_within
                reported = f"rank {newly_failed[0].rank} failed"
            if all_done and not told_done:
                channel.send({"type": "done"})
                told_done = True
                answer_by = time.monotonic() + answer_within
                reported = "its workers finished"
            if answer_by is not None and time.monotonic() > answer_by:
                node.stop(group)
                node.log(f"error: lost node 0's launcher ({cfg.master_addr}:{cfg.master_port}): no answer within "
                         f"{answer_within:g}s after this node reported {reported}; this node's workers stopped")
                return 1
            message = channel.receive(timeout=cfg.monitor_interval)
            if message is None:
                continue
            if told_done and not told_failed:  # node 0 is alive; after a failure only its stop counts
                answer_by = time.monotonic() + answer_within
            if message["type"] == "stop":
                stopped = node.stop(group)
                channel.send({"type": "stopped", "failures": [f.to_json() for f in group.failures()],
                              "stopped": stopped})
                return None
            if message["type"] == "finish":
                node.stop(group)
                if message.get("summary"):
                    print_block(message["summary"])
                return message.get("rc", 1)
    except ChannelClosed as e:
        node.stop(group)
        node.log(f"error: lost node 0's launcher ({e}); this node's workers stopped")
        return 1

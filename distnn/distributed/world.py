"""``World``: this process's membership in a job. The rendezvous through the store
that learns every peer's endpoint, the data sockets, the communication thread,
and the first failure, which every peer hears of."""

import hashlib
import os

import zmq

from . import hierarchical, locality, network, shm_regions
from .comm_thread import LINGER_MS, CommThread
from .errors import DistributedError, DistributedTimeoutError
from .store import StoreClient, StoreServer
from .transport import Transport

ABORT_LINGER_MS = 1000  # closing a failed world waits this long for its abort notices to leave
LEAVE_WAIT_S = 0.5  # closing waits at most this long for peers closing too (see Transport.leave)


class World:
    """This process's membership in a job: sockets, store, communication thread."""

    generation = 0
    _spare_sockets = {}  # (job, rank, world size) -> (context, transport) of a failed rendezvous

    def __init__(self, rank, world_size, local_rank, local_world_size, master, token, timeout):
        self.rank, self.size = rank, world_size
        self.local_rank, self.local_size = local_rank, local_world_size
        self.timeout = timeout
        self.broken = None
        self.shared_memory = []  # SharedMemoryGroup of every group that staged data, closed with us
        host, port = master.host, master.port
        # The key under which a rank whose rendezvous timed out keeps its data sockets for the
        # retry: peers may already have been told these endpoints, and must still reach it there.
        claim = (hashlib.sha256(token + f"{host}:{port}".encode()).digest(), rank, world_size)
        spare = World._spare_sockets.pop(claim, None)
        if spare is not None:
            self.context, self.transport = spare
        else:
            bind_host, note = network.data_host(master, spans_hosts=local_world_size < world_size)
            if note and local_rank == 0:
                network.note(note)
            self.context = zmq.Context()
            self.context.setsockopt(zmq.IPV6, 1)  # sockets made from it reach IPv6 masters (and IPv4 too)
            try:
                self.transport = Transport(self.context, rank, world_size, bind_host, local_rank=local_rank)
            except BaseException:
                self.context.term()
                raise
        self._server = None
        self.store = None
        try:
            if rank == 0:
                # A name that is loopback only here (Debian's "127.0.1.1 <hostname>") is how the
                # other hosts reach this one by another address: serve the store on every interface.
                store_host = "*" if network.names_loopback_by_accident(master) and world_size > 1 else host
                self._server = StoreServer(self.context, store_host, port, token, world_size)
            self.store = StoreClient(self.context, f"tcp://{network.bracket(host)}:{port}", token, timeout)
            self._rendezvous(host, port)
        except BaseException:
            if self.store is not None:
                self.store.close()
            if self._server is not None:
                self._server.close()
            World._spare_sockets[claim] = (self.context, self.transport)
            raise
        self.comm = CommThread(self)
        self._group_ids = 0

    def _rendezvous(self, host, port):
        info = dict(self.transport.endpoint_info(), world=self.size, rank=self.rank, shm=shm_regions.available(),
                    shm_signals=shm_regions.signals_available(), hierarchical=hierarchical.enabled())
        # Keys name the generation (this process's count of worlds joined so far), so a rank
        # that re-initialises fast never meets the previous generation's members in a store
        # that has not shut down yet, while a retried join keeps its generation.
        generation = World.generation + 1
        keys = [f"gen{generation}/member/{r}" for r in range(self.size)]
        try:
            members = self.store.join(keys[self.rank], info, keys, what=f"ranks to join (world_size={self.size})")
        except DistributedTimeoutError as exc:
            raise DistributedTimeoutError(str(exc).replace(f"gen{generation}/member/", "rank ")) from None
        for r, m in enumerate(members):
            if m["world"] != self.size:
                raise DistributedError(f"rank {self.rank}: world_size mismatch: this rank has {self.size}, "
                                       f"rank {r} has {m['world']}")
        if members[self.rank]["pid"] != os.getpid() or members[self.rank]["host"] != info["host"]:
            raise DistributedError(f"rank {self.rank} was claimed by two processes (pid {os.getpid()} and "
                                   f"pid {members[self.rank]['pid']}): check RANK of every worker")
        # The job id names the job in every header and shared-memory file; it derives from the
        # secret (the token, or the one the store handed out), so it is not guessable.
        self.job = hashlib.sha256(self.store.secret + f"{host}:{port}".encode()).digest()[:8]
        self.transport.authenticate(self.job, self.store.secret)
        self.transport.connect(members)
        self.members = members
        self.generation = World.generation = generation

    def shares_memory_with(self, ranks):
        """Whether every rank in ``ranks`` can map this rank's shared memory and it theirs
        (the same host and /dev/shm, checked by ``locality``; every member agrees)."""
        keys = {locality.memory_key(self.members[r]) for r in ranks}
        return len(keys) == 1 and None not in keys

    def signals_with(self, ranks):
        """Whether every rank in ``ranks`` can order shared-memory steps by signals."""
        return all(self.members[r].get("shm_signals") is True for r in ranks)

    def next_group_id(self):
        self._group_ids += 1
        return self._group_ids

    def fail(self, exc):
        """Record the first failure and tell every peer (unless a peer told us)."""
        if self.broken is None:
            self.broken = str(exc)
            self.transport.broadcast_abort(str(exc))
            for regions in self.shared_memory:
                regions.unlink()

    def close(self, flush=True):
        # A failed job has nothing worth waiting to deliver but its abort notices: without a
        # moment's linger, a rank that exits at once would drop them, and its peers would
        # learn only that it exited, not why.
        linger = ABORT_LINGER_MS if self.broken is not None else LINGER_MS if flush else 0
        if getattr(self, "comm", None) is not None:
            self.comm.stop()
            self.comm = None
        gone = self.transport.leave(LEAVE_WAIT_S if flush else 0) if self.broken is None else ()
        for regions in self.shared_memory:
            regions.close()
        self.transport.close(linger=linger, gone=gone)
        for closable in (self.store, self._server):
            if closable is not None:
                closable.close()
        if self.context is not None:  # None in an in-process world
            self.context.term()



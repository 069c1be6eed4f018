"""What this rank shares with a peer, checked rather than assumed from a hostname.

Each rank publishes facts about itself at the rendezvous: its host (hostname and
kernel boot id), the identity (device, inode) of its ipc socket file and of
/dev/shm, its pid namespace, and whether it refuses everything but TCP
(``DISTNN_FORCE_TCP``). Two containers (or hosts) with one hostname, or one
kernel, but private /tmp and /dev/shm are then told apart: a peer's ipc socket is
used only if the very file it bound is visible here, shared memory only where both
see the same /dev/shm, and a pid only inside the same pid namespace of one kernel.
Every decision that all members of a group must share (shared memory) is a
function of the published facts alone, so every rank makes the same one.
"""

import os
import socket

SHM_DIR = "/dev/shm"


def host_identity():
    """Hostname plus boot id: equal for processes on one running kernel."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
    except OSError:
        boot = ""
    return f"{socket.gethostname()}/{boot}"


def file_id(path):
    """``[device, inode]`` of ``path`` as this process sees it, or None."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return [info.st_dev, info.st_ino]


def facts(ipc_path, tcp_only):
    """This rank's published facts (merged into its rendezvous entry)."""
    return {"host": host_identity(), "ipc_id": file_id(ipc_path), "shm_dir": file_id(SHM_DIR),
            "pid_ns": file_id("/proc/self/ns/pid"), "tcp_only": bool(tcp_only)}


def same_kernel_pids(mine, theirs):
    """Whether ``theirs["pid"]`` names the peer's process here (to watch it by pid)."""
    return mine["host"] == theirs["host"] and mine.get("pid_ns") == theirs.get("pid_ns") is not None


def ipc_reachable(mine, theirs, ipc_path):
    """Whether the peer's ipc socket (at ``ipc_path``, from its endpoint) is the file it
    bound, seen from here; never when either side forces TCP."""
    if mine.get("tcp_only") or theirs.get("tcp_only") or mine["host"] != theirs["host"]:
        return False
    return theirs.get("ipc_id") is not None and file_id(ipc_path) == theirs["ipc_id"]


def memory_key(member):
    """What a rank must have in common with every other member of a group for the group
    to stage data in shared memory (host, /dev/shm, pid namespace), or None when it
    cannot take part (shared memory off, TCP forced). Computed from published facts
    only, so every member of a group reaches the same verdict."""
    if member.get("tcp_only") or member.get("shm") is not True:
        return None
    if member.get("shm_dir") is None or member.get("pid_ns") is None:
        return None
    return (member["host"], tuple(member["shm_dir"]), tuple(member["pid_ns"]))

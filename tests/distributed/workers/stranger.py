"""An attacker with the standard library only (run as another user by
tests/distributed/test_intrusion.py): speaks ZeroMQ's wire protocol (ZMTP 3.0)
by hand to push a forged abort notice and a forged data segment into a rank's
data port, first without authentication, then with guessed PLAIN passwords,
and tries the rank's ipc socket. Prints one JSON object: what each try got.

    python stranger.py TCP_ENDPOINT IPC_ENDPOINT JOB_HEX WORLD_SIZE
"""

import json
import os
import socket
import struct
import sys


def greeting(mechanism):
    return b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + mechanism.ljust(20, b"\x00") + b"\x00" + b"\x00" * 31


def frame(body, more=False, command=False):
    flags = (1 if more else 0) | (4 if command else 0)
    if len(body) > 255:
        return bytes([flags | 2]) + struct.pack(">Q", len(body)) + body
    return bytes([flags, len(body)]) + body


def command(name, body):
    return frame(bytes([len(name)]) + name + body, command=True)


def ready():
    return command(b"READY", bytes([11]) + b"Socket-Type" + struct.pack(">I", 4) + b"PUSH")


def msgpack_map(fields):
    """The tiny subset of msgpack a distnn header needs (str keys; bytes, str, int, list values)."""
    def pack(value):
        if isinstance(value, bytes):
            return b"\xc4" + bytes([len(value)]) + value
        if isinstance(value, str):
            data = value.encode()
            return b"\xd9" + bytes([len(data)]) + data
        if isinstance(value, int):
            return b"\xd3" + struct.pack(">q", value)
        if isinstance(value, list):
            return bytes([0x90 | len(value)]) + b"".join(pack(v) for v in value)
        raise TypeError(type(value))
    return bytes([0x80 | len(fields)]) + b"".join(pack(k) + pack(v) for k, v in fields.items())


def forged_messages(job, world_size):
    abort = msgpack_map({"job": job, "grp": -1, "op": "abort", "seq": -1, "src": world_size - 1,
                         "dtype": "forged abort from a stranger", "shape": [], "seg": 0, "nbytes": 0})
    data = msgpack_map({"job": job, "grp": 0, "op": "all_reduce.sum", "seq": 0, "src": world_size - 1,
                        "dtype": "float32", "shape": [7], "seg": 0, "nbytes": 28})
    return frame(data, more=True) + frame(b"\x00\x00\x80\x7f" * 7) + frame(abort, more=True) + frame(b"")


def attempt(host, port, mechanism, handshake, payload, wait=True):
    """Connect, handshake, push ``payload``; what the server sent back and whether it hung up.
    Without ``wait`` (a flood: bench/under_attack.py) everything is sent at once and the
    connection dropped."""
    received = b""
    try:
        with socket.create_connection((host, port), timeout=3) as s:
            if not wait:
                s.sendall(greeting(mechanism) + handshake + payload)
                return {"closed": None}
            s.sendall(greeting(mechanism))
            s.settimeout(1.0)
            try:
                received += s.recv(64)
                s.sendall(handshake + payload)
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        return {"closed": True, "server": received[:200].hex()}
                    received += chunk
            except socket.timeout:
                return {"closed": False, "server": received[:200].hex()}
    except OSError as exc:
        return {"closed": True, "error": type(exc).__name__, "server": received[:200].hex()}


def hello(username, password):
    return command(b"HELLO", bytes([len(username)]) + username + bytes([len(password)]) + password)


def main():
    tcp, ipc, job_hex, world_size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    host, port = tcp[len("tcp://"):].rsplit(":", 1)
    job = bytes.fromhex(job_hex)
    payload = forged_messages(job, world_size)
    report = {"uid": os.getuid(), "null": attempt(host, int(port), b"NULL", ready(), payload)}
    for name, password in (("plain_job_id", job_hex.encode()), ("plain_empty", b"")):
        report[name] = attempt(host, int(port), b"PLAIN", hello(b"distnn", password), payload)
    path = ipc[len("ipc://"):]
    try:
        os.listdir(os.path.dirname(path))
        report["ipc_folder"] = "listed"
    except OSError as exc:
        report["ipc_folder"] = type(exc).__name__
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(path)
            report["ipc_connect"] = "connected"
    except OSError as exc:
        report["ipc_connect"] = type(exc).__name__
    print(json.dumps(report))


if __name__ == "__main__":
    main()

"""Worker output: one thread reads every worker pipe (selectors), prefixes each
whole line with ``[rank N]`` on the console (stdout to stdout, stderr to
stderr), copies raw bytes to per-rank log files, and keeps the last lines of
each stream for the failure summary. Also the launcher's own console messages,
written under the same lock so no line is ever split by another.
"""

import collections
import os
import selectors
import sys
import threading

_CHUNK = 65536
_MAX_LINE = 65536  # a longer line without a newline is emitted in pieces
TAIL_LINES = 40

_console_lock = threading.Lock()


def _write(stream, data):
    """Whole lines to a console stream; a closed console (EPIPE, EIO) is not an error."""
    with _console_lock:
        try:
            stream.buffer.write(data)
            stream.buffer.flush()
        except (OSError, ValueError):
            pass


def log(message, node_rank=None):
    """A launcher message on stderr: ``[launcher] ...`` (``[launcher node 1]`` on multi-node runs)."""
    tag = "[launcher]" if node_rank is None else f"[launcher node {node_rank}]"
    text = "".join(f"{tag} {line}\n" for line in str(message).splitlines() or [""])
    _write(sys.stderr, text.encode(errors="replace"))


def print_block(text):
    """Several lines on stderr in one piece (the failure summary)."""
    _write(sys.stderr, (text.rstrip("\n") + "\n").encode(errors="replace"))


class _Stream:
    def __init__(self, pipe, rank, name, console, log_file):
        self.pipe = pipe
        self.rank = rank
        self.name = name
        self.prefix = f"[rank {rank}] ".encode()
        self.console = console
        self.log_file = log_file
        self.partial = b""
        self.tail = collections.deque(maxlen=TAIL_LINES)
        self.closed = threading.Event()

    def feed(self, data):
        if self.log_file is not None:
            self.log_file.write(data)
            self.log_file.flush()
        data = self.partial + data
        lines = data.split(b"\n")
        self.partial = lines.pop()
        while len(self.partial) >= _MAX_LINE:
            lines.append(self.partial[:_MAX_LINE])
            self.partial = self.partial[_MAX_LINE:]
        self._emit(lines)

    def finish(self):
        if self.partial:
            self._emit([self.partial])
            self.partial = b""
        if self.log_file is not None:
            self.log_file.close()
        self.closed.set()

    def _emit(self, lines):
        if not lines:
            return
        self.tail.extend(line.decode(errors="replace").rstrip("\r") for line in lines)
        if self.console is not None:
            _write(self.console, b"".join(self.prefix + line + b"\n" for line in lines))


class OutputPump:
    """Reads worker pipes on one background thread until each reaches end of file."""

    def __init__(self, echo):
        self.echo = echo
        self._selector = selectors.DefaultSelector()
        self._streams = {}  # (rank, "stdout" | "stderr") -> _Stream
        self._lock = threading.Lock()
        self._wake_read, self._wake_write = os.pipe()
        self._selector.register(self._wake_read, selectors.EVENT_READ, None)
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="launcher-output", daemon=True)
        self._thread.start()

    def add(self, rank, pipe, name, log_path=None):
        """Take over a worker pipe (``name`` is "stdout" or "stderr")."""
        console = (sys.stdout if name == "stdout" else sys.stderr) if self.echo else None
        log_file = open(log_path, "wb") if log_path is not None else None
        stream = _Stream(pipe, rank, name, console, log_file)
        os.set_blocking(pipe.fileno(), False)
        with self._lock:
            self._streams[(rank, name)] = stream
            self._selector.register(pipe, selectors.EVENT_READ, stream)
        os.write(self._wake_write, b"x")

    def tail(self, rank, name="stderr"):
        """The last lines of the latest stream of that rank."""
        with self._lock:
            stream = self._streams.get((rank, name))
            return list(stream.tail) if stream is not None else []

    def wait_closed(self, ranks, timeout):
        """Wait (bounded) until the given ranks' pipes reached end of file, so their tails are complete."""
        with self._lock:
            streams = [s for key, s in self._streams.items() if key[0] in ranks]
        for stream in streams:
            stream.closed.wait(timeout)

    def close(self):
        self._stopping = True
        os.write(self._wake_write, b"x")
        self._thread.join(timeout=5)
        for selector_key in list(self._selector.get_map().values()):
            if selector_key.data is not None:
                self._drop(selector_key.data)
        self._selector.close()
        os.close(self._wake_read)
        os.close(self._wake_write)

    def _drop(self, stream):
        self._selector.unregister(stream.pipe)
        stream.pipe.close()
        stream.finish()

    def _run(self):
        while not self._stopping:
            for key, _ in self._selector.select():
                if key.data is None:
                    os.read(self._wake_read, 4096)
                    continue
                stream = key.data
                try:
                    data = os.read(key.fd, _CHUNK)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                with self._lock:
                    if data:
                        stream.feed(data)
                    else:
                        self._drop(stream)

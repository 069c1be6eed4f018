"""Exceptions of the distributed layer; every message names the ranks involved."""


class DistributedError(RuntimeError):
    """A collective failed: ranks disagree, a peer vanished or sent garbage."""


class DistributedTimeoutError(DistributedError, TimeoutError):
    """A blocking wait exceeded the group timeout; names the ranks waited for."""

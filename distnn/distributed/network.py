"""Where a rank's sockets sit on the network, read from the environment once: the
address its data port binds and advertises (``DISTNN_SOCKET_IFNAME``, else the
interface that routes to MASTER_ADDR), the ports it may take (``DISTNN_PORT_RANGE``),
whether ranks on one host may use ipc sockets and shared memory
(``DISTNN_FORCE_TCP``), how long a peer on another host may stay silent
(``DISTNN_HEARTBEAT_TIMEOUT``), and what a failed bind means."""

import errno
import ipaddress
import os
import socket
import sys

import zmq

from . import interfaces
from .errors import DistributedError

IFNAME_VAR = "DISTNN_SOCKET_IFNAME"
PORT_RANGE_VAR = "DISTNN_PORT_RANGE"
FORCE_TCP_VAR = "DISTNN_FORCE_TCP"
HEARTBEAT_VAR = "DISTNN_HEARTBEAT_TIMEOUT"
DEFAULT_HEARTBEAT_TIMEOUT = 10.0
# Documentation ranges (RFC 5737, RFC 3849): never an address of any host, so a route
# lookup for them answers "the default route" (a UDP connect sends nothing).
_BEYOND = {socket.AF_INET: ("203.0.113.1", 9), socket.AF_INET6: ("2001:db8::1", 9, 0, 0)}


def _flag(name, environ):
    value = environ.get(name, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ValueError(f"Expect: {name} one of 1/true/yes/on or 0/false/no/off, Actual: {environ[name]!r}")


def force_tcp(environ=None):
    """``DISTNN_FORCE_TCP=1``: this rank talks to every peer over TCP, never ipc sockets
    or shared memory, even to peers that look like they share its host."""
    return _flag(FORCE_TCP_VAR, os.environ if environ is None else environ)


def heartbeat_timeout(environ=None):
    """Seconds a peer on another host may leave a heartbeat unanswered before it counts as
    dead or unreachable: ``DISTNN_HEARTBEAT_TIMEOUT``, default 10."""
    environ = os.environ if environ is None else environ
    raw = environ.get(HEARTBEAT_VAR)
    if raw is None:
        return DEFAULT_HEARTBEAT_TIMEOUT
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0.1 <= seconds <= 3600:
        raise ValueError(f"Expect: {HEARTBEAT_VAR} a number of seconds in 0.1..3600, Actual: {raw!r}")
    return seconds


def port_range(environ=None):
    """``(first, last)`` from ``DISTNN_PORT_RANGE=first-last`` (inclusive), or None."""
    environ = os.environ if environ is None else environ
    raw = environ.get(PORT_RANGE_VAR, "").strip()
    if not raw:
        return None
    first, sep, last = raw.partition("-")
    try:
        first, last = int(first), int(last) if sep else int(first)
    except ValueError:
        first = last = -1
    if not 1 <= first <= last <= 65535:
        raise ValueError(f"Expect: {PORT_RANGE_VAR} 'first-last' with 1 <= first <= last <= 65535, "
                         f"Actual: {raw!r}")
    return first, last


def ifnames(environ=None):
    """``(variable, names)``: the interface names (or name prefixes) of ``DISTNN_SOCKET_IFNAME``
    in order, else of ``GLOO_SOCKET_IFNAME`` (what a PyTorch cluster script already
    exports), else ``(None, None)``."""
    environ = os.environ if environ is None else environ
    for var in (IFNAME_VAR, "GLOO_SOCKET_IFNAME"):
        names = [n.strip() for n in environ.get(var, "").split(",") if n.strip()]
        if names:
            return var, names
    return None, None


def bracket(host):
    """``host`` as a tcp:// endpoint spells it (an IPv6 address in brackets)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def is_loopback(master):
    """Whether every address ``master`` (an ``env.Master``) resolved to is loopback."""
    if master.host == "localhost":
        return True
    return all(ipaddress.ip_address(sockaddr[0].split("%")[0]).is_loopback for _, sockaddr in master.addresses)


def names_loopback_by_accident(master):
    """A host *name* (not "localhost", not an address) that resolves only to loopback here:
    Debian's "127.0.1.1 <hostname>" line. The other hosts know the name by another address,
    so nothing meant for them may bind loopback."""
    if master.host == "localhost" or _is_address(master.host):
        return False
    return is_loopback(master)


def _is_address(text):
    try:
        ipaddress.ip_address(text.split("%")[0])
        return True
    except ValueError:
        return False


def data_host(master, spans_hosts, environ=None):
    """``(host, note)``: the address this rank's data port binds and advertises, as a tcp://
    endpoint spells it, and a line worth printing once (or None).

    ``DISTNN_SOCKET_IFNAME`` (or ``GLOO_SOCKET_IFNAME``) wins; else loopback for a loopback master; else the address
    of the interface that routes to the master. A master name that resolves to loopback
    here only by accident (see ``names_loopback_by_accident``) gets this host's address on
    its default route (or its only address), as the other hosts cannot reach loopback."""
    environ = os.environ if environ is None else environ
    family = master.addresses[0][0]
    var, wanted = ifnames(environ)
    if wanted:
        name, address = interfaces.choose(wanted, family, var)
        return bracket(address), None
    if names_loopback_by_accident(master):
        found = _outward_address(family)
        shown = ", ".join(sockaddr[0] for _, sockaddr in master.addresses)
        if found is not None:
            note = (f"MASTER_ADDR={master.host} resolves to {shown}, a loopback address, on this host; its "
                    f"data port binds {found[1]} ({found[0]}) instead, which other hosts can reach "
                    f"(set {IFNAME_VAR} to choose another interface)") if spans_hosts else None
            return bracket(found[1]), note
        if spans_hosts:
            return "127.0.0.1", (
                f"MASTER_ADDR={master.host} resolves to {shown}, a loopback address, on this host, and no "
                f"single other address was found ({interfaces.describe()}): ranks on other hosts cannot "
                f"reach this one; set {IFNAME_VAR} to the interface they reach, or MASTER_ADDR to this "
                "host's address")
    if is_loopback(master):
        return "127.0.0.1", None
    family, sockaddr = master.addresses[0]
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(sockaddr)  # UDP: picks the route and source address, sends nothing
        except OSError as exc:
            raise DistributedError(f"the master address {master.host!r} is not reachable from this host "
                                   f"({exc}): check MASTER_ADDR (or init_method's host)") from None
        return bracket(probe.getsockname()[0]), None


def _outward_address(family):
    """``(interface, address)`` this host uses towards the rest of the network: the source
    of its default route, else its only non-loopback address of ``family``; None when
    there is neither (or several and no default route)."""
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(_BEYOND[family])
            address = probe.getsockname()[0]
        except OSError:
            address = None
    known = interfaces.addresses(family)
    if address is not None:
        return next(((name, a) for name, a in known if a == address), ("default route", address))
    return known[0] if len(known) == 1 else None


def bind_data_port(sock, host, local_rank, environ=None):
    """Bind ``sock`` on ``host`` to a port of ``DISTNN_PORT_RANGE`` (tried from
    first + local_rank, so ranks of one host rarely collide), else to one the kernel
    picks; returns the endpoint."""
    environ = os.environ if environ is None else environ
    span = port_range(environ)
    if span is None:
        endpoint = f"tcp://{host}:0"
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as exc:
            raise DistributedError(explain_bind_error(exc, endpoint, "this rank's data port")) from None
        port = sock.getsockopt_string(zmq.LAST_ENDPOINT).rpartition(":")[2]
        return f"tcp://{host}:{port}"  # as bound: the kernel's spelling may be IPv4-mapped IPv6
    first, last = span
    count = last - first + 1
    for i in range(count):
        port = first + (local_rank + i) % count
        endpoint = f"tcp://{host}:{port}"
        try:
            sock.bind(endpoint)
            return endpoint
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EADDRINUSE:
                raise DistributedError(explain_bind_error(exc, endpoint, "this rank's data port")) from None
    raise DistributedError(f"this rank's data port: no free port in {PORT_RANGE_VAR}={first}-{last} on "
                           f"{host}: all {count} are in use (each rank on a host needs its own; widen the range)")


def explain_bind_error(exc, endpoint, what, port_var=None, addr_var=None):
    """The message for a failed bind of ``endpoint``: what went wrong, and the setting to
    fix, only when it is the cause (a guess at the port misleads when the address is wrong)."""
    host, _, port = endpoint[len("tcp://"):].rpartition(":")
    bare = host.strip("[]")
    code = exc.errno
    if not bare:
        why = "the address is empty"
    elif code == zmq.EADDRINUSE:
        why = f"port {port} is already in use on this host"
        if port_var:
            why += f" (is another job using {port_var} {port}?)"
    elif code in (zmq.EADDRNOTAVAIL, errno.EADDRNOTAVAIL):
        why = f"{bare} is not an address of this host"
        if addr_var:
            why = f"{addr_var}={bare} is not an address of this host (rank 0 serves the store there; set " \
                  f"{addr_var} to this host's address)"
        if ":" in bare and not any(fam == socket.AF_INET6 for _, fam, _ in interfaces.all_addresses()):
            why += "; this host has no IPv6 address at all"
    elif code in (errno.EAFNOSUPPORT, errno.ENODEV) and ":" in bare:
        why = f"this host cannot bind the IPv6 address {bare} (no IPv6 here, or ZeroMQ's IPv6 option is off)"
    else:
        why = str(exc)
    return f"{what} could not bind {endpoint}: {why}"


def note(text):
    """Print a one-line note about this rank's network set-up to stderr."""
    print(f"distnn: {text}", file=sys.stderr, flush=True)

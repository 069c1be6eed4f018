"""This host's network interfaces and their addresses (libc's getifaddrs), and the
choice of one by name for ``DISTNN_SOCKET_IFNAME``-style settings."""

import ctypes
import ctypes.util
import ipaddress
import socket
import sys

from .errors import DistributedError


class _SockAddr(ctypes.Structure):
    _fields_ = [("family", ctypes.c_ushort), ("data", ctypes.c_ubyte * 14)]


class _SockAddrIn(ctypes.Structure):
    _fields_ = [("family", ctypes.c_ushort), ("port", ctypes.c_ushort), ("addr", ctypes.c_ubyte * 4)]


class _SockAddrIn6(ctypes.Structure):
    _fields_ = [("family", ctypes.c_ushort), ("port", ctypes.c_ushort), ("flowinfo", ctypes.c_uint32),
                ("addr", ctypes.c_ubyte * 16), ("scope_id", ctypes.c_uint32)]


class _IfAddrs(ctypes.Structure):
    pass


_IfAddrs._fields_ = [("next", ctypes.POINTER(_IfAddrs)), ("name", ctypes.c_char_p), ("flags", ctypes.c_uint),
                     ("addr", ctypes.POINTER(_SockAddr)), ("netmask", ctypes.POINTER(_SockAddr)),
                     ("ifu", ctypes.POINTER(_SockAddr)), ("data", ctypes.c_void_p)]


def all_addresses():
    """``[(interface, family, address)]`` of every IPv4 and IPv6 address of this host, in the
    kernel's order (Linux; elsewhere an empty list). IPv6 link-local addresses are left
    out: they cannot be reached without naming an interface on the other side."""
    if not sys.platform.startswith("linux"):
        return []
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    head = ctypes.POINTER(_IfAddrs)()
    if libc.getifaddrs(ctypes.byref(head)) != 0:
        return []
    found = []
    try:
        node = head
        while node:
            entry = node.contents
            if entry.addr:
                family = entry.addr.contents.family
                if family == socket.AF_INET:
                    raw = ctypes.cast(entry.addr, ctypes.POINTER(_SockAddrIn)).contents.addr
                    address = ipaddress.IPv4Address(bytes(raw))
                elif family == socket.AF_INET6:
                    raw = ctypes.cast(entry.addr, ctypes.POINTER(_SockAddrIn6)).contents.addr
                    address = ipaddress.IPv6Address(bytes(raw))
                else:
                    address = None
                if address is not None and not address.is_link_local:
                    found.append((entry.name.decode(errors="replace"), family, str(address)))
            node = entry.next
    finally:
        libc.freeifaddrs(head)
    return found


def addresses(family):
    """``[(interface, address)]`` of ``family`` that are not loopback."""
    return [(name, address) for name, fam, address in all_addresses()
            if fam == family and not ipaddress.ip_address(address).is_loopback]


def describe():
    """This host's interfaces and addresses, for an error message."""
    listed = {}
    for name, _, address in all_addresses():
        listed.setdefault(name, []).append(address)
    return "this host has " + ("; ".join(f"{n}: {', '.join(a)}" for n, a in listed.items()) or "no addresses")


def choose(wanted, family, setting):
    """``(interface, address)`` of the first name in ``wanted`` that this host has (an exact
    name, else a prefix: "eth" matches eth0), with an address of ``family`` if it has
    one, else of the other family. Raises naming ``setting`` when none has an address."""
    known = all_addresses()
    for pattern in wanted:
        names = [n for n, _, _ in known if n == pattern] or [n for n, _, _ in known if n.startswith(pattern)]
        for name in dict.fromkeys(names):
            mine = [(fam, a) for n, fam, a in known if n == name]
            for fam, address in sorted(mine, key=lambda m: m[0] != family):
                return name, address
    raise DistributedError(f"Expect: {setting} to name an interface of this host with an IPv4 or IPv6 "
                           f"address, Actual: {setting}={','.join(wanted)}; {describe()}")

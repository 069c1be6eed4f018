"""Hosts for multi-host tests, made of Linux network namespaces (needs root and
iproute2; a test that cannot make them is skipped, never failed):

    with two_hosts() as hosts:             # or the ``two_hosts`` fixture in a conftest
        proc = start([*hosts.prefix(0), sys.executable, "worker.py"], env)
        hosts.address(0), hosts.address(0, ipv6=True)   # host 0 on the link between them

Each host is a namespace with loopback up and one end of a veth pair (10.213.x.1
and .2/24, fd00:213:x::1 and ::2/64). Options make hosts look more like separate
machines: ``links=2`` adds a second veth pair (a second network), ``hosts_files``
gives a host its own /etc/hosts (``ip netns exec`` mounts /etc/netns/NAME/hosts),
``prefix(host, private=True)`` runs a command with its own empty /tmp and
/dev/shm, as in a container with the same hostname, and ``hostname=`` gives it
its own hostname too (then it is another host to distnn in every way but the
kernel).
Everything made is deleted on exit: namespaces (and so their links) and
/etc/netns folders. ``partition()`` drops every packet between the hosts.
"""

import contextlib
import os
import shutil
import subprocess
import uuid

# Run inside a host by ``prefix(private=True)``: fresh /tmp and /dev/shm, then the command.
_PRIVATE = 'mount -t tmpfs tmpfs /tmp && mount -t tmpfs tmpfs /dev/shm'
_subnets = iter(range(10, 250))


def _ip(*args):
    subprocess.run(["ip", *map(str, args)], check=True, capture_output=True, text=True, timeout=10)


class Hosts:
    def __init__(self, spaces, links, subnets):
        self.spaces, self.links, self.subnets = spaces, links, subnets

    def address(self, host, link=0, ipv6=False):
        subnet = self.subnets[link]
        return f"fd00:213:{subnet}::{host + 1}" if ipv6 else f"10.213.{subnet}.{host + 1}"

    def interface(self, host, link=0):
        return self.links[link][host]

    def prefix(self, host, private=False, hostname=None):
        """The command prefix that runs a program on ``host`` (see the module's docstring)."""
        base = ["ip", "netns", "exec", self.spaces[host]]
        steps = ([_PRIVATE] if private else []) + ([f"hostname {hostname}"] if hostname else [])
        if steps:
            flags = ["--mount"] * private + ["--uts"] * bool(hostname)
            base += ["unshare", *flags, "sh", "-c", " && ".join(steps) + ' && exec "$@"', "sh"]
        return base

    def hosts_file(self, host, text):
        """``text`` becomes /etc/hosts for what runs on ``host`` from now on."""
        os.makedirs(f"/etc/netns/{self.spaces[host]}", exist_ok=True)
        with open(f"/etc/netns/{self.spaces[host]}/hosts", "w") as f:
            f.write(text)

    def partition(self):
        """Drop every packet between the hosts, both ways, as a dead switch would."""
        for space, links in zip(self.spaces, zip(*self.links)):
            for link in links:
                _ip("netns", "exec", space, "tc", "qdisc", "add", "dev", link, "root", "pfifo", "limit", 0)


class Unavailable(Exception):
    """Network namespaces cannot be made here (the message says why)."""


@contextlib.contextmanager
def two_hosts(links=1):
    """Two network namespaces joined by ``links`` veth pairs. Skips the test where
    namespaces cannot be made."""
    import pytest
    try:
        with made_hosts(links) as hosts:
            yield hosts
    except Unavailable as exc:
        pytest.skip(str(exc))


@contextlib.contextmanager
def made_hosts(links=1):
    """``two_hosts`` for a program rather than a test: raises ``Unavailable`` where
    namespaces cannot be made."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        raise Unavailable("network namespaces need root and iproute2")
    tag = uuid.uuid4().hex[:6]
    spaces = [f"distnn-{tag}-{side}" for side in "ab"]
    pairs = [[f"dnn{tag}{link}{side}" for side in "ab"] for link in range(links)]
    subnets = [next(_subnets) for _ in range(links)]
    made = []
    try:
        for space in spaces:
            try:
                _ip("netns", "add", space)
            except (OSError, subprocess.SubprocessError) as e:
                raise Unavailable(f"`ip netns add` is not permitted here: {getattr(e, 'stderr', e)}") from None
            made.append(space)
        try:
            for pair, subnet in zip(pairs, subnets):
                _ip("link", "add", pair[0], "netns", spaces[0], "type", "veth", "peer", "name", pair[1],
                    "netns", spaces[1])
                for host, (space, link) in enumerate(zip(spaces, pair)):
                    _ip("-n", space, "addr", "add", f"10.213.{subnet}.{host + 1}/24", "dev", link)
                    _ip("-n", space, "addr", "add", f"fd00:213:{subnet}::{host + 1}/64", "dev", link, "nodad")
                    _ip("-n", space, "link", "set", link, "up")
            for space in spaces:
                _ip("-n", space, "link", "set", "lo", "up")
        except (OSError, subprocess.SubprocessError) as e:
            raise Unavailable(f"cannot join two network namespaces here: {getattr(e, 'stderr', e)}") from None
        yield Hosts(spaces, [pair for pair in pairs], subnets)
    finally:
        for space in made:
            subprocess.run(["ip", "netns", "del", space], capture_output=True, timeout=10)
            shutil.rmtree(f"/etc/netns/{space}", ignore_errors=True)

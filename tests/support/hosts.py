"""Hosts for tests: each "host" is a Linux network namespace with one address on a bridge.

    root namespace ── bridge sb<pid> 10.<a>.<b>.1/24 (the test process, Redis relay, root-side services)
                        ├── veth ── netns sh<pid>-<name> 10.<a>.<b>.2  (eth0)
                        ├── veth ── netns sh<pid>-<name> 10.<a>.<b>.3
                        └── ...

A :class:`Network` makes the bridge and its hosts and removes them on :meth:`Network.close`, also
those a crashed earlier run left behind (:func:`remove_stale`: their names carry the pid of the
test process that made them). A :class:`Host` runs processes inside its namespace
(``ip netns exec``), and can be cut off (its link down: packets vanish, no reset is sent, as when a
cable is pulled), healed, and killed (every process in the namespace SIGKILLed).

Only addresses on this bridge and loopback are used. Needs root (CI runs as root) and iproute2.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

NETNS_DIR = Path("/run/netns")
NAME = re.compile(r"^sh(\d+)-")
BRIDGE = re.compile(r"^sb(\d+)$")


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``ip ARGS`` (iproute2).

    Raises:
        subprocess.CalledProcessError: with ``check``, ``ip`` failed.
    """
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def netns_pids(netns: str) -> list[int]:
    """The pids of every process in namespace ``netns`` (``ip netns pids``), empty if it is gone."""
    result = ip("netns", "pids", netns, check=False)
    return [int(pid) for pid in result.stdout.split()] if result.returncode == 0 else []


def kill_netns_processes(netns: str, timeout: float = 10) -> None:
    """SIGKILL every process in ``netns`` and wait up to ``timeout`` seconds for them to go."""
    deadline = time.monotonic() + timeout
    while (pids := netns_pids(netns)) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


def remove_stale() -> list[str]:
    """Remove the namespaces and bridges an earlier test process left behind (its pid is dead),
    with every process still inside them; return their names."""
    removed = []
    names = [line.split()[0] for line in ip("netns", "list").stdout.splitlines() if line.strip()]
    for name in names:
        if (m := NAME.match(name)) and not _alive(int(m.group(1))):
            kill_netns_processes(name)
            ip("netns", "del", name, check=False)
            removed.append(name)
    for line in ip("-br", "link", "show", "type", "bridge").stdout.splitlines():
        name = line.split()[0]
        if (m := BRIDGE.match(name)) and not _alive(int(m.group(1))):
            ip("link", "del", name, check=False)
            removed.append(name)
    return removed


def _free_subnet() -> str:
    """A /24 in 10.200.0.0/13 that no interface of the root namespace uses, as ``10.a.b``."""
    used = ip("-4", "-o", "addr").stdout
    pid = os.getpid()
    for i in range(2048):
        n = (pid + i) % 2048
        prefix = f"10.{200 + n // 256}.{n % 256}"
        if f" {prefix}." not in used:
            return prefix
    raise RuntimeError("no free 10.200.0.0/13 subnet for a test bridge")


@dataclass
class Host:
    """One host: namespace ``netns`` with ``address`` on the bridge (its root-side veth ``link``)."""

    name: str
    netns: str
    address: str
    link: str
    cut_at: float | None = None

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.netns, *argv]

    def run(self, argv: list[str], **popen) -> subprocess.Popen:
        """Start ``argv`` inside this host (``subprocess.Popen`` keyword arguments pass through)."""
        return subprocess.Popen(self.command(argv), **popen)

    def cut(self) -> None:
        """Take the host off the network: its link goes down, and packets to and from it are
        dropped without a reset (connections hang until a timeout or heartbeat notices)."""
        ip("link", "set", self.link, "down")
        self.cut_at = time.monotonic()

    def heal(self) -> None:
        """Put the host back on the network; returns once the link is up."""
        ip("link", "set", self.link, "up")
        self.cut_at = None

    def kill(self) -> None:
        """SIGKILL every process on the host (its namespace and address stay)."""
        kill_netns_processes(self.netns)

    @property
    def pids(self) -> list[int]:
        return netns_pids(self.netns)


@dataclass
class Network:
    """A bridge in the root namespace (address ``gateway``) and the hosts on it."""

    prefix: str = field(default_factory=_free_subnet)
    hosts: dict[str, Host] = field(default_factory=dict)

    def __post_init__(self):
        self.tag = str(os.getpid())
        self.bridge = f"sb{self.tag}"
        self.gateway = f"{self.prefix}.1"
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")

    def add_host(self, name: str) -> Host:
        """Make host ``name``: a namespace, a veth pair to the bridge, the next free address.

        Raises:
            subprocess.CalledProcessError: ``ip`` refused (not root, or a name in use).
        """
        index = len(self.hosts) + 2
        netns = f"sh{self.tag}-{name}"
        link, peer = f"sv{self.tag}h{index}", f"sp{self.tag}h{index}"
        address = f"{self.prefix}.{index}"
        ip("netns", "add", netns)
        ip("link", "add", link, "type", "veth", "peer", "name", peer)
        ip("link", "set", peer, "netns", netns)
        ip("link", "set", link, "master", self.bridge)
        ip("link", "set", link, "up")
        inside = ["ip", "netns", "exec", netns, "ip"]
        subprocess.run([*inside, "link", "set", "lo", "up"], check=True)
        subprocess.run([*inside, "link", "set", peer, "name", "eth0"], check=True)
        subprocess.run([*inside, "addr", "add", f"{address}/24", "dev", "eth0"], check=True)
        subprocess.run([*inside, "link", "set", "eth0", "up"], check=True)
        subprocess.run([*inside, "route", "add", "default", "via", self.gateway], check=True)
        host = self.hosts[name] = Host(name, netns, address, link)
        return host

    def close(self) -> None:
        """Kill every process on every host, then remove the namespaces, links and the bridge."""
        for host in self.hosts.values():
            host.kill()
            ip("netns", "del", host.netns, check=False)
            ip("link", "del", host.link, check=False)
        ip("link", "del", self.bridge, check=False)
        self.hosts.clear()


class Relay:
    """A TCP relay (socat) in the root namespace from ``listen`` (the bridge's address) to
    ``target`` on loopback: how processes on hosts reach a service that listens on 127.0.0.1 only."""

    def __init__(self, listen_host: str, listen_port: int, target: str, log: Path):
        self.address = f"{listen_host}:{listen_port}"
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                ["socat", f"TCP-LISTEN:{listen_port},bind={listen_host},reuseaddr,fork", f"TCP:{target}"],
                stdout=out,
                stderr=out,
                start_new_session=True,
            )

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(10)

"""Small waiting and port helpers for tests that run real processes on loopback."""

from __future__ import annotations

import functools
import random
import socket
import time
from collections.abc import Callable
from pathlib import Path

PORT_FLOOR = 10_000
"""Lowest port :func:`free_port` hands out (below it lie the well-known and many registered ports)."""
_handed_out: set[int] = set()


@functools.cache
def ephemeral_port_range() -> tuple[int, int]:
    """The ports the kernel gives outgoing connections (``net.ipv4.ip_local_port_range``), inclusive;
    read once per run."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, for a process about to bind it.

    Picked below the kernel's ephemeral range: a port the kernel picks (binding port 0) is one it
    may also give any outgoing connection in the moment before the service binds it, which made a
    conversion worker's metrics port "already in use" once. Never the same port twice in one test
    run, so two services started one after the other cannot be handed the same one.
    """
    low, _ = ephemeral_port_range()
    for _ in range(200 if low - PORT_FLOOR >= 1000 else 0):
        port = random.randrange(PORT_FLOOR, low)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket() as sock:  # no room below the ephemeral range: the kernel's choice
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.05, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; return that value.

    Raises:
        TimeoutError: ``timeout`` seconds passed first.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)

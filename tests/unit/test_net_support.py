"""The test harness's port picker (``tests/support/net.py``): ports outside the kernel's ephemeral
range, never handed out twice, free to bind."""

from __future__ import annotations

import socket

from tests.support.net import PORT_FLOOR, ephemeral_port_range, free_port


def test_free_ports_lie_below_the_ephemeral_range_are_distinct_and_bindable():
    low, _ = ephemeral_port_range()
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports), "a port was handed out twice"
    assert all(PORT_FLOOR <= port < low for port in ports), "outgoing connections may take such a port"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[-1]))


def test_a_listening_port_is_never_handed_out(monkeypatch):
    taken, spare = free_port(), free_port()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", taken))
        listener.listen()
        picks = iter([taken, spare])
        monkeypatch.setattr("tests.support.net._handed_out", set())
        monkeypatch.setattr("tests.support.net.random.randrange", lambda start, stop: next(picks))
        assert free_port() == spare

"""Unit tests run on fakes only: no siphon environment variables, no network."""

from __future__ import annotations

import socket

import pytest

from shared.config import env_var_names


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """Settings come from defaults and explicit overrides, never from the developer's shell."""
    for name in env_var_names():
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """A unit test that opens a TCP connection is an integration test in disguise."""

    def refuse(self, address):
        raise AssertionError(f"unit tests must not connect anywhere (tried {address!r})")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)

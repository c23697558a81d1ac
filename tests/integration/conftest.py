"""Integration fixtures: real Redis, RabbitMQ, the moto S3 server and ffmpeg on loopback.

Redis and RabbitMQ are shared with other people's runs, so every test works under its own
prefix and deletes what it made; nothing is ever flushed.
"""

from __future__ import annotations

import uuid

import pytest

from shared.config import env_var_names


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """Settings come from defaults and explicit overrides, never from the developer's shell."""
    for name in env_var_names():
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def run_id() -> str:
    """A short id unique to this test, for prefixes and bucket names."""
    return uuid.uuid4().hex[:12]

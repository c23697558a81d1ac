"""Integration fixtures: real Redis, RabbitMQ, the moto S3 server and ffmpeg on loopback.

Redis and RabbitMQ are shared with other people's runs, so every test works under its own
prefix and deletes what it made; nothing is ever flushed.
"""

from __future__ import annotations

import uuid

import pytest
import redis

from services.metadata.rqueues import rq_slug
from shared.config import env_var_names
from tests.support.stack import REDIS_URL


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """Settings come from defaults and explicit overrides, never from the developer's shell."""
    for name in env_var_names():
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def run_id() -> str:
    """A short id unique to this test, for prefixes and bucket names."""
    return uuid.uuid4().hex[:12]


@pytest.fixture
def prefix(run_id) -> str:
    """This test's Redis key prefix (``REDIS_PREFIX``)."""
    return f"it-{run_id}:"


@pytest.fixture
def redis_client(prefix):
    """A client of the machine's Redis; the keys under ``prefix`` and the rq keys named after it
    (the follow-ups' queues and jobs) are deleted afterwards."""
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5, socket_connect_timeout=5)
    yield client
    slug = rq_slug(prefix)
    keys = list(client.scan_iter(f"{prefix}*")) + list(client.scan_iter(f"rq:*{slug}*"))
    if keys:
        client.delete(*keys)
    queues = [name for name in client.smembers("rq:queues") if slug.encode() in name]
    if queues:
        client.srem("rq:queues", *queues)
    client.close()

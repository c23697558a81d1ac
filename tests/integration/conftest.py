"""Integration fixtures: real Redis, RabbitMQ, the moto S3 server and ffmpeg on loopback.

Redis and RabbitMQ are shared with other people's runs, so every test works under its own
prefix and deletes what it made; nothing is ever flushed.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
import redis
from werkzeug.serving import make_server

from services.metadata.app import create_app as create_metadata
from services.metadata.rqueues import rq_slug
from services.metadata.store import JobStore
from shared.config import env_var_names, load_settings
from shared.storage import LocalStorage
from tests.support.net import free_port
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


@pytest.fixture
def store(redis_client, prefix, tmp_path) -> JobStore:
    """The metadata service's job store on the real Redis under this run's prefix, manifests in ``tmp_path``."""
    return JobStore(redis_client, prefix, LocalStorage(tmp_path / "storage"))


@pytest.fixture
def metadata_url(store, prefix) -> Iterator[str]:
    """The metadata service's real app on ``store``, served on loopback."""
    app = create_metadata(load_settings(redis_prefix=prefix), store=store, control=object())
    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)

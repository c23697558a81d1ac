"""The metadata service's unit fixtures: a JobStore on fakeredis and a local storage directory."""

from __future__ import annotations

import fakeredis
import pytest

from services.metadata.store import JobStore
from shared.storage import LocalStorage

PREFIX = "unit:"
"""The Redis key prefix of every store here (the tests' own ``PREFIX`` constants repeat it)."""


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
def redis_client(server) -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(server=server)


@pytest.fixture
def storage(tmp_path) -> LocalStorage:
    return LocalStorage(tmp_path / "storage")


@pytest.fixture
def store(redis_client, storage) -> JobStore:
    return JobStore(redis_client, PREFIX, storage)

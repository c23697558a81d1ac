"""Applying job events from the queue: ack, drop, or raise ``Unavailable`` for the consumer to
retry (``services.metadata.consumer.handle_event``)."""

from __future__ import annotations

import fakeredis
import pytest

from services.metadata.consumer import handle_event
from services.metadata.records import JobRecord
from services.metadata.store import JobStore
from shared.broker import ACK, Delivery
from shared.errors import JobStoreUnavailable, StorageUnavailable
from shared.jobs import JobStatus
from shared.messages import JobEvent
from shared.storage import LocalStorage

JOB_ID = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def store(server, tmp_path) -> JobStore:
    store = JobStore(fakeredis.FakeRedis(server=server), "unit:", LocalStorage(tmp_path))
    store.create(JobRecord.new(JOB_ID, "clip.mp4", 10))
    return store


def body(status: JobStatus = JobStatus.PROCESSING, job_id: str = JOB_ID, attempt: int = 1) -> Delivery:
    return delivered(JobEvent(job_id=job_id, status=status, attempt=attempt).encode())


def delivered(raw: bytes) -> Delivery:
    return Delivery("unit.metadata.events", raw)


def test_an_event_is_applied_and_acked(store):
    assert handle_event(store, body()) is ACK
    assert store.get(JOB_ID).status is JobStatus.PROCESSING


def test_a_repeated_event_is_acked_without_change(store):
    handle_event(store, body(JobStatus.COMPLETED))
    before = store.get(JOB_ID)
    assert handle_event(store, body(JobStatus.COMPLETED)) is ACK
    assert store.get(JOB_ID) == before


@pytest.mark.parametrize("raw", [b"not json", b"{}", b'{"job_id": "x", "status": "completed"}', b"[]"])
def test_a_malformed_event_is_dropped(store, raw):
    assert handle_event(store, delivered(raw)) is ACK
    assert store.get(JOB_ID).status is JobStatus.QUEUED


def test_an_event_for_an_unknown_job_is_dropped(store):
    assert handle_event(store, body(job_id="f" * 32)) is ACK


def test_redis_down_is_raised_for_a_retry(store, server):
    server.connected = False
    with pytest.raises(JobStoreUnavailable):
        handle_event(store, body())


def test_storage_down_is_raised_for_a_retry_and_changes_nothing(store, monkeypatch):
    def down(key: str, data: bytes) -> None:
        raise StorageUnavailable("disk gone")

    monkeypatch.setattr(store.storage, "put_bytes", down)
    with pytest.raises(StorageUnavailable):
        handle_event(store, body())
    assert store.get(JOB_ID).status is JobStatus.QUEUED

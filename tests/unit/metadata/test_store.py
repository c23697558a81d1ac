"""The job store on fakeredis and a LocalStorage in tmp_path (``services.metadata.store.JobStore``)."""

from __future__ import annotations

import fakeredis
import pytest

from services.metadata.records import JobRecord
from services.metadata.store import JobStore
from shared.errors import JobNotFound, JobStoreUnavailable
from shared.jobs import JobErrorInfo, JobStatus, manifest_key
from shared.messages import JobEvent
from shared.storage import LocalStorage

JOB_ID = "0123456789abcdef0123456789abcdef"
PREFIX = "unit:"


@pytest.fixture
def job(store) -> JobRecord:
    created = JobRecord.new(JOB_ID, "clip.mp4", 10)
    store.create(created)
    return created


def event(status: JobStatus, attempt: int = 1, **fields) -> JobEvent:
    return JobEvent(job_id=JOB_ID, status=status, attempt=attempt, at=100.0 + attempt, **fields)


def manifest(storage: LocalStorage) -> JobRecord:
    return JobRecord.model_validate_json(storage.get_bytes(manifest_key(JOB_ID)))


def cached(redis_client) -> JobRecord | None:
    raw = redis_client.get(f"{PREFIX}job:{JOB_ID}")
    return None if raw is None else JobRecord.model_validate_json(raw)


def test_create_writes_redis_and_the_manifest(store, job, storage, redis_client):
    assert store.get(JOB_ID) == job
    assert cached(redis_client) == job and manifest(storage) == job
    assert redis_client.keys("*") == [f"{PREFIX}job:{JOB_ID}".encode()], "every key carries the prefix"


def test_get_of_an_unknown_job_raises_job_not_found(store):
    with pytest.raises(JobNotFound):
        store.get("f" * 32)


def test_apply_stores_the_transition_in_both_places(store, job, storage, redis_client):
    updated = store.apply(event(JobStatus.PROCESSING))
    assert updated.status is JobStatus.PROCESSING and updated.attempts == 1
    assert store.get(JOB_ID) == updated == cached(redis_client) == manifest(storage)


def test_apply_of_a_stale_event_writes_nothing(store, job, storage, monkeypatch):
    store.apply(event(JobStatus.PROCESSING, attempt=2))
    writes: list[str] = []
    monkeypatch.setattr(storage, "put_bytes", lambda key, data: writes.append(key))
    assert store.apply(event(JobStatus.PROCESSING, attempt=1)) is None
    assert store.apply(event(JobStatus.PROCESSING, attempt=2)) is None
    assert writes == []
    assert store.get(JOB_ID).attempts == 2


def test_a_terminal_job_stays_terminal(store, job):
    error = JobErrorInfo(code="not_media", message="no")
    store.apply(event(JobStatus.FAILED, error=error))
    assert store.apply(event(JobStatus.COMPLETED, attempt=2, output_size=3)) is None
    assert store.get(JOB_ID).status is JobStatus.FAILED


def test_apply_for_an_unknown_job_raises_job_not_found(store):
    with pytest.raises(JobNotFound):
        store.apply(event(JobStatus.PROCESSING))


def test_get_restores_from_the_manifest_after_the_redis_key_is_lost(store, job, redis_client):
    store.apply(event(JobStatus.PROCESSING))
    redis_client.delete(f"{PREFIX}job:{JOB_ID}")
    restored = store.get(JOB_ID)
    assert restored.status is JobStatus.PROCESSING and restored.attempts == 1
    assert cached(redis_client) == restored, "the cache is refilled"


def test_apply_restores_from_the_manifest_after_the_redis_key_is_lost(store, job, redis_client, storage):
    redis_client.delete(f"{PREFIX}job:{JOB_ID}")
    updated = store.apply(event(JobStatus.COMPLETED, output_size=5))
    assert updated.status is JobStatus.COMPLETED
    assert cached(redis_client) == updated == manifest(storage)


def test_delete_forgets_the_record_but_keeps_media(store, job, storage, redis_client):
    storage.put_bytes(job.input_key, b"video")
    store.delete(JOB_ID)
    assert cached(redis_client) is None
    with pytest.raises(JobNotFound):
        store.get(JOB_ID)
    assert storage.get_bytes(job.input_key) == b"video"
    store.delete(JOB_ID)  # absent: not an error


def test_purge_removes_every_file_of_the_job(store, job, storage):
    storage.put_bytes(job.input_key, b"video")
    store.purge(JOB_ID)
    assert not (storage.root / "jobs" / JOB_ID).exists()


def test_redis_down_is_job_store_unavailable(store, job, server):
    server.connected = False
    for call in (
        lambda: store.get(JOB_ID),
        lambda: store.apply(event(JobStatus.PROCESSING)),
        lambda: store.create(JobRecord.new("e" * 32, "", 1)),
        lambda: store.delete(JOB_ID),
    ):
        with pytest.raises(JobStoreUnavailable):
            call()


class InterleavingStorage(LocalStorage):
    """Runs ``before_next_manifest`` once, just before the next manifest write: a second metadata consumer
    committing its own transition while this one is between reading the job and writing it."""

    before_next_manifest = None

    def put_bytes(self, key: str, data: bytes) -> None:
        hook, self.before_next_manifest = self.before_next_manifest, None
        if hook is not None:
            hook()
        super().put_bytes(key, data)


def test_a_transition_lost_to_a_concurrent_one_leaves_the_manifest_matching_redis(server, redis_client, tmp_path):
    """Consumer A applies a redelivery (processing, attempt 2) while consumer B commits ``completed``.
    A's transaction fails and, retried, A's event changes nothing; the manifest must still be B's."""
    storage = InterleavingStorage(tmp_path / "storage")
    store = JobStore(redis_client, PREFIX, storage)
    store.create(JobRecord.new(JOB_ID, "clip.mp4", 10))
    store.apply(event(JobStatus.PROCESSING, attempt=1))
    other_consumer = JobStore(fakeredis.FakeRedis(server=server), PREFIX, LocalStorage(tmp_path / "storage"))
    storage.before_next_manifest = lambda: other_consumer.apply(event(JobStatus.COMPLETED, attempt=1, output_size=7))

    assert store.apply(event(JobStatus.PROCESSING, attempt=2)) is None
    assert cached(redis_client).status is JobStatus.COMPLETED
    assert manifest(storage) == cached(redis_client), "losing Redis now would resurrect a finished job"

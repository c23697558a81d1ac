"""The job store against the real Redis, under a key prefix unique to each test (deleted after)."""

from __future__ import annotations

import json
import random
import threading

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from services.metadata.records import JobRecord, NotificationRecord
from services.metadata.store import JobStore
from shared.errors import JobNotFound, JobStoreUnavailable
from shared.jobs import JobErrorInfo, JobStatus, manifest_key, new_job_id
from shared.messages import JobEvent
from shared.storage import LocalStorage
from tests.support.net import free_port
from tests.support.old_records import old_record

pytestmark = pytest.mark.integration


@pytest.fixture
def storage(tmp_path) -> LocalStorage:
    return LocalStorage(tmp_path / "storage")


@pytest.fixture
def store(redis_client, storage, run_id) -> JobStore:
    return JobStore(redis_client, f"it-{run_id}:", storage)


def event(job_id: str, status: JobStatus, attempt: int = 1, **fields) -> JobEvent:
    return JobEvent(job_id=job_id, status=status, attempt=attempt, **fields)


def manifest(storage: LocalStorage, job_id: str) -> JobRecord:
    return JobRecord.model_validate_json(storage.get_bytes(manifest_key(job_id)))


def test_create_get_apply_delete(store, storage, redis_client, run_id):
    job = JobRecord.new(new_job_id(), "clip.mp4", 10)
    store.create(job)
    assert store.get(job.job_id) == job
    assert redis_client.exists(f"it-{run_id}:job:{job.job_id}")
    processing = store.apply(event(job.job_id, JobStatus.PROCESSING))
    done = store.apply(event(job.job_id, JobStatus.COMPLETED, output_size=100, output_duration_seconds=1.5))
    assert processing.status is JobStatus.PROCESSING and done.status is JobStatus.COMPLETED
    assert store.get(job.job_id) == done == manifest(storage, job.job_id)
    store.delete(job.job_id)
    with pytest.raises(JobNotFound):
        store.get(job.job_id)
    assert not redis_client.exists(f"it-{run_id}:job:{job.job_id}")


def test_a_job_survives_the_loss_of_its_redis_key(store, redis_client, run_id):
    job = JobRecord.new(new_job_id(), "clip.mp4", 10)
    store.create(job)
    failed = store.apply(event(job.job_id, JobStatus.FAILED, error=JobErrorInfo(code="timeout", message="slow")))
    redis_client.delete(f"it-{run_id}:job:{job.job_id}")
    assert store.get(job.job_id) == failed
    assert redis_client.exists(f"it-{run_id}:job:{job.job_id}"), "the record is back in Redis"


def test_concurrent_events_from_threads_stay_consistent(store, storage):
    """Eight consumers apply 40 redeliveries of one job in random order, then race to finish it while
    a 41st delivery starts."""
    job = JobRecord.new(new_job_id(), "clip.mp4", 10)
    store.create(job)
    attempts = list(range(1, 41))
    random.shuffle(attempts)
    finals = [
        event(job.job_id, JobStatus.COMPLETED, attempt=40, output_size=1),
        event(job.job_id, JobStatus.FAILED, attempt=40, error=JobErrorInfo(code="x", message="y")),
        event(job.job_id, JobStatus.PROCESSING, attempt=41),
    ]
    errors: list[BaseException] = []

    def apply_all(events: list[JobEvent], barrier: threading.Barrier) -> None:
        barrier.wait()
        try:
            for e in events:
                store.apply(e)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    def race(batches: list[list[JobEvent]]) -> None:
        barrier = threading.Barrier(len(batches))
        threads = [threading.Thread(target=apply_all, args=(batch, barrier)) for batch in batches]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not errors, errors

    race([[event(job.job_id, JobStatus.PROCESSING, attempt=a) for a in attempts[i::8]] for i in range(8)])
    running = store.get(job.job_id)
    assert (running.status, running.attempts) == (JobStatus.PROCESSING, 40), "the highest attempt wins"
    assert manifest(storage, job.job_id) == running

    race([[final] for final in finals * 3])
    settled = store.get(job.job_id)
    # Either attempt 40's result came first and ended the job (a terminal job never reopens), or the
    # redelivery (attempt 41) did and fenced that older attempt's late result out.
    assert settled.status.is_terminal or (settled.status, settled.attempts) == (JobStatus.PROCESSING, 41)
    assert manifest(storage, job.job_id) == settled, "the durable copy agrees with Redis"


def test_redis_on_a_closed_port_is_job_store_unavailable(storage):
    client = redis.Redis(
        host="127.0.0.1", port=free_port(), socket_connect_timeout=1, socket_timeout=1, retry=Retry(NoBackoff(), 0)
    )
    store = JobStore(client, "it-closed:", storage)
    with pytest.raises(JobStoreUnavailable):
        store.get(new_job_id())
    with pytest.raises(JobStoreUnavailable):
        store.create(JobRecord.new(new_job_id(), "", 1))


def test_a_record_stored_by_the_previous_version_loads_retries_and_keeps_its_fields(
    store, storage, redis_client, run_id
):
    """A failed record written before metadata's fields left ``shared.jobs.Job`` (raw, in Redis and
    as its manifest) is read, retried and noted like any other, and keeps every field it had."""
    job_id = new_job_id()
    error = {"code": "storage_unavailable", "message": "Object storage is unavailable."}
    raw = old_record(job_id, status="failed", error=error, output_size=None, retries=0)
    redis_client.set(f"it-{run_id}:job:{job_id}", raw)
    storage.put_bytes(manifest_key(job_id), raw.encode())
    stored = store.get(job_id)
    assert (stored.email, stored.quota_subject, len(stored.notifications)) == ("me@example.com", "key:alice", 1)
    queued = store.apply(event(job_id, JobStatus.QUEUED, retry=1))
    assert (queued.status, queued.retries, queued.attempts) == (JobStatus.QUEUED, 1, 0)
    noted = store.record_notification(job_id, NotificationRecord(kind="email", attempt=1, at=2.0, outcome="delivered"))
    assert len(noted.notifications) == 2 and noted.cache_key == stored.cache_key
    rewritten = json.loads(redis_client.get(f"it-{run_id}:job:{job_id}"))
    assert set(rewritten) == set(json.loads(raw)), "written back with the same fields"
    assert manifest(storage, job_id) == noted

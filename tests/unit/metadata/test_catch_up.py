"""``JobStore.catch_up``: a Redis record that lost writes (a failover) is caught up with its manifest."""

from __future__ import annotations

from services.metadata.index import JobIndex
from services.metadata.records import JobRecord
from services.metadata.resync import resync
from services.metadata.store import CatchUp, JobStore
from shared.jobs import JobStatus
from shared.messages import JobEvent

JOB_ID = "0123456789abcdef0123456789abcdef"
PREFIX = "unit:"


def event(status: JobStatus, **fields) -> JobEvent:
    return JobEvent(job_id=JOB_ID, status=status, attempt=1, **fields)


def indexed_store(redis_client, storage) -> tuple[JobStore, JobIndex]:
    index = JobIndex(redis_client, PREFIX)
    return JobStore(redis_client, PREFIX, storage, [index]), index


def test_a_record_behind_its_manifest_moves_on_with_its_index(redis_client, storage):
    store, index = indexed_store(redis_client, storage)
    store.create(JobRecord.new(JOB_ID, "clip.mp4", 10))
    stale = store.apply(event(JobStatus.PROCESSING))
    done = store.apply(event(JobStatus.COMPLETED, output_size=5))
    redis_client.set(f"{PREFIX}job:{JOB_ID}", stale.model_dump_json())  # the new primary's copy
    redis_client.zrem(index.key(JobStatus.COMPLETED), JOB_ID)
    redis_client.zadd(index.key(JobStatus.PROCESSING), {JOB_ID: stale.created_at})
    redis_client.delete(f"{PREFIX}job:{JOB_ID}:done")

    assert store.catch_up(JOB_ID) is CatchUp.ADVANCED
    assert store.get(JOB_ID) == done
    assert index.page(JobStatus.COMPLETED, 10).job_ids == [JOB_ID]
    assert index.page(JobStatus.PROCESSING, 10).job_ids == []
    assert redis_client.llen(f"{PREFIX}job:{JOB_ID}:done") == 1
    assert store.catch_up(JOB_ID) is CatchUp.CURRENT


def test_a_missing_record_comes_back_and_resync_indexes_it(redis_client, storage):
    store, index = indexed_store(redis_client, storage)
    store.create(JobRecord.new(JOB_ID, "clip.mp4", 10))
    redis_client.flushall()

    assert resync(store, index) == {CatchUp.RESTORED: 1}
    assert store.get(JOB_ID).status is JobStatus.QUEUED
    assert index.page(JobStatus.QUEUED, 10).job_ids == [JOB_ID] == index.page(None, 10).job_ids


def test_progress_newer_than_the_manifest_is_kept(store, redis_client):
    store.create(JobRecord.new(JOB_ID, "clip.mp4", 10))
    store.apply(event(JobStatus.PROCESSING))
    reported = store.apply(event(JobStatus.PROCESSING, progress=40))  # Redis only, by design

    assert store.catch_up(JOB_ID) is CatchUp.CURRENT
    assert store.get(JOB_ID) == reported and reported.progress == 40


def test_a_forgotten_job_is_left_alone(store, redis_client):
    assert store.catch_up(JOB_ID) is CatchUp.GONE
    assert redis_client.keys("*") == []

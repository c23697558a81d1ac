"""Each caller's unfinished jobs (services/metadata/unfinished.py) kept by the job store's writes,
against the real Redis (the rollback path runs a Lua script, which fakeredis cannot)."""

from __future__ import annotations

import pytest

from services.metadata.records import JobRecord
from services.metadata.store import JobStore
from services.metadata.unfinished import UnfinishedJobs
from shared.jobs import JobErrorInfo, JobStatus, new_job_id
from shared.messages import JobEvent
from shared.storage import LocalStorage

pytestmark = pytest.mark.integration

ALICE = "key:alice"


@pytest.fixture
def unfinished(redis_client, prefix) -> UnfinishedJobs:
    return UnfinishedJobs(redis_client, prefix)


@pytest.fixture
def store(redis_client, prefix, tmp_path, unfinished) -> JobStore:
    return JobStore(redis_client, prefix, LocalStorage(tmp_path / "storage"), [unfinished])


def create(store: JobStore, subject: str | None = ALICE) -> str:
    job = JobRecord.new(new_job_id(), "a.mp4", 10).model_copy(update={"quota_subject": subject})
    store.create(job)
    return job.job_id


def quota_keys(redis_client, prefix) -> list[bytes]:
    return list(redis_client.scan_iter(f"{prefix}quota:*"))


def test_a_job_counts_while_queued_or_processing_and_stops_when_it_ends(store, unfinished):
    first, second = create(store), create(store)
    create(store, "addr:203.0.113.1")
    assert unfinished.count(ALICE) == 2
    store.apply(JobEvent(job_id=first, status=JobStatus.PROCESSING, attempt=1))
    assert unfinished.count(ALICE) == 2
    store.apply(JobEvent(job_id=first, status=JobStatus.COMPLETED, attempt=1, output_size=1))
    store.cancel(second)
    assert unfinished.count(ALICE) == 0 and unfinished.count("addr:203.0.113.1") == 1


def test_a_retried_job_counts_again(store, unfinished):
    job_id = create(store)
    error = JobErrorInfo(code="storage_unavailable", message="down")
    store.apply(JobEvent(job_id=job_id, status=JobStatus.FAILED, attempt=1, error=error))
    assert unfinished.count(ALICE) == 0
    store.apply(JobEvent(job_id=job_id, status=JobStatus.QUEUED, retry=1))
    assert unfinished.count(ALICE) == 1


def test_a_rolled_back_job_leaves_no_key(store, unfinished, redis_client, prefix):
    job_id = create(store)
    assert quota_keys(redis_client, prefix)
    store.delete(job_id)
    assert quota_keys(redis_client, prefix) == [] and unfinished.count(ALICE) == 0


def test_jobs_without_a_caller_are_not_counted(store, redis_client, prefix):
    create(store, None)
    assert quota_keys(redis_client, prefix) == []


def test_a_member_whose_record_is_gone_is_dropped_when_counted(store, unfinished, redis_client, prefix):
    job_id = create(store)
    redis_client.delete(f"{prefix}job:{job_id}")  # Redis lost it, or a write went around the store
    assert unfinished.count(ALICE) == 0
    assert quota_keys(redis_client, prefix) == []


def test_against_a_limit_members_are_verified_only_once_the_set_reaches_it(store, unfinished, redis_client, prefix):
    live, lost = create(store), create(store)
    redis_client.delete(f"{prefix}job:{lost}")
    assert unfinished.count(ALICE, limit=3) == 2, "under the limit either way: the set's size answers"
    assert redis_client.sismember(unfinished.key(ALICE), lost), "nothing verified, nothing dropped"
    assert unfinished.count(ALICE, limit=2) == 1, "the set reached the limit: the exact count, under it"
    assert redis_client.smembers(unfinished.key(ALICE)) == {live.encode()}

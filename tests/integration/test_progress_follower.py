"""The change feed's writer and its progress follower against the real Redis: the metadata store's
transitions (``services/metadata/feed.py``'s Lua script) come out of the queue intake's follower
(``services/upload/progress.py``) as the public progress messages, each once. Each test works under
its own prefix and deletes its keys afterwards."""

from __future__ import annotations

import time

import pytest

from services.metadata.bootstrap import metadata_parts
from services.metadata.records import JobRecord, NotificationRecord
from services.upload.progress import GROUP, ProgressFollower
from shared.changes import changes_key
from shared.config import load_settings
from shared.jobs import Job, JobErrorInfo, JobStatus, input_key, new_job_id
from shared.messages import JobEvent
from shared.storage import LocalStorage

pytestmark = pytest.mark.integration


@pytest.fixture
def store(redis_client, tmp_path, prefix):
    storage = LocalStorage(tmp_path / "storage")
    return metadata_parts(load_settings(redis_prefix=prefix), client=redis_client, storage=storage).store


def new_job(store) -> Job:
    job = JobRecord.new(new_job_id(), "clip.mp4", 3)
    store.storage.put_bytes(input_key(job.job_id), b"abc")
    store.create(job)
    return job


def drain(follower: ProgressFollower) -> None:
    while follower.step():
        pass


def test_the_stores_transitions_come_out_as_one_message_each_and_the_end_once(redis_client, store, prefix):
    published: list[dict] = []
    follower = ProgressFollower(redis_client, prefix, published.append, name="it", block_seconds=0.01)
    follower.step()  # the group, at the feed's end
    job = new_job(store)
    store.apply(JobEvent(job_id=job.job_id, status=JobStatus.PROCESSING, attempt=1))
    store.apply(JobEvent(job_id=job.job_id, status=JobStatus.PROCESSING, attempt=1, progress=40))
    store.apply(JobEvent(job_id=job.job_id, status=JobStatus.PROCESSING, attempt=1, progress=30))  # no rise: no write
    store.apply(JobEvent(job_id=job.job_id, status=JobStatus.COMPLETED, output_size=10, output_duration_seconds=1.0))
    store.record_notification(
        job.job_id, NotificationRecord(kind="email", attempt=1, at=time.time(), outcome="delivered")
    )
    drain(follower)
    assert [(m["status"], m["progress"]) for m in published] == [
        ("processing", 0),
        ("processing", 40),
        ("completed", 100),
    ]
    assert {(m["job_id"], m["input_key"], m["output_key"]) for m in published} == {
        (job.job_id, job.input_key, job.output_key)
    }
    assert redis_client.xpending(changes_key(prefix), GROUP)["pending"] == 0


def test_a_retry_is_followed_from_queued(redis_client, store, prefix):
    published: list[dict] = []
    follower = ProgressFollower(redis_client, prefix, published.append, name="it", block_seconds=0.01)
    follower.step()
    job = new_job(store)
    down = JobErrorInfo(code="storage_unavailable", message="down")
    store.apply(JobEvent(job_id=job.job_id, status=JobStatus.FAILED, error=down))
    store.apply(JobEvent(job_id=job.job_id, status=JobStatus.QUEUED, retry=1))
    store.apply(JobEvent(job_id=job.job_id, status=JobStatus.PROCESSING, retry=1, attempt=1))
    store.apply(JobEvent(job_id=job.job_id, status=JobStatus.FAILED, error=down))  # late, of run 0: no change
    drain(follower)
    assert [m["status"] for m in published] == ["failed", "queued", "processing"]

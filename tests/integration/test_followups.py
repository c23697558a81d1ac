"""What a job's writes keep in step, against the real Redis and rq: the change feed, the index,
the notifications and lifecycle jobs queued in the same transaction, the output cache's reference
counting, and the watchdog that takes back the rq jobs of a dead notifier. Each test works under
its own prefix and deletes its keys (and rq's) afterwards."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from rq.executions import Execution
from rq.job import Job as RqJob

from services.metadata.bootstrap import metadata_parts
from services.metadata.reaper import Watchdog, worker_alive_key
from services.metadata.records import JobRecord
from services.metadata.rqueues import rq_slug
from shared.changes import Change, changes_key
from shared.config import load_settings
from shared.jobs import JobStatus, input_key, new_job_id
from shared.messages import JobEvent
from shared.storage import LocalStorage

pytestmark = pytest.mark.integration


@pytest.fixture
def storage(tmp_path) -> LocalStorage:
    return LocalStorage(tmp_path / "storage")


@pytest.fixture
def parts(redis_client, storage, prefix):
    return metadata_parts(load_settings(redis_prefix=prefix, output_ttl=3600), client=redis_client, storage=storage)


def uploaded(storage: LocalStorage, **fields) -> JobRecord:
    job = JobRecord.new(new_job_id(), "clip.mp4", 3).model_copy(update=fields)
    storage.put_bytes(input_key(job.job_id), b"abc")
    return job


def completed(job_id: str, size: int = 10) -> JobEvent:
    return JobEvent(job_id=job_id, status=JobStatus.COMPLETED, output_size=size, output_duration_seconds=1.0)


def test_the_end_of_a_job_queues_its_notifications_and_expiry_with_it(parts, storage, redis_client, prefix):
    job = uploaded(storage, email="me@example.com", callback_url="http://127.0.0.1:9/hook")
    parts.store.create(job)
    parts.store.apply(JobEvent(job_id=job.job_id, status=JobStatus.PROCESSING, attempt=1))
    parts.store.apply(JobEvent(job_id=job.job_id, status=JobStatus.PROCESSING, attempt=1, progress=40))
    assert parts.queues.notifications.count == 0, "nothing is sent before the job ends"

    parts.store.apply(completed(job.job_id))
    slug = rq_slug(prefix)
    assert sorted(parts.queues.notifications.job_ids) == [
        f"{slug}-email-{job.job_id}-r0",
        f"{slug}-webhook-{job.job_id}-r0",
    ]
    email = RqJob.fetch(f"{slug}-email-{job.job_id}-r0", connection=redis_client)
    assert email.meta == {"siphon_job_id": job.job_id, "kind": "email"} and email.retries_left == 4
    assert parts.queues.lifecycle.scheduled_job_registry.get_job_ids() == [f"{slug}-expire-{job.job_id}"]
    assert list(storage.keys(input_key(job.job_id))) == [], "the input is deleted with the end"

    feed = [Change.from_entry(*entry) for entry in redis_client.xrange(changes_key(prefix))]
    assert [(c.kind, c.before, c.job.status.value, c.job.progress) for c in feed] == [
        ("job", "", "queued", None),  # a new record: no status before it
        ("job", "queued", "processing", None),
        ("job", "processing", "processing", 40),
        ("job", "processing", "completed", 100),
    ]
    assert parts.index.page(JobStatus.COMPLETED, 10).job_ids == [job.job_id]

    assert parts.store.apply(completed(job.job_id)) is None  # a repeated event: nothing queued again
    assert parts.queues.notifications.count == 2 and redis_client.xlen(changes_key(prefix)) == 4


def test_a_retryable_failure_keeps_its_input_and_a_rolled_back_job_leaves_the_index(
    parts, storage, redis_client, prefix
):
    job = uploaded(storage)
    parts.store.create(job)
    parts.store.apply(
        JobEvent(job_id=job.job_id, status=JobStatus.FAILED, error={"code": "storage_unavailable", "message": "down"})
    )
    assert list(storage.keys(input_key(job.job_id))) == [input_key(job.job_id)]
    assert parts.queues.lifecycle.scheduled_job_registry.get_job_ids() == [
        f"{rq_slug(prefix)}-forget-input-{job.job_id}-r0"
    ]

    other = uploaded(storage)
    parts.store.create(other)
    parts.store.delete(other.job_id)
    assert parts.index.page(None, 10).job_ids == [job.job_id]
    last = Change.from_entry(*redis_client.xrevrange(changes_key(prefix), count=1)[0])
    assert (last.kind, last.job_id, last.before) == ("deleted", other.job_id, "")


def test_a_shared_output_is_deleted_by_its_last_holder_only(parts, storage, redis_client):
    origin = uploaded(storage, cache_key="digest-options")
    parts.store.create(origin)
    parts.store.apply(completed(origin.job_id))
    done = parts.store.get(origin.job_id)
    storage.put_bytes(done.output_key, b"mp3")

    repeat = parts.outputs.reuse(uploaded(storage, cache_key="digest-options"))
    assert repeat.cached and repeat.status is JobStatus.COMPLETED and repeat.output_key == done.output_key
    parts.store.create(repeat)
    assert parts.outputs.reuse(uploaded(storage, cache_key="other-options")).status is JobStatus.QUEUED

    assert parts.outputs.release(done) is False
    assert list(storage.keys(done.output_key)) == [done.output_key], "the repeat still holds it"
    assert parts.outputs.release(repeat) is True
    assert list(storage.keys(done.output_key)) == []
    assert parts.outputs.reuse(uploaded(storage, cache_key="digest-options")).status is JobStatus.QUEUED
    assert parts.outputs.release(repeat) is True  # again (a retried expiry): harmless


def test_the_watchdog_takes_back_what_a_dead_notifier_was_running(parts, redis_client, prefix):
    queue = parts.queues.notifications
    meta = {"siphon_job_id": "0" * 32, "kind": "webhook", "tries": 1}
    dead = queue.enqueue_call(
        "services.metadata.tasks.deliver_notification",
        args=("webhook", "{}"),
        job_id=f"{rq_slug(prefix)}-dead",
        meta=meta,
    )
    alive = queue.enqueue_call(
        "services.metadata.tasks.deliver_notification",
        args=("webhook", "{}"),
        job_id=f"{rq_slug(prefix)}-alive",
        meta=meta,
    )
    for job, worker in ((dead, f"{rq_slug(prefix)}-gone"), (alive, f"{rq_slug(prefix)}-busy")):
        queue.remove(job.id)
        with redis_client.pipeline() as pipe:
            Execution.create(job, ttl=600, pipeline=pipe, worker_name=worker)
            pipe.execute()
    redis_client.set(worker_alive_key(f"{rq_slug(prefix)}-busy"), b"1", ex=30)

    taken: list[tuple[str, bool]] = []
    me = SimpleNamespace(name=f"{rq_slug(prefix)}-me", scheduler=None)
    watchdog = Watchdog(
        redis_client, me, parts.queues.all, max_tries=3, on_abandoned=lambda j, gave_up: taken.append((j.id, gave_up))
    )
    assert watchdog.reap() == 1
    assert taken == [(dead.id, False)]
    assert queue.job_ids == [dead.id], "back on its queue"
    assert [job_id for job_id, _ in queue.started_job_registry.get_job_and_execution_ids(cleanup=False)] == [alive.id]
    assert watchdog.reap() == 0, "taken back once"

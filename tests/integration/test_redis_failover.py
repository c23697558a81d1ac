"""siphon on a Redis primary, a replica and three Sentinels (tests/support/redis_sentinel.py): its
clients follow a failover, and the manifests restore what the promoted replica never received."""

from __future__ import annotations

import threading
import time

import pytest

from services.metadata.bootstrap import metadata_parts, redis_client
from services.metadata.records import JobRecord
from services.metadata.resync import resync, serving_node
from shared.config import load_settings
from shared.jobs import JobStatus, new_job_id
from shared.messages import JobEvent
from shared.quotas import redis_counters
from shared.storage import LocalStorage
from tests.support.redis_sentinel import SentinelGroup

pytestmark = pytest.mark.integration

SWITCH_SECONDS = 10.0
"""Longest acceptable time from the primary's death to a client's first write on the new one, s."""


@pytest.fixture
def group(tmp_path):
    with SentinelGroup(tmp_path / "redis") as started:
        yield started


@pytest.fixture
def settings(group, tmp_path, run_id):
    return load_settings(
        redis_sentinels=group.sentinels, redis_prefix=f"it-{run_id}:", storage_dir=tmp_path / "storage"
    )


def event(job_id: str, status: JobStatus, **fields) -> JobEvent:
    return JobEvent(job_id=job_id, status=status, attempt=1, **fields)


def completed(job_id: str) -> JobEvent:
    return event(job_id, JobStatus.COMPLETED, output_size=100, output_duration_seconds=1.5)


def test_a_client_follows_the_failover_to_the_replica(group, settings):
    client = redis_client(settings)
    client.set("before", b"1")
    first = serving_node(client)
    assert client.wait(1, 5000) == 1, "the replica has it"
    group.cut_replication()  # the replica keeps what it has; the next write is the primary's alone
    client.set("unreplicated", b"1")
    killed_at = group.kill_primary()
    while True:
        try:
            client.set("after", b"1")
            break
        except Exception:  # noqa: BLE001 - any error until the new primary serves; timed below
            assert time.monotonic() - killed_at < SWITCH_SECONDS, "no primary serves writes"
            time.sleep(0.05)
    switched = time.monotonic() - killed_at
    print(f"\nfirst write on the new primary {switched:.2f} s after the kill")
    assert serving_node(client) != first
    assert client.get("before") == b"1" and client.get("unreplicated") is None  # replication is asynchronous
    assert switched < SWITCH_SECONDS


def test_a_long_poll_waits_through_the_failover(group, settings):
    parts = metadata_parts(settings, storage=LocalStorage(settings.storage_dir))
    job = JobRecord.new(new_job_id(), "clip.mp4", 10)
    parts.store.create(job)
    answers: list[JobRecord] = []
    waiter = threading.Thread(target=lambda: answers.append(parts.store.wait_terminal(job.job_id, 30)))
    waiter.start()
    time.sleep(0.5)
    group.kill_primary()
    group.wait_for_failover()
    parts.store.apply(completed(job.job_id))
    waiter.join(30)
    assert [j.status for j in answers] == [JobStatus.COMPLETED]


def test_the_manifests_restore_what_the_new_primary_missed(group, settings):
    parts = metadata_parts(settings, storage=LocalStorage(settings.storage_dir))
    store, index = parts.store, parts.index
    behind, missing, current = (
        JobRecord.new(new_job_id(), f"{name}.mp4", 10) for name in ("behind", "missing", "current")
    )
    for job in (behind, current):
        store.create(job)
        store.apply(event(job.job_id, JobStatus.PROCESSING))
    store.apply(completed(current.job_id))
    assert store.redis.wait(1, 5000) == 1, "the replica has all of it so far"
    group.cut_replication()
    store.apply(completed(behind.job_id))  # acknowledged by the primary, never replicated
    store.create(missing)
    group.kill_primary()
    group.wait_for_failover()

    assert store.redis.get(store._key(behind.job_id)) is not None
    assert JobRecord.model_validate_json(store.redis.get(store._key(behind.job_id))).status is JobStatus.PROCESSING
    assert store.redis.get(store._key(missing.job_id)) is None
    counts = resync(store, index)

    assert (counts["advanced"], counts["restored"], counts["current"]) == (1, 1, 1)
    for job in (behind, missing, current):
        assert JobRecord.model_validate_json(store.redis.get(store._key(job.job_id))) == store.get(job.job_id)
    assert store.get(behind.job_id).status is JobStatus.COMPLETED
    assert store.redis.llen(store._done_key(behind.job_id)) == 1, "long-polls wake"
    assert set(index.page(JobStatus.COMPLETED, 10).job_ids) == {behind.job_id, current.job_id}
    assert index.page(JobStatus.PROCESSING, 10).job_ids == []
    assert index.page(JobStatus.QUEUED, 10).job_ids == [missing.job_id]
    assert parts.queues.lifecycle.scheduled_job_registry.count == 2, "both completed jobs will expire"
    assert resync(store, index) == {"current": 3}, "a second run changes nothing"


def test_rate_limit_counters_follow_the_failover(group, settings):
    counters = redis_counters(settings)
    assert counters.incr("k", 60) == 1
    group.kill_primary()
    group.wait_for_failover()
    deadline = time.monotonic() + SWITCH_SECONDS
    while True:
        try:
            assert counters.incr("k2", 60) == 1
            break
        except Exception:  # noqa: BLE001 - limits' StorageError until its pool reconnects
            assert time.monotonic() < deadline
            time.sleep(0.1)

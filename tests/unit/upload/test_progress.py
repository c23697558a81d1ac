"""The public progress feed (``services.upload.progress``): the change feed in, public messages out,
followed in a consumer group on fakeredis. Entries are written here as ``services/metadata/feed.py``
writes them (``shared/changes.py`` is the contract; tests/integration/test_progress_follower.py
checks the real writer against the real Redis)."""

from __future__ import annotations

import json

import fakeredis
import pytest
import redis

from services.upload.progress import (
    GROUP,
    ProgressFeed,
    ProgressFollower,
    is_news,
    job_message,
    progress_message,
    rejected_message,
)
from shared.changes import Change, changes_key
from shared.errors import BrokerUnavailable
from shared.jobs import Job, JobErrorInfo, JobStatus, new_job_id
from tests.unit.fakes import FakePublisher

PREFIX = "unit:"
KEY = changes_key(PREFIX)


@pytest.fixture
def client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(server=fakeredis.FakeServer())


@pytest.fixture
def job() -> Job:
    return Job(job_id=new_job_id(), created_at=0, input_key="videos/talk.mov", output_key="audio/talk.mp3")


@pytest.fixture
def published() -> list[dict]:
    return []


def follower(client, publish, name: str = "intake-1", **options) -> ProgressFollower:
    return ProgressFollower(client, PREFIX, publish, name=name, block_seconds=0.01, retry_seconds=0.01, **options)


def write(client, after: Job, before: JobStatus | None) -> str:
    """Append a change the way metadata's ChangeFeed does (``before``: None for a new record)."""
    fields = {"kind": "job", "job_id": after.job_id, "data": after.model_dump_json(), "before": before or ""}
    return client.xadd(KEY, fields).decode()


def walk(client, job: Job, *steps: dict) -> Job:
    """Write ``job`` as created, then each step's update of it; returns the last state."""
    write(client, job, None)
    for update in steps:
        after = job.model_copy(update=update)
        write(client, after, job.status)
        job = after
    return job


def drain(f: ProgressFollower) -> None:
    while f.step():
        pass


FAILED_STORAGE = JobErrorInfo(code="storage_unavailable", message="down")


# --- what a change tells --------------------------------------------------------------------------
def test_processing_carries_the_records_progress_and_keys(client, job, published):
    f = follower(client, published.append)
    f.step()  # joins the group at the feed's end
    walk(client, job, {"status": JobStatus.PROCESSING, "attempts": 1}, {"progress": 42})
    drain(f)
    assert published == [
        {
            "job_id": job.job_id,
            "status": "processing",
            "progress": 0,
            "input_key": "videos/talk.mov",
            "output_key": "audio/talk.mp3",
        },
        {
            "job_id": job.job_id,
            "status": "processing",
            "progress": 42,
            "input_key": "videos/talk.mov",
            "output_key": "audio/talk.mp3",
        },
    ]


def test_completed_is_the_final_message_with_100_and_failed_carries_the_error(job):
    completed = job.model_copy(update={"status": JobStatus.COMPLETED, "progress": 100})
    assert job_message(completed) == {
        "job_id": job.job_id,
        "status": "completed",
        "progress": 100,
        "input_key": "videos/talk.mov",
        "output_key": "audio/talk.mp3",
    }
    error = JobErrorInfo(code="no_audio_stream", message="The file has no audio stream.")
    failed = job_message(job.model_copy(update={"status": JobStatus.FAILED, "error": error, "progress": 30}))
    assert failed["status"] == "failed" and failed["error"] == error.model_dump() and "progress" not in failed


def test_a_job_created_queued_is_no_news_and_one_refused_at_once_is_one_failed_message(client, job, published):
    f = follower(client, published.append)
    f.step()
    walk(client, job, {"status": JobStatus.FAILED, "error": JobErrorInfo(code="empty_file", message="empty")})
    drain(f)
    assert [(m["status"], m["error"]["code"]) for m in published] == [("failed", "empty_file")]


def test_one_final_message_per_retry_though_the_ended_record_is_written_again(client, job, published):
    f = follower(client, published.append)
    f.step()
    walk(
        client,
        job,
        {"status": JobStatus.PROCESSING, "attempts": 1},
        {"status": JobStatus.COMPLETED, "progress": 100},
        {"cached": True},  # e.g. a notification recorded on the completed job
        {"status": JobStatus.EXPIRED},
    )
    drain(f)
    assert [m["status"] for m in published] == ["processing", "completed"]


def test_a_retry_starts_over_with_queued_then_processing(client, job, published):
    f = follower(client, published.append)
    f.step()
    walk(
        client,
        job,
        {"status": JobStatus.FAILED, "error": FAILED_STORAGE},
        {"status": JobStatus.QUEUED, "retries": 1, "error": None},
        {"status": JobStatus.PROCESSING, "attempts": 1, "progress": 10},
        {"status": JobStatus.COMPLETED, "progress": 100},
    )
    drain(f)
    assert [(m["status"], m.get("progress")) for m in published] == [
        ("failed", None),
        ("queued", 0),
        ("processing", 10),
        ("completed", 100),
    ]


def test_a_cancel_is_final_whatever_the_retry():
    live = Job(job_id=new_job_id(), created_at=0, input_key="i", output_key="o", status=JobStatus.CANCELLED)
    assert is_news("queued", live) and is_news("processing", live) and not is_news("failed", live)


def test_entries_without_before_are_told_except_expiry():
    job = Job(job_id=new_job_id(), created_at=0, input_key="i", output_key="o", status=JobStatus.COMPLETED)
    assert is_news(None, job) and not is_news(None, job.model_copy(update={"status": JobStatus.EXPIRED}))


def test_deleted_records_and_trimmed_entries_tell_nothing():
    assert progress_message(Change("1-0", "deleted", new_job_id(), "", "")) is None
    assert progress_message(Change.from_entry(b"1-0", {})) is None


def test_an_invalid_entry_is_logged_acknowledged_and_skipped(client, job, published, caplog):
    f = follower(client, published.append)
    f.step()
    client.xadd(KEY, {"kind": "job", "job_id": job.job_id, "data": "{not json", "before": ""})
    client.xadd(KEY, {"kind": "job", "job_id": job.job_id, "data": job.model_dump_json(), "before": "dancing"})
    walk(client, job, {"status": JobStatus.PROCESSING, "attempts": 1})
    drain(f)
    assert [m["status"] for m in published] == ["processing"]
    assert client.xpending(KEY, GROUP)["pending"] == 0
    assert caplog.text.count("not valid") == 2


# --- the consumer group ---------------------------------------------------------------------------
def test_the_group_starts_at_the_feeds_end_so_history_is_not_replayed(client, job, published):
    walk(client, job, {"status": JobStatus.PROCESSING, "attempts": 1})
    f = follower(client, published.append)
    drain(f)
    assert published == []


def test_a_restarted_intake_resumes_where_it_left_off_without_repeating(client, job, published):
    first = follower(client, published.append)
    first.step()
    running = walk(client, job, {"status": JobStatus.PROCESSING, "attempts": 1})
    drain(first)
    first.stop()
    first.run()  # returns at once, leaving the group
    write(client, running.model_copy(update={"progress": 50}), JobStatus.PROCESSING)  # while no intake runs
    write(client, running.model_copy(update={"status": JobStatus.COMPLETED, "progress": 100}), JobStatus.PROCESSING)
    drain(follower(client, published.append, name="intake-1-restarted"))
    assert [(m["status"], m["progress"]) for m in published] == [
        ("processing", 0),
        ("processing", 50),
        ("completed", 100),
    ]


def test_replicas_share_the_group_so_each_change_is_reported_once(client, job, published):
    a, b = follower(client, published.append, "a"), follower(client, published.append, "b")
    a.step(), b.step()
    running = walk(client, job, {"status": JobStatus.PROCESSING, "attempts": 1})
    for progress in range(10, 60, 10):
        write(client, running.model_copy(update={"progress": progress}), JobStatus.PROCESSING)
    while a.step() + b.step():
        pass
    assert sorted(m["progress"] for m in published) == [0, 10, 20, 30, 40, 50]


def test_a_broker_outage_keeps_the_change_pending_and_it_goes_out_first_afterwards(client, job, published):
    down = [True]

    def publish(message: dict) -> None:
        if down[0]:
            raise BrokerUnavailable("RabbitMQ publish failed")
        published.append(message)

    f = follower(client, publish)
    f.step()
    running = walk(client, job, {"status": JobStatus.PROCESSING, "attempts": 1}, {"progress": 20})
    with pytest.raises(BrokerUnavailable):
        f.step()
    assert client.xpending(KEY, GROUP)["pending"] == 2
    down[0] = False
    write(client, running.model_copy(update={"progress": 30}), JobStatus.PROCESSING)
    drain(f)
    assert [m["progress"] for m in published] == [0, 20, 30]
    assert client.xpending(KEY, GROUP)["pending"] == 0


def test_changes_a_dead_replica_left_unacknowledged_are_taken_over(client, job, published):
    def dies(message: dict) -> None:
        raise BrokerUnavailable("the process is gone before it could publish")

    dead = follower(client, dies, "dead")
    dead.step()
    walk(client, job, {"status": JobStatus.PROCESSING, "attempts": 1})
    with pytest.raises(BrokerUnavailable):
        dead.step()
    patient = follower(client, published.append, "patient")
    drain(patient)
    assert published == [], "not before the changes were idle for CLAIM_IDLE_SECONDS"
    drain(follower(client, published.append, "heir", claim_idle_seconds=0))
    assert [m["status"] for m in published] == ["processing"]


def test_run_waits_out_an_outage_and_a_clean_stop_leaves_the_group(client, job, published):
    tries = []
    f = follower(client, lambda message: None)

    def publish(message: dict) -> None:
        tries.append(message)
        if len(tries) == 1:
            raise BrokerUnavailable("down for a moment")
        published.append(message)
        f.stop()

    f.publish = publish
    f.step()
    walk(client, job, {"status": JobStatus.PROCESSING, "attempts": 1})
    f.run()
    assert len(tries) == 2 and [m["status"] for m in published] == ["processing"]
    assert client.xinfo_consumers(KEY, GROUP) == []


def test_a_redis_outage_propagates_from_a_step_for_run_to_wait_out():
    server = fakeredis.FakeServer()
    server.connected = False
    with pytest.raises(redis.ConnectionError):
        follower(fakeredis.FakeRedis(server=server), lambda message: None).step()


# --- the queue intake's own messages --------------------------------------------------------------
def test_rejected_messages_echo_the_id_they_carried_cut_short():
    assert rejected_message("job-42", "invalid_job_id", "m") == {
        "job_id": "job-42",
        "status": "rejected",
        "error": {"code": "invalid_job_id", "message": "m"},
    }
    assert rejected_message("x" * 500, "c", "m")["job_id"] == "x" * 64
    assert rejected_message({"a": 1}, "c", "m")["job_id"] is None


def test_the_feed_publishes_json_to_the_progress_exchange():
    publisher = FakePublisher()
    ProgressFeed(publisher)({"job_id": "j", "status": "queued"})
    assert [(exchange, key, json.loads(body)) for exchange, key, body in publisher.published] == [
        ("unit.progress", "", {"job_id": "j", "status": "queued"})
    ]

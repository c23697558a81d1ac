"""The public progress feed (``services.upload.progress``): job events in, public messages out."""

from __future__ import annotations

import json

import pytest

from services.upload.progress import ProgressFeed, ProgressRelay, job_message, rejected_message
from shared.broker import ACK
from shared.errors import JobStoreUnavailable
from shared.jobs import Job, JobErrorInfo, JobStatus, new_job_id
from shared.messages import JobEvent
from tests.unit.fakes import FakeMetadata, FakePublisher


@pytest.fixture
def job() -> Job:
    return Job(job_id=new_job_id(), created_at=0, input_key="videos/talk.mov", output_key="audio/talk.mp3")


@pytest.fixture
def metadata(job) -> FakeMetadata:
    return FakeMetadata(job)


@pytest.fixture
def published() -> list[dict]:
    return []


@pytest.fixture
def relay(metadata, published) -> ProgressRelay:
    return ProgressRelay(metadata, published.append)


def test_processing_carries_the_events_progress_and_the_keys(relay, job, published):
    body = JobEvent(job_id=job.job_id, status=JobStatus.PROCESSING, progress=42).encode()
    assert relay.handle(body) == ACK
    assert published == [
        {
            "job_id": job.job_id,
            "status": "processing",
            "progress": 42,
            "input_key": "videos/talk.mov",
            "output_key": "audio/talk.mp3",
        }
    ]


def test_processing_without_progress_reports_zero(job):
    message = job_message(JobEvent(job_id=job.job_id, status=JobStatus.PROCESSING), "in", "out")
    assert message["progress"] == 0


def test_completed_is_the_final_message_with_the_output_key(job):
    message = job_message(JobEvent(job_id=job.job_id, status=JobStatus.COMPLETED), "in", "audio/talk.mp3")
    assert message == {
        "job_id": job.job_id,
        "status": "completed",
        "progress": 100,
        "input_key": "in",
        "output_key": "audio/talk.mp3",
    }


def test_failed_carries_the_error_and_no_progress(job):
    error = JobErrorInfo(code="no_audio_stream", message="The file has no audio stream.")
    message = job_message(JobEvent(job_id=job.job_id, status=JobStatus.FAILED, error=error), "in", "out")
    assert message["status"] == "failed" and message["error"] == error.model_dump() and "progress" not in message


def test_a_job_is_looked_up_once_for_all_its_events(relay, job, metadata):
    for status in (JobStatus.PROCESSING, JobStatus.PROCESSING, JobStatus.COMPLETED):
        relay.handle(JobEvent(job_id=job.job_id, status=status).encode())
    assert metadata.called("get_job") == [job.job_id]


def test_malformed_events_and_unknown_jobs_are_dropped(relay, published):
    assert relay.handle(b"garbage") == ACK
    assert relay.handle(JobEvent(job_id=new_job_id(), status=JobStatus.COMPLETED).encode()) == ACK
    assert published == []


def test_a_metadata_outage_propagates_so_the_event_is_requeued(relay, job, metadata):
    metadata.fail("get_job", JobStoreUnavailable("down"))
    with pytest.raises(JobStoreUnavailable):
        relay.handle(JobEvent(job_id=job.job_id, status=JobStatus.COMPLETED).encode())


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


def test_one_final_message_per_retry_however_often_the_events_come(relay, job, published):
    completed = JobEvent(job_id=job.job_id, status=JobStatus.COMPLETED).encode()
    processing = JobEvent(job_id=job.job_id, status=JobStatus.PROCESSING, progress=50).encode()
    for body in (processing, completed, processing, completed):  # a task converted twice
        relay.handle(body)
    assert [m["status"] for m in published] == ["processing", "completed"]


def test_a_retry_starts_over_and_late_events_of_the_failed_one_are_dropped(relay, job, published):
    error = JobErrorInfo(code="storage_unavailable", message="down")
    for event in (
        JobEvent(job_id=job.job_id, status=JobStatus.FAILED, error=error),
        JobEvent(job_id=job.job_id, status=JobStatus.QUEUED, retry=1),
        JobEvent(job_id=job.job_id, status=JobStatus.PROCESSING),  # late, of retry 0
        JobEvent(job_id=job.job_id, status=JobStatus.PROCESSING, retry=1, progress=10),
        JobEvent(job_id=job.job_id, status=JobStatus.COMPLETED, retry=1),
    ):
        relay.handle(event.encode())
    assert [(m["status"], m.get("progress")) for m in published] == [
        ("failed", None),
        ("queued", 0),
        ("processing", 10),
        ("completed", 100),
    ]


def test_a_retry_announced_to_metadata_over_http_is_followed_from_its_first_event(relay, job, published):
    error = JobErrorInfo(code="disk_full", message="full")
    for event in (
        JobEvent(job_id=job.job_id, status=JobStatus.FAILED, error=error),
        JobEvent(job_id=job.job_id, status=JobStatus.PROCESSING, retry=1),
        JobEvent(job_id=job.job_id, status=JobStatus.COMPLETED, retry=1),
        JobEvent(job_id=job.job_id, status=JobStatus.FAILED, error=error),
    ):  # late, of retry 0
        relay.handle(event.encode())
    assert [m["status"] for m in published] == ["failed", "processing", "completed"]

"""The job model: ids, storage keys and the forward-only state machine (``Job.apply``)."""

from __future__ import annotations

import pytest

from shared.jobs import (
    _TRANSITIONS,
    Job,
    JobErrorInfo,
    JobStatus,
    MediaFacts,
    input_key,
    is_valid_job_id,
    job_prefix,
    manifest_key,
    new_job_id,
    output_key,
)
from shared.messages import JobEvent

JOB_ID = "0123456789abcdef0123456789abcdef"
FACTS = MediaFacts(container="mov", audio_codec="aac", duration_seconds=8.0, sample_rate_hz=48000, channels=2)
ERROR = JobErrorInfo(code="no_audio_stream", message="The file has no audio stream.")


def event(status: JobStatus, attempt: int = 1, at: float = 1000.0, **fields) -> JobEvent:
    return JobEvent(job_id=JOB_ID, status=status, attempt=attempt, at=at, **fields)


def job(status: JobStatus = JobStatus.QUEUED, attempts: int = 0, **fields) -> Job:
    return Job.new(JOB_ID, "holiday.mp4", 1234).model_copy(update={"status": status, "attempts": attempts, **fields})


def test_new_job_is_queued_with_keys_derived_from_its_id_only():
    fresh = Job.new(JOB_ID, "../../etc/passwd", 42)
    assert fresh.status is JobStatus.QUEUED and fresh.attempts == 0
    assert fresh.input_key == f"jobs/{JOB_ID}/input" == input_key(JOB_ID)
    assert fresh.output_key == f"jobs/{JOB_ID}/output.mp3" == output_key(JOB_ID)
    assert manifest_key(JOB_ID) == f"jobs/{JOB_ID}/job.json"
    assert all(key.startswith(job_prefix(JOB_ID)) for key in (fresh.input_key, fresh.output_key))


def test_new_job_ids_are_valid_and_distinct():
    ids = {new_job_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(is_valid_job_id(job_id) for job_id in ids)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "*",
        "0123456789ABCDEF0123456789ABCDEF",
        "01234567-89ab-cdef-0123-456789abcdef",
        JOB_ID[:-1],
        JOB_ID + "0",
        JOB_ID + "\n",
        "../" + JOB_ID[3:],
        "g" * 32,
        "a" * 1_000_000,
    ],
)
def test_malformed_job_ids_are_refused(value):
    assert not is_valid_job_id(value)


def test_processing_from_queued_records_attempt_start_and_media():
    after = job().apply(event(JobStatus.PROCESSING, attempt=1, at=50.0, media=FACTS))
    assert after.status is JobStatus.PROCESSING
    assert (after.attempts, after.started_at, after.media) == (1, 50.0, FACTS)


def test_processing_repeats_only_with_a_higher_attempt():
    first = job().apply(event(JobStatus.PROCESSING, attempt=1, at=50.0))
    assert first.apply(event(JobStatus.PROCESSING, attempt=1, at=60.0)) is None
    second = first.apply(event(JobStatus.PROCESSING, attempt=2, at=70.0))
    assert second.attempts == 2
    assert second.started_at == 50.0, "a redelivery keeps the time the job first started"
    assert second.apply(event(JobStatus.PROCESSING, attempt=1, at=80.0)) is None


def test_completed_records_the_output_and_keeps_known_media():
    running = job(JobStatus.PROCESSING, attempts=2, started_at=10.0, media=FACTS)
    done = running.apply(event(JobStatus.COMPLETED, attempt=2, at=20.0, output_size=999, output_duration_seconds=8.04))
    assert done.status is JobStatus.COMPLETED
    assert (done.finished_at, done.output_size, done.output_duration_seconds) == (20.0, 999, 8.04)
    assert done.attempts == 2 and done.media == FACTS and done.started_at == 10.0


def test_completed_without_a_processing_event_still_counts_the_attempt():
    done = job().apply(event(JobStatus.COMPLETED, attempt=3, output_size=1))
    assert done.status is JobStatus.COMPLETED and done.attempts == 3


def test_failed_straight_from_queued_records_the_error():
    failed = job().apply(event(JobStatus.FAILED, attempt=1, at=5.0, error=ERROR))
    assert failed.status is JobStatus.FAILED
    assert (failed.error, failed.finished_at, failed.attempts) == (ERROR, 5.0, 1)


def test_failed_of_the_attempt_under_way_keeps_the_attempt_count():
    failed = job(JobStatus.PROCESSING, attempts=4).apply(event(JobStatus.FAILED, attempt=4, error=ERROR))
    assert failed.status is JobStatus.FAILED and failed.attempts == 4


@pytest.mark.parametrize("status", [JobStatus.COMPLETED, JobStatus.FAILED])
def test_a_late_result_of_a_superseded_delivery_changes_nothing(status):
    # attempt 1's worker was cut off; the broker gave the task out again as attempt 2, now under way
    redelivered = job(JobStatus.PROCESSING, attempts=2, started_at=10.0)
    assert redelivered.apply(event(status, attempt=1, output_size=1, error=ERROR)) is None
    assert redelivered.apply(event(status, attempt=2, output_size=1, error=ERROR)).status is status


@pytest.mark.parametrize("terminal", [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.EXPIRED])
@pytest.mark.parametrize("incoming", list(JobStatus))
def test_a_terminal_job_ignores_every_event(terminal, incoming):
    if (terminal, incoming) == (JobStatus.COMPLETED, JobStatus.EXPIRED):
        pytest.skip("completed → expired is the one move out of completed (tested below)")
    settled = job(terminal, attempts=1, finished_at=1.0)
    assert settled.apply(event(incoming, attempt=99, error=ERROR, output_size=5)) is None


def test_only_a_completed_job_expires_and_keeps_its_facts():
    completed = job(JobStatus.COMPLETED, attempts=1, finished_at=5.0, output_size=10, media=FACTS)
    expired = completed.apply(event(JobStatus.EXPIRED, at=99.0))
    assert expired.status is JobStatus.EXPIRED and expired.status.is_terminal
    assert (expired.finished_at, expired.output_size, expired.media) == (5.0, 10, FACTS)
    for status in (JobStatus.QUEUED, JobStatus.PROCESSING, JobStatus.FAILED, JobStatus.CANCELLED):
        assert job(status, attempts=1).apply(event(JobStatus.EXPIRED)) is None


def test_a_queued_event_changes_nothing():
    assert job().apply(event(JobStatus.QUEUED)) is None
    assert job(JobStatus.PROCESSING, attempts=1).apply(event(JobStatus.QUEUED, attempt=5)) is None


def test_apply_leaves_the_original_job_untouched():
    before = job()
    before.apply(event(JobStatus.FAILED, error=ERROR))
    assert before.status is JobStatus.QUEUED and before.error is None


def test_every_event_status_has_its_handler():
    assert set(_TRANSITIONS) == set(JobStatus)


def test_only_queued_and_processing_are_live():
    assert {s for s in JobStatus if not s.is_terminal} == {JobStatus.QUEUED, JobStatus.PROCESSING}

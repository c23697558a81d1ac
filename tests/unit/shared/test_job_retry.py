"""Retrying a job that failed for a reason that is not the file's (``Job.apply`` with ``queued``):
the one way back in the state machine, and the retry number that keeps the failed retry's late events out."""

from __future__ import annotations

import pytest

from shared.jobs import RETRYABLE_ERROR_CODES, Job, JobErrorInfo, JobStatus
from shared.messages import JobEvent

JOB_ID = "0123456789abcdef0123456789abcdef"


def failed(code: str, retries: int = 0) -> Job:
    return Job.new(JOB_ID, "talk.mp4", 10).model_copy(
        update={
            "status": JobStatus.FAILED,
            "attempts": 3,
            "retries": retries,
            "started_at": 1.0,
            "finished_at": 2.0,
            "error": JobErrorInfo(code=code, message="down"),
        }
    )


def event(status: JobStatus, retry: int | None = None, **fields) -> JobEvent:
    return JobEvent(job_id=JOB_ID, status=status, retry=retry, **fields)


@pytest.mark.parametrize("code", sorted(RETRYABLE_ERROR_CODES))
def test_a_retryable_failure_is_queued_again_as_the_next_retry(code):
    queued = failed(code).apply(event(JobStatus.QUEUED, retry=1))
    assert (queued.status, queued.retries, queued.attempts, queued.error) == (JobStatus.QUEUED, 1, 0, None)
    assert (queued.started_at, queued.finished_at) == (None, None)


@pytest.mark.parametrize("code", ["not_media", "no_audio_stream", "decode_failed", "invalid_task"])
def test_a_failure_of_the_file_itself_is_never_retried(code):
    assert failed(code).apply(event(JobStatus.QUEUED, retry=1)) is None


@pytest.mark.parametrize("retry", [None, 1, 3])
def test_only_the_next_retry_number_queues_the_job_again(retry):
    assert failed("disk_full", retries=1).apply(event(JobStatus.QUEUED, retry=retry)) is None


def test_a_repeated_retry_changes_nothing():
    queued = failed("storage_unavailable").apply(event(JobStatus.QUEUED, retry=1))
    assert queued.apply(event(JobStatus.QUEUED, retry=1)) is None


def test_late_events_of_the_failed_retry_cannot_touch_the_new_one():
    queued = failed("storage_unavailable").apply(event(JobStatus.QUEUED, retry=1))
    error = JobErrorInfo(code="storage_unavailable", message="down")
    assert queued.apply(event(JobStatus.FAILED, error=error)) is None  # a duplicate of the retry that failed
    assert queued.apply(event(JobStatus.PROCESSING, attempt=4)) is None
    running = queued.apply(event(JobStatus.PROCESSING, retry=1))
    assert (running.status, running.attempts) == (JobStatus.PROCESSING, 1)
    done = running.apply(event(JobStatus.COMPLETED, retry=1, output_size=5))
    assert (done.status, done.retries, done.output_size) == (JobStatus.COMPLETED, 1, 5)


def test_a_retry_that_could_not_be_queued_fails_the_job_again():
    queued = failed("disk_full").apply(event(JobStatus.QUEUED, retry=1))
    error = JobErrorInfo(code="disk_full", message="down")
    again = queued.apply(event(JobStatus.FAILED, retry=1, error=error))
    assert (again.status, again.retries, again.error) == (JobStatus.FAILED, 1, error)
    assert again.is_retryable

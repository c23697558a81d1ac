"""Progress reports and cancels in the job state machine (``Job.apply``), options on the record."""

from __future__ import annotations

import pytest

from shared.jobs import Job, JobErrorInfo, JobStatus
from shared.messages import ConversionTask, JobEvent
from shared.options import ConversionOptions

JOB_ID = "0123456789abcdef0123456789abcdef"
ERROR = JobErrorInfo(code="not_media", message="no")


def event(status: JobStatus, attempt: int = 1, at: float = 1000.0, **fields) -> JobEvent:
    return JobEvent(job_id=JOB_ID, status=status, attempt=attempt, at=at, **fields)


def job(status: JobStatus = JobStatus.QUEUED, attempts: int = 0, **fields) -> Job:
    return Job.new(JOB_ID, "talk.mp4", 10).model_copy(update={"status": status, "attempts": attempts, **fields})


def running(progress: int | None = 0) -> Job:
    return job().apply(event(JobStatus.PROCESSING, progress=progress))


def test_processing_starts_the_progress_at_what_it_reports():
    assert running(0).progress == 0
    assert running(None).progress is None


def test_a_report_for_the_current_attempt_raises_the_progress():
    after = running().apply(event(JobStatus.PROCESSING, progress=42))
    assert (after.status, after.attempts, after.progress) == (JobStatus.PROCESSING, 1, 42)


@pytest.mark.parametrize("reported", [42, 10, None])
def test_a_report_that_does_not_raise_the_progress_changes_nothing(reported):
    at_42 = running().apply(event(JobStatus.PROCESSING, progress=42))
    assert at_42.apply(event(JobStatus.PROCESSING, progress=reported)) is None


def test_a_report_is_held_below_100_which_only_completion_sets():
    at_99 = running().apply(event(JobStatus.PROCESSING, progress=100))
    assert at_99.progress == 99
    done = at_99.apply(event(JobStatus.COMPLETED, output_size=5, speed=31.5))
    assert (done.progress, done.speed) == (100, 31.5)


def test_a_report_of_an_earlier_attempt_is_ignored_and_a_redelivery_restarts_the_progress():
    second = (
        running()
        .apply(event(JobStatus.PROCESSING, progress=80))
        .apply(event(JobStatus.PROCESSING, attempt=2, progress=0))
    )
    assert (second.attempts, second.progress) == (2, 0)
    assert second.apply(event(JobStatus.PROCESSING, attempt=1, progress=90)) is None


def test_a_report_of_another_run_is_ignored():
    assert running().apply(event(JobStatus.PROCESSING, progress=50, retry=1)) is None


def test_a_progress_report_differs_from_the_job_only_in_progress():
    before = running()
    after = before.apply(event(JobStatus.PROCESSING, progress=7))
    assert before.differs_only_in_progress(after)
    assert not job().differs_only_in_progress(before), "starting to process is a real transition"


@pytest.mark.parametrize("live", [JobStatus.QUEUED, JobStatus.PROCESSING])
def test_a_live_job_can_be_cancelled_whatever_its_run(live):
    cancelled = job(live, attempts=1, retries=2).apply(event(JobStatus.CANCELLED, at=55.0))
    assert (cancelled.status, cancelled.finished_at) == (JobStatus.CANCELLED, 55.0)
    assert cancelled.status.is_terminal


@pytest.mark.parametrize("terminal", [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED])
def test_a_finished_job_cannot_be_cancelled(terminal):
    assert job(terminal, attempts=1).apply(event(JobStatus.CANCELLED)) is None


@pytest.mark.parametrize(
    "late",
    [
        event(JobStatus.PROCESSING, attempt=1, progress=50),
        event(JobStatus.PROCESSING, attempt=2),
        event(JobStatus.COMPLETED, output_size=9),
        event(JobStatus.FAILED, error=ERROR),
        event(JobStatus.QUEUED, retry=1),
    ],
)
def test_a_cancelled_job_ignores_what_its_worker_still_says(late):
    cancelled = running().apply(event(JobStatus.CANCELLED))
    assert cancelled.apply(late) is None


def test_a_new_job_records_its_options_and_names_its_output_for_the_format():
    options = ConversionOptions(format="opus", bitrate=64)
    fresh = Job.new(JOB_ID, "talk.mp4", 10, options=options.recorded(), extension=options.output_format.extension)
    assert fresh.output_key == f"jobs/{JOB_ID}/output.opus" and fresh.output_extension == "opus"
    assert fresh.options == {"format": "opus", "bitrate": 64}
    assert Job.new(JOB_ID, "talk.mp4", 10).output_extension == "mp3"


def test_a_task_carries_its_options_and_a_plain_task_none():
    options = ConversionOptions(format="m4a", start=1.5, title="T")
    task = ConversionTask(job_id=JOB_ID, input_key="i", output_key="o", options=options)
    assert ConversionTask.decode(task.encode()).options == options
    plain = ConversionTask(job_id=JOB_ID, input_key="i", output_key="o")
    assert b"options" not in plain.encode()

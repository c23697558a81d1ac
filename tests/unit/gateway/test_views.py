"""The JSON shapes of ``GET /status`` (``services.gateway.views``)."""

from __future__ import annotations

from services.gateway.views import MAX_ECHOED_ID_CHARS, not_found_body, status_body
from shared.jobs import Job, JobErrorInfo, JobStatus

JOB_ID = "0123456789abcdef0123456789abcdef"
HOST = "http://siphon.example:8080/"


def job(status: JobStatus, **fields) -> Job:
    return Job.new(JOB_ID, "clip.mp4", 10).model_copy(update={"status": status, **fields})


def test_queued_and_processing_say_only_where_the_job_is():
    assert status_body(job(JobStatus.QUEUED), HOST) == {
        "job_id": JOB_ID,
        "status": "queued",
        "message": "Conversion job is queued.",
    }
    assert status_body(job(JobStatus.PROCESSING), HOST) == {
        "job_id": JOB_ID,
        "status": "processing",
        "message": "Conversion in progress.",
    }


def test_completed_links_the_download_once_slashed():
    assert status_body(job(JobStatus.COMPLETED), HOST) == {
        "job_id": JOB_ID,
        "status": "completed",
        "message": "Conversion completed.",
        "download_url": f"http://siphon.example:8080/download/{JOB_ID}.mp3",
    }


def test_failed_says_why():
    error = JobErrorInfo(code="no_audio_stream", message="The file has no audio stream.")
    assert status_body(job(JobStatus.FAILED, error=error), HOST) == {
        "job_id": JOB_ID,
        "status": "failed",
        "message": "Conversion failed. The file has no audio stream.",
        "error": {"code": "no_audio_stream", "message": "The file has no audio stream."},
    }


def test_failed_without_a_recorded_error_still_answers():
    assert status_body(job(JobStatus.FAILED), HOST) == {
        "job_id": JOB_ID,
        "status": "failed",
        "message": "Conversion failed.",
    }


def test_not_found_echoes_at_most_a_short_prefix_of_the_id():
    assert not_found_body(JOB_ID) == {"job_id": JOB_ID, "status": "not_found", "message": "Job not found."}
    huge = not_found_body("a" * 1_000_000)
    assert huge["job_id"] == "a" * MAX_ECHOED_ID_CHARS and huge["status"] == "not_found"

"""What the public API says about a job (the JSON shapes of ``GET /status``)."""

from __future__ import annotations

from shared.jobs import Job, JobStatus

STATUS_MESSAGES = {
    JobStatus.QUEUED: "Conversion job is queued.",
    JobStatus.PROCESSING: "Conversion in progress.",
    JobStatus.COMPLETED: "Conversion completed.",
    JobStatus.FAILED: "Conversion failed.",
}

NOT_FOUND_MESSAGE = "Job not found."
MAX_ECHOED_ID_CHARS = 64


def status_body(job: Job, host_url: str) -> dict:
    """``{"job_id", "status", "message"}`` plus ``download_url`` (completed) or ``error`` (failed)."""
    body = {"job_id": job.job_id, "status": job.status.value, "message": STATUS_MESSAGES[job.status]}
    if job.status is JobStatus.COMPLETED:
        body["download_url"] = f"{host_url.rstrip('/')}/download/{job.job_id}.mp3"
    if job.status is JobStatus.FAILED and job.error is not None:
        body["message"] = f"{STATUS_MESSAGES[job.status]} {job.error.message}"
        body["error"] = job.error.model_dump()
    return body


def not_found_body(job_id: str) -> dict:
    """The 404 body; a malformed id is echoed only in part."""
    return {"job_id": job_id[:MAX_ECHOED_ID_CHARS], "status": "not_found", "message": NOT_FOUND_MESSAGE}

"""What the public API says about a job (the JSON shapes of ``GET /status``)."""

from __future__ import annotations

from shared.job_views import download_url
from shared.jobs import Job, JobStatus
from shared.links import LinkSigner

STATUS_MESSAGES = {
    JobStatus.QUEUED: "Conversion job is queued.",
    JobStatus.PROCESSING: "Conversion in progress.",
    JobStatus.COMPLETED: "Conversion completed.",
    JobStatus.FAILED: "Conversion failed.",
    JobStatus.CANCELLED: "Conversion cancelled.",
    JobStatus.EXPIRED: "The converted file has expired and was deleted; convert the video again.",
}

NOT_FOUND_MESSAGE = "Job not found."
MAX_ECHOED_ID_CHARS = 64


def status_body(job: Job, host_url: str, links: LinkSigner | None = None) -> dict:
    """``{"job_id", "status", "message"}`` plus ``download_url`` (completed; signed with ``links``
    when given), ``error`` (failed),
    ``progress`` (processing, once reported), ``options`` (when the client set any) and ``cached``
    (true when an identical earlier upload's output served the job)."""
    body = {"job_id": job.job_id, "status": job.status.value, "message": STATUS_MESSAGES[job.status]}
    if job.options:
        body["options"] = job.options
    if job.status is JobStatus.PROCESSING and job.progress is not None:
        body["progress"] = job.progress
    if job.status is JobStatus.COMPLETED:
        body["download_url"] = download_url(job, host_url, links)
    if job.status is JobStatus.FAILED and job.error is not None:
        body["message"] = f"{STATUS_MESSAGES[job.status]} {job.error.message}"
        body["error"] = job.error.model_dump()
    if job.cached:
        body["cached"] = True
    return body


def not_found_body(job_id: str) -> dict:
    """The 404 body; a malformed id is echoed only in part."""
    return {"job_id": job_id[:MAX_ECHOED_ID_CHARS], "status": "not_found", "message": NOT_FOUND_MESSAGE}

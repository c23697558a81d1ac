"""The public view of a job (``JobSummary`` in the OpenAPI document): what ``GET /jobs`` lists,
what ``GET /events`` streams and what a webhook POSTs. Internal fields (storage keys, the email
address, the callback URL, notification attempts) never appear in it.

Times are Unix seconds, sizes bytes, durations seconds.
"""

from __future__ import annotations

from typing import Any

from shared.jobs import Job, JobStatus
from shared.links import LinkSigner


def job_summary(job: Job, base_url: str, links: LinkSigner | None = None) -> dict[str, Any]:
    """The job as clients see it; links start with ``base_url`` (the gateway as the client reached
    it) and are signed with ``links`` when given (API keys on)."""
    media = job.media
    summary: dict[str, Any] = {
        "job_id": job.job_id,
        "status": job.status.value,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "original_filename": job.original_filename,
        "cached": job.cached,
        "options": job.options,
        "input": {
            "container": media.container if media else None,
            "audio_codec": media.audio_codec if media else None,
            "video_codec": media.video_codec if media else None,
            "duration_seconds": media.duration_seconds if media else None,
            "size_bytes": job.input_size,
        },
        "output": output_facts(job),
    }
    if job.status is JobStatus.PROCESSING and job.progress is not None:
        summary["progress"] = job.progress
    if job.status is JobStatus.COMPLETED:
        summary["download_url"] = download_url(job, base_url, links)
    if job.status is JobStatus.FAILED and job.error is not None:
        summary["error"] = job.error.model_dump()
    return summary


def output_facts(job: Job) -> dict[str, Any] | None:
    """``{"format", "bitrate_kbps", "size_bytes", "duration_seconds"}`` once there is an output
    (also after it expired: the facts stay); the bitrate is the one asked for, else the average."""
    if job.output_size is None:
        return None
    bitrate = job.options.get("bitrate")
    if bitrate is None and job.output_duration_seconds:
        bitrate = round(job.output_size * 8 / job.output_duration_seconds / 1000)
    return {
        "format": job.output_extension,
        "bitrate_kbps": bitrate,
        "size_bytes": job.output_size,
        "duration_seconds": job.output_duration_seconds,
    }


def download_url(job: Job, base_url: str, links: LinkSigner | None = None) -> str:
    """Absolute URL of the job's download (``GET /download/<job_id>.<extension>``), with the
    ``expires`` and ``signature`` query of a signed link when ``links`` is given."""
    url = f"{base_url.rstrip('/')}/download/{job.job_id}.{job.output_extension}"
    return f"{url}?{links.query(job)}" if links is not None else url

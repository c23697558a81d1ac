"""``GET``/``HEAD /download/<job_id>.<ext>``: a completed job's output, with Range support
(``download.py``). A signed link (``?expires=&signature=``) stands in for the owner's key."""

from __future__ import annotations

from flask import Blueprint, request

from services.gateway.bootstrap import parts
from services.gateway.download import audio_response
from shared.errors import JobNotFound, SiphonError
from shared.filenames import download_name
from shared.jobs import Job, JobStatus, is_valid_job_id
from shared.links import LinkQuery
from shared.options import FORMATS_BY_EXTENSION

DOWNLOAD_REFUSALS = {JobStatus.FAILED: "job_failed", JobStatus.CANCELLED: "job_cancelled"}
"""The 409 code of ``/download`` for a job that will never have audio (else ``job_not_ready``)."""

downloads = Blueprint("downloads", __name__)


@downloads.route("/download/<path:name>", methods=["GET", "HEAD"])
def download(name: str):
    job_id, _, extension = name.rpartition(".")
    if extension not in FORMATS_BY_EXTENSION or not is_valid_job_id(job_id):
        raise JobNotFound("Job not found.")
    job = downloadable_job(job_id, extension)
    gateway = parts()
    size = job.output_size if job.output_size is not None else gateway.storage.size(job.output_key)
    return audio_response(
        gateway.storage,
        job.output_key,
        size,
        request,
        download_name(job.original_filename, extension, fallback_stem=job_id),
        FORMATS_BY_EXTENSION[extension].media_type,
        etag=f"{job_id}-{size}",
    )


def downloadable_job(job_id: str, extension: str) -> Job:
    """The completed job whose output this is, for the caller or for the signed link presented.

    Raises:
        JobNotFound: no such job or output, or not the caller's (404).
        LinkRefused: a signed link that does not match (403 ``invalid_signature``).
        SiphonError: the output expired (410 ``job_expired``), or there is none yet or ever (409).
    """
    gateway = parts()
    if "signature" in request.args:
        if gateway.links is None:
            raise JobNotFound("Job not found.")
        gateway.links.check(job_id, extension, LinkQuery(request.args.get("expires", ""), request.args["signature"]))
        job = gateway.metadata.get_job(job_id)
    else:
        job = gateway.jobs.get(job_id)
    if job.output_extension != extension:  # the job's output is another format: no such file
        raise JobNotFound("Job not found.")
    if job.status is JobStatus.EXPIRED:
        raise SiphonError(
            "The converted file has expired and was deleted; convert the video again.", code="job_expired", status=410
        )
    if job.status is not JobStatus.COMPLETED:
        code = DOWNLOAD_REFUSALS.get(job.status, "job_not_ready")
        raise SiphonError(f"The job is {job.status.value}; there is nothing to download.", code=code, status=409)
    return job

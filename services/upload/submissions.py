"""Submitting a file: ``POST /convert`` (multipart, the file part streamed into storage; or JSON
naming a direct upload) and ``POST /uploads`` (a presigned URL for a direct upload)."""

from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from services.upload import metrics
from services.upload.bootstrap import parts
from services.upload.receive import content_digest, parse_upload, received_head
from shared.errors import RequestRejected
from shared.jobs import Job, JobStatus
from shared.notifications import targets_from_form
from shared.options import options_from_form
from shared.quotas import QUOTA_SUBJECT_HEADER

MAX_FORM_PARTS = 64
"""Most multipart parts accepted in one request (werkzeug answers 413 beyond it)."""

SUBMITTED_MESSAGE = "Conversion job submitted successfully."

submissions = Blueprint("submissions", __name__)


@submissions.post("/uploads")
def begin_upload():
    return jsonify(parts().direct.begin(json_body(), quota_subject(), g.principal)), 201


@submissions.post("/convert")
def convert():
    if request.mimetype == "application/json":  # a direct upload's file, already in storage
        job = parts().direct.start(json_body(), quota_subject(), g.principal)
        return jsonify(job_id=job.job_id, status=job.status.value, message=SUBMITTED_MESSAGE), 202
    form, files = parse_upload(request, parts().intake.storage, MAX_FORM_PARTS)
    try:
        job = submit_multipart(form, files.get("file"))
    finally:
        for part in files.values():
            part.close()  # the staging or temp files werkzeug's parser wrote
    metrics.UPLOAD_BYTES.inc(job.input_size)
    return jsonify(submitted_body(job)), 202


def submit_multipart(form, upload) -> Job:
    """The job of a multipart upload: options and notification fields checked, the email limit
    charged, all before the file is stored.

    Raises:
        RequestRejected: no file part (400 ``missing_file``), a bad option or field (400), the file
            empty, not media or too large (400, 415, 413).
        RateLimited: the caller's emails per hour are used up (429).
        Unavailable: storage, the metadata service or RabbitMQ is down (503); nothing is kept.
    """
    if upload is None:
        raise RequestRejected("Send the video as a multipart/form-data part named 'file'.", code="missing_file")
    options = options_from_form(
        form, parts().intake.video_codecs
    )  # before anything is stored: a bad option keeps nothing
    targets = targets_from_form(form, parts().callbacks)
    if targets.email and quota_subject():  # before the file is stored: a refusal keeps nothing
        parts().quotas.charge("emails", quota_subject())
    return parts().intake.submit(
        upload.stream,
        upload.filename,
        options,
        targets=targets,
        content_sha256=content_digest(upload.stream),
        owner=g.principal.name,
        quota_subject=quota_subject(),
        head=received_head(upload.stream),
    )


def submitted_body(job: Job) -> dict:
    """The 202 body: ``{"job_id", "status": "queued", "message"}``, as the contract shows it. An
    upload identical to an earlier one adds ``"cached": true``; its job is already ``completed``,
    which its first /status says: clients written against the contract look for ``queued`` here."""
    body = {"job_id": job.job_id, "status": JobStatus.QUEUED.value, "message": SUBMITTED_MESSAGE}
    if job.cached:
        body["cached"] = True
    return body


def json_body() -> dict:
    """The request's JSON object.

    Raises:
        RequestRejected: the body is not a JSON object (400 ``invalid_json``).
    """
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise RequestRejected("Send a JSON object (Content-Type: application/json).", code="invalid_json")
    return body


def quota_subject() -> str | None:
    """The caller as the gateway named it (``X-Siphon-Quota-Subject``), or None when the request
    did not come through the gateway."""
    return request.headers.get(QUOTA_SUBJECT_HEADER) or None

"""The upload service's HTTP API (internal; the gateway forwards ``POST /convert`` here).

POST /convert             multipart/form-data with a ``file`` part and optional option fields
                          (``shared/options.py``) and notification fields (``email``, ``callback_url``:
                          ``shared/notifications.py``) → 202 {"job_id", "status": "queued", "message", "cached"?}
                          | 400 invalid_option, invalid_field
                          or JSON {"upload_id", "filename"?, <options>} for a direct upload (direct.py)
POST /uploads             JSON {"size"} → 201 {"upload_id", "upload_url", ...} | 413 | 501 not_supported
POST /jobs/<id>/retry     queue again a job that failed with storage_unavailable or disk_full
                          → 202 {"job_id", "status": "queued", "message"} | 404 | 409 job_not_retryable
"""

from __future__ import annotations

from flask import Flask, g, jsonify, request

from services.upload import metrics
from services.upload.bootstrap import make_intake
from services.upload.direct import DirectUploads
from services.upload.intake import Intake
from services.upload.receive import content_digest, parse_upload, received_head
from shared.auth import Authenticator, warn_if_open
from shared.broker import connect
from shared.callbacks import CallbackGuard
from shared.config import Settings, settings
from shared.errors import JobNotFound, RequestRejected
from shared.http import install_job_log_context, install_json_errors
from shared.jobs import Job, JobStatus, is_valid_job_id
from shared.metrics import install_metrics
from shared.notifications import targets_from_form
from shared.options import options_from_form
from shared.quotas import QUOTA_SUBJECT_HEADER, Quotas

MULTIPART_SLACK_BYTES = 64 * 1024
"""Room for multipart boundaries and small fields above MAX_UPLOAD_BYTES, bytes."""

MAX_FORM_PARTS = 64
"""Most multipart parts accepted in one request (werkzeug answers 413 beyond it)."""

SUBMITTED_MESSAGE = "Conversion job submitted successfully."
RESUBMITTED_MESSAGE = "Conversion job submitted again."


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


def create_app(
    s: Settings | None = None,
    intake: Intake | None = None,
    auth: Authenticator | None = None,
    quotas: Quotas | None = None,
) -> Flask:
    """The Flask app; tests pass their own settings, an intake built on fakes, or an authenticator.

    With API keys on, every route but the health checks needs the caller's key, which the gateway
    passes on as it received it: the upload service names a job's owner from the key itself, never
    from a header a client could write.
    """
    s = s or settings()
    intake = intake or make_intake(s)
    auth = auth or Authenticator.from_path(s.api_keys_file)
    warn_if_open(s.api_keys_file, "upload")
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=s.max_upload_bytes + MULTIPART_SLACK_BYTES)
    install_json_errors(app)
    install_job_log_context(app)
    install_metrics(app)
    quotas = quotas or Quotas.from_settings(s)
    direct = DirectUploads(
        intake,
        s.presigned_url_expiry_seconds,
        quotas,
        secret=s.download_link_secret.get_secret_value().encode() if s.download_link_secret else b"",
        key_names=auth.key_names,
    )
    callbacks = CallbackGuard(s.callback_allowed_hosts)  # the notifier checks again before each POST

    @app.before_request
    def _authenticate():
        if request.endpoint not in ("healthz", "readyz", "metrics"):
            g.principal = auth.principal(request.headers.get("Authorization"))

    @app.post("/uploads")
    def begin_upload():
        return jsonify(direct.begin(json_body(), quota_subject(), g.principal)), 201

    @app.post("/convert")
    def convert():
        if request.mimetype == "application/json":  # a direct upload's file, already in storage
            job = direct.start(json_body(), quota_subject(), g.principal)
            return jsonify(job_id=job.job_id, status=job.status.value, message=SUBMITTED_MESSAGE), 202
        form, files = parse_upload(request, intake.storage, MAX_FORM_PARTS)
        try:
            job = submit_multipart(form, files.get("file"))
        finally:
            for part in files.values():
                part.close()  # the staging or temp files werkzeug's parser wrote
        metrics.UPLOAD_BYTES.inc(job.input_size)
        return jsonify(submitted_body(job)), 202

    def submit_multipart(form, upload) -> Job:
        if upload is None:
            raise RequestRejected("Send the video as a multipart/form-data part named 'file'.", code="missing_file")
        options = options_from_form(form)  # before anything is stored: a bad option keeps nothing
        targets = targets_from_form(form, callbacks)
        if targets.email and quota_subject():  # before the file is stored: a refusal keeps nothing
            quotas.charge("emails", quota_subject())
        return intake.submit(
            upload.stream,
            upload.filename,
            options,
            targets=targets,
            content_sha256=content_digest(upload.stream),
            owner=g.principal.name,
            quota_subject=quota_subject(),
            head=received_head(upload.stream),
        )

    @app.post("/jobs/<job_id>/retry")
    def retry(job_id: str):
        if not is_valid_job_id(job_id):
            raise JobNotFound("Job not found.")
        job = intake.retry(job_id)
        return jsonify(job_id=job.job_id, status=job.status.value, message=RESUBMITTED_MESSAGE), 202

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok", auth=auth.mode)

    @app.get("/readyz")
    def readyz():
        intake.storage.check()
        connect(s).close()
        return jsonify(status="ready")

    return app

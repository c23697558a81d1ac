"""The upload service's HTTP API (internal; the gateway forwards ``POST /convert`` here).

    POST /convert             multipart/form-data with a ``file`` part → 202 {"job_id", "status", "message"}
    POST /jobs/<id>/retry     queue again a job that failed with storage_unavailable or disk_full
                              → 202 {"job_id", "status": "queued", "message"} | 404 | 409 job_not_retryable
"""

from __future__ import annotations

from flask import Flask, jsonify, request

from services.upload.intake import Intake
from services.upload.staging import staging_request_class
from shared.broker import ConfirmingPublisher, Topology, connect
from shared.config import Settings, settings
from shared.errors import JobNotFound, RequestRejected
from shared.http import install_json_errors
from shared.jobs import is_valid_job_id
from shared.metadata_client import MetadataClient
from shared.storage import make_storage

MULTIPART_SLACK_BYTES = 64 * 1024
"""Room for multipart boundaries and small fields above MAX_UPLOAD_BYTES, bytes."""

MAX_FORM_PARTS = 64
"""Most multipart parts accepted in one request (werkzeug answers 413 beyond it)."""

SUBMITTED_MESSAGE = "Conversion job submitted successfully."
RESUBMITTED_MESSAGE = "Conversion job submitted again."


def make_intake(s: Settings) -> Intake:
    """An intake wired to the real storage, metadata service and RabbitMQ (connects on first use)."""
    return Intake(
        storage=make_storage(s),
        metadata=MetadataClient(s.metadata_url, s.http_timeout_seconds),
        publisher=ConfirmingPublisher(s, Topology.from_settings(s)),
        topology=Topology.from_settings(s),
        max_upload_bytes=s.max_upload_bytes,
    )


def create_app(s: Settings | None = None, intake: Intake | None = None) -> Flask:
    """The Flask app; tests pass their own settings or an intake built on fakes."""
    s = s or settings()
    intake = intake or make_intake(s)
    app = Flask(__name__)
    app.request_class = staging_request_class(intake.storage)
    app.config.update(MAX_CONTENT_LENGTH=s.max_upload_bytes + MULTIPART_SLACK_BYTES, MAX_FORM_PARTS=MAX_FORM_PARTS)
    install_json_errors(app)

    @app.post("/convert")
    def convert():
        upload = request.files.get("file")
        if upload is None:
            raise RequestRejected("Send the video as a multipart/form-data part named 'file'.", code="missing_file")
        job = intake.submit(upload.stream, upload.filename)
        return jsonify(job_id=job.job_id, status=job.status.value, message=SUBMITTED_MESSAGE), 202

    @app.post("/jobs/<job_id>/retry")
    def retry(job_id: str):
        if not is_valid_job_id(job_id):
            raise JobNotFound("Job not found.")
        job = intake.retry(job_id)
        return jsonify(job_id=job.job_id, status=job.status.value, message=RESUBMITTED_MESSAGE), 202

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    @app.get("/readyz")
    def readyz():
        intake.storage.check()
        connect(s).close()
        return jsonify(status="ready")

    return app

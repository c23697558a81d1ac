"""The public HTTP API.

    POST /convert                  multipart ``file`` → 202 {"job_id", "status": "queued", "message"}
    GET  /status/<job_id>          → 200 {"job_id", "status", "message", ...} | 404
         ?wait=<seconds>           ... answered as soon as the job is completed or failed (long-poll)
    GET  /download/<job_id>.mp3    → 200/206 audio/mpeg | 404 | 409 (not completed)
    GET  /healthz, /readyz
    GET  /, /docs, /openapi.json   the web page, the API docs page, the OpenAPI document (pages.py)
"""

from __future__ import annotations

from flask import Flask, Response, jsonify, request

from services.gateway.download import audio_response
from services.gateway.pages import load_openapi, pages_blueprint
from services.gateway.upstream import UploadService, limited_chunks
from services.gateway.views import not_found_body, status_body
from shared.config import Settings, settings
from shared.errors import JobNotFound, RequestRejected, SiphonError
from shared.filenames import download_name
from shared.http import HTTP_CODES, error_response, install_json_errors
from shared.jobs import JobStatus, is_valid_job_id
from shared.metadata_client import MetadataClient
from shared.storage import Storage, make_storage

MULTIPART_SLACK_BYTES = 64 * 1024
"""Room for multipart boundaries and small fields above MAX_UPLOAD_BYTES, bytes."""

UPLOAD_READ_TIMEOUT_SECONDS = 300
"""How long the gateway waits on the upload service between bytes, seconds."""

MAX_STATUS_WAIT_SECONDS = 30.0
"""Longest ``GET /status/<id>?wait=`` long-poll, seconds; a larger ``wait`` is cut to this."""


def status_wait_seconds(raw: str | None) -> float:
    """The ``wait`` query parameter in seconds: 0 when absent, at most :data:`MAX_STATUS_WAIT_SECONDS`.

    Raises:
        RequestRejected: not a finite number ≥ 0 (400 ``invalid_wait``).
    """
    if raw is None:
        return 0.0
    try:
        wait = float(raw)
    except ValueError:
        wait = -1.0
    if not 0 <= wait < float("inf"):
        raise RequestRejected("'wait' must be a number of seconds, 0 or more.", code="invalid_wait")
    return min(wait, MAX_STATUS_WAIT_SECONDS)


def create_app(s: Settings | None = None, metadata: MetadataClient | None = None, storage: Storage | None = None,
               upload: UploadService | None = None) -> Flask:
    """The Flask app; tests pass their own settings or fakes."""
    s = s or settings()
    metadata = metadata or MetadataClient(s.metadata_url, s.http_timeout_seconds)
    storage = storage or make_storage(s)
    upload = upload or UploadService(s.upload_url, s.http_timeout_seconds, UPLOAD_READ_TIMEOUT_SECONDS)
    body_limit = s.max_upload_bytes + MULTIPART_SLACK_BYTES
    app = Flask(__name__)
    install_json_errors(app)
    app.register_blueprint(pages_blueprint(load_openapi()))  # GET /, /docs, /openapi.json

    @app.post("/convert")
    def convert():
        if request.content_length is not None and request.content_length > body_limit:
            raise RequestRejected(f"The upload is larger than the {s.max_upload_bytes}-byte limit.",
                                  code="file_too_large", status=413)
        if request.mimetype != "multipart/form-data":
            raise RequestRejected("Send the video as multipart/form-data with a part named 'file'.",
                                  code="missing_file")
        upstream = upload.forward(limited_chunks(request.stream, body_limit), request.content_type)
        if upstream.headers.get("Content-Type", "").startswith("application/json"):
            return Response(upstream.content, status=upstream.status_code, mimetype="application/json")
        return error_response(upstream.status_code, HTTP_CODES.get(upstream.status_code, "upload_error"),
                              "The upload service could not take the file.")

    @app.get("/status/<path:job_id>")
    def status(job_id: str):
        wait = status_wait_seconds(request.args.get("wait"))
        try:
            if not is_valid_job_id(job_id):
                job = None
            else:
                job = metadata.get_job(job_id, wait=wait) if wait else metadata.get_job(job_id)
        except JobNotFound:
            job = None
        if job is None:
            return jsonify(not_found_body(job_id)), 404
        return jsonify(status_body(job, request.host_url))

    @app.route("/download/<path:name>", methods=["GET", "HEAD"])
    def download(name: str):
        job_id, _, extension = name.rpartition(".")
        if extension != "mp3" or not is_valid_job_id(job_id):
            raise JobNotFound("Job not found.")
        job = metadata.get_job(job_id)
        if job.status is not JobStatus.COMPLETED:
            code = "job_failed" if job.status is JobStatus.FAILED else "job_not_ready"
            raise SiphonError(f"The job is {job.status.value}; there is nothing to download.", code=code, status=409)
        size = job.output_size if job.output_size is not None else storage.size(job.output_key)
        filename = download_name(job.original_filename, "mp3", fallback_stem=job_id)
        return audio_response(storage, job.output_key, size, request, filename, "audio/mpeg",
                              etag=f"{job_id}-{size}")

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    @app.get("/readyz")
    def readyz():
        storage.check()
        return jsonify(status="ready")

    return app

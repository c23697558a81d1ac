"""The public HTTP API.

POST /convert                  multipart ``file`` → 202 {"job_id", "status": "queued", "message"}
                               or JSON {"upload_id", ...options}: a direct upload's file, already in S3
POST /uploads                  JSON {"size"} → 201 {"upload_id", "upload_url", ...}: a presigned PUT URL
GET  /status/<job_id>          → 200 {"job_id", "status", "message", ...} | 404
     ?wait=<seconds>           ... answered as soon as the job is completed or failed (long-poll)
GET  /download/<job_id>.<ext>  → 200/206 the job's format (mp3: audio/mpeg) | 404 | 409 (not completed)
DELETE /jobs/<job_id>          → 200 {"job_id", "status": "cancelled", "message"} | 404 | 409 job_finished
POST /cancel/<job_id>          the same, for clients without DELETE
POST /jobs/<job_id>/retry      → 202 queued again | 404 | 409 job_not_retryable (failed jobs whose
                               error.code is storage_unavailable or disk_full)
GET  /jobs                     ?status=&limit=&cursor= → 200 {"jobs": [JobSummary], "next_cursor"}, newest first
GET  /events                   text/event-stream of every job change (Last-Event-ID resumes); events.py
GET  /events/<job_id>          ... of one job's changes, until it ends | 204 (nothing left) | 404
GET  /healthz, /readyz, /metrics (Prometheus: error answers by code, bytes downloaded)
GET  /, /docs, /openapi.json   the web page, the API docs page, the OpenAPI document (pages.py)

With API_KEYS_FILE set every route but the last two lines and signed download links needs
``Authorization: Bearer <key>``, and a job is seen only by its owner's key and admin keys (access.py).
"""

from __future__ import annotations

import redis
from flask import Flask, Response, jsonify, request

from services.gateway import metrics
from services.gateway.access import JobAccess, caller, install_authentication
from services.gateway.download import audio_response
from services.gateway.events import ChangeRelay, event_stream_response, sse_event
from services.gateway.pages import load_openapi, pages_blueprint
from services.gateway.quotas import SubmissionLimits, install_quotas, quota_headers, rate_limit_headers
from services.gateway.upstream import UploadService, limited_chunks, read_json_body
from services.gateway.views import not_found_body, status_body
from shared.auth import Authenticator, warn_if_open
from shared.changes import Change, stream_id_key
from shared.config import Settings, settings
from shared.errors import JobAlreadyFinished, JobNotFound, RequestRejected, SiphonError
from shared.filenames import download_name
from shared.http import HTTP_CODES, error_response, install_job_log_context, install_json_errors
from shared.job_views import job_summary
from shared.jobs import Job, JobStatus, is_valid_job_id
from shared.links import LinkQuery, LinkSigner, link_signer
from shared.metadata_client import MetadataClient
from shared.metrics import install_metrics
from shared.options import FORMATS_BY_EXTENSION
from shared.quotas import Quotas
from shared.storage import Storage, make_storage

MULTIPART_SLACK_BYTES = 64 * 1024
"""Room for multipart boundaries and small fields above MAX_UPLOAD_BYTES, bytes."""

UPLOAD_READ_TIMEOUT_SECONDS = 300
"""How long the gateway waits on the upload service between bytes, seconds."""

MAX_STATUS_WAIT_SECONDS = 30.0
"""Longest ``GET /status/<id>?wait=`` long-poll, seconds; a larger ``wait`` is cut to this."""


DOWNLOAD_REFUSALS = {JobStatus.FAILED: "job_failed", JobStatus.CANCELLED: "job_cancelled"}
"""The 409 code of ``/download`` for a job that will never have audio (else ``job_not_ready``)."""


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


def upload_answer(upstream) -> Response:
    """The upload service's JSON answer, passed on as it is; anything else becomes a JSON error."""
    if upstream.headers.get("Content-Type", "").startswith("application/json"):
        return Response(
            upstream.content,
            status=upstream.status_code,
            mimetype="application/json",
            headers=rate_limit_headers(upstream.headers),
        )
    return error_response(
        upstream.status_code,
        HTTP_CODES.get(upstream.status_code, "upload_error"),
        "The upload service could not take the file.",
    )


def last_event_id(raw: str | None) -> str | None:
    """The ``Last-Event-ID`` a reconnecting client sent (a change feed id), or None.

    Raises:
        RequestRejected: it is not one this server sends (400 ``invalid_last_event_id``).
    """
    if not raw:
        return None
    if stream_id_key(raw) is None:
        raise RequestRejected("'Last-Event-ID' is not an event id this server sent.", code="invalid_last_event_id")
    return raw.strip()


def render_change(
    change: Change, host_url: str, job_id: str | None = None, links: LinkSigner | None = None, owner: str | None = None
) -> str | None:
    """A change as an SSE event (``job``: the job's summary; ``deleted``: its id), or None when
    the stream is about another job, or (``owner`` given: a caller who is no admin) another
    owner's; such a caller is not told of deletions (a rolled-back upload, whose id no client got)."""
    if job_id is not None and change.job_id != job_id:
        return None
    if change.kind == "deleted":
        return sse_event(change.id, "deleted", {"job_id": change.job_id}) if owner is None else None
    job = change.job
    if owner is not None and job.owner != owner:
        return None
    return sse_event(change.id or None, "job", job_summary(job, host_url, links))


def visible_owner() -> str | None:
    """Whose jobs the caller lists and streams: its key's name, or None (every job) for an admin
    and in open mode."""
    principal = caller()
    return None if principal.admin else principal.name


def ends_job_stream(change: Change) -> bool:
    """Whether ``/events/<job_id>`` ends after this change: the job is over (or was rolled back)."""
    return change.kind == "deleted" or change.job.status.is_terminal


def authorization() -> dict[str, str]:
    """The caller's ``Authorization`` header, to pass on to the upload service (which names a
    job's owner from the key itself); empty when the request has none."""
    value = request.headers.get("Authorization")
    return {"Authorization": value} if value else {}


def upstream_headers() -> dict[str, str]:
    """The headers a submission carries to the upload service: the caller's ``Authorization`` and
    the gateway's quota subject (``quotas.py``)."""
    return {**authorization(), **quota_headers()}


def make_relay(s: Settings) -> ChangeRelay:
    """The change relay on the configured Redis (connects when the first stream opens)."""
    client = redis.Redis.from_url(s.redis_url, socket_timeout=10, socket_connect_timeout=2, health_check_interval=30)
    return ChangeRelay(
        client, s.redis_prefix, s.events_heartbeat_seconds, s.events_max_stream_seconds, s.events_max_clients
    )


def create_app(
    s: Settings | None = None,
    metadata: MetadataClient | None = None,
    storage: Storage | None = None,
    upload: UploadService | None = None,
    relay: ChangeRelay | None = None,
    auth: Authenticator | None = None,
    quotas: Quotas | None = None,
) -> Flask:
    """The Flask app; tests pass their own settings or fakes."""
    s = s or settings()
    auth = auth or Authenticator.from_path(s.api_keys_file)
    warn_if_open(s.api_keys_file, "gateway")
    links = link_signer(s)
    relay = relay or make_relay(s)
    metadata = metadata or MetadataClient(s.metadata_url, s.http_timeout_seconds)
    storage = storage or make_storage(s)
    upload = upload or UploadService(s.upload_url, s.http_timeout_seconds, UPLOAD_READ_TIMEOUT_SECONDS)
    jobs = JobAccess(metadata)
    body_limit = s.max_upload_bytes + MULTIPART_SLACK_BYTES
    app = Flask(__name__)
    install_authentication(app, auth)
    install_json_errors(app)
    install_job_log_context(app)
    install_metrics(app)
    app.after_request(metrics.count_error_answer)
    app.register_blueprint(pages_blueprint(load_openapi()))  # GET /, /docs, /openapi.json
    quotas = quotas or Quotas.from_settings(s)
    install_quotas(app, SubmissionLimits(quotas, metadata, s.trusted_proxies, s.quota_unfinished_jobs, body_limit))

    @app.post("/convert")
    def convert():
        if request.content_length is not None and request.content_length > body_limit:
            raise RequestRejected(
                f"The upload is larger than the {s.max_upload_bytes}-byte limit.", code="file_too_large", status=413
            )
        if request.mimetype == "application/json":  # a direct upload: the file is in storage already
            return upload_answer(upload.post_json("/convert", read_json_body(request.stream), upstream_headers()))
        if request.mimetype != "multipart/form-data":
            raise RequestRejected(
                "Send the video as multipart/form-data with a part named 'file'.", code="missing_file"
            )
        return upload_answer(
            upload.forward(limited_chunks(request.stream, body_limit), request.content_type, upstream_headers())
        )

    @app.post("/uploads")
    def begin_upload():
        return upload_answer(upload.post_json("/uploads", read_json_body(request.stream), upstream_headers()))

    @app.get("/status/<path:job_id>")
    def status(job_id: str):
        wait = status_wait_seconds(request.args.get("wait"))
        try:
            job = jobs.get(job_id, wait)
        except JobNotFound:
            return jsonify(not_found_body(job_id)), 404
        return jsonify(status_body(job, request.host_url, links))

    @app.route("/download/<path:name>", methods=["GET", "HEAD"])
    def download(name: str):
        job_id, _, extension = name.rpartition(".")
        if extension not in FORMATS_BY_EXTENSION or not is_valid_job_id(job_id):
            raise JobNotFound("Job not found.")
        if "signature" in request.args:  # a signed link stands in for the owner's key
            if links is None:
                raise JobNotFound("Job not found.")
            links.check(job_id, extension, LinkQuery(request.args.get("expires", ""), request.args["signature"]))
            job = metadata.get_job(job_id)
        else:
            job = jobs.get(job_id)
        if job.output_extension != extension:  # the job's audio is another format: no such file
            raise JobNotFound("Job not found.")
        if job.status is JobStatus.EXPIRED:
            raise SiphonError(
                "The converted file has expired and was deleted; convert the video again.",
                code="job_expired",
                status=410,
            )
        if job.status is not JobStatus.COMPLETED:
            code = DOWNLOAD_REFUSALS.get(job.status, "job_not_ready")
            raise SiphonError(f"The job is {job.status.value}; there is nothing to download.", code=code, status=409)
        size = job.output_size if job.output_size is not None else storage.size(job.output_key)
        filename = download_name(job.original_filename, extension, fallback_stem=job_id)
        return audio_response(
            storage,
            job.output_key,
            size,
            request,
            filename,
            FORMATS_BY_EXTENSION[extension].media_type,
            etag=f"{job_id}-{size}",
        )

    @app.delete("/jobs/<job_id>")  # not <path:>: that would also claim /jobs/<id>/retry for DELETE
    @app.post("/cancel/<path:job_id>")
    def cancel(job_id: str):
        try:
            jobs.check(job_id)
            job = metadata.cancel_job(job_id) if is_valid_job_id(job_id) else None
        except JobNotFound:
            job = None
        if job is None:
            return jsonify(not_found_body(job_id)), 404
        if job.status is not JobStatus.CANCELLED:
            raise JobAlreadyFinished(f"The job is {job.status.value}; it can no longer be cancelled.")
        return jsonify(status_body(job, request.host_url, links))

    @app.post("/jobs/<path:job_id>/retry")
    def retry(job_id: str):
        try:
            if not is_valid_job_id(job_id):
                raise JobNotFound("Job not found.")
            jobs.check(job_id)
        except JobNotFound:
            return jsonify(not_found_body(job_id)), 404
        return upload_answer(upload.post_json(f"/jobs/{job_id}/retry", b"{}", authorization()))

    @app.get("/jobs")
    def list_jobs():
        for name in ("status", "limit", "cursor"):
            if request.args.get(name) == "":
                raise RequestRejected(f"'{name}' is empty; leave it out instead.", code=f"invalid_{name}")
        page = metadata.list_jobs(
            request.args.get("status"), request.args.get("limit"), request.args.get("cursor"), visible_owner()
        )
        listed = [job_summary(Job.model_validate(job), request.host_url, links) for job in page["jobs"]]
        return jsonify(jobs=listed, next_cursor=page["next_cursor"])

    @app.get("/events")
    def events():
        last_id = last_event_id(request.headers.get("Last-Event-ID") or request.args.get("last_event_id"))
        subscription = relay.open()
        try:
            replay = relay.history(last_id) if last_id else []
        except BaseException:
            relay.close(subscription)
            raise
        host_url, owner = request.host_url, visible_owner()
        body = relay.stream(
            subscription, replay, lambda change: render_change(change, host_url, links=links, owner=owner), last_id
        )
        return event_stream_response(body, lambda: relay.close(subscription), request.environ)

    @app.get("/events/<path:job_id>")
    def job_events(job_id: str):
        if not is_valid_job_id(job_id):
            return jsonify(not_found_body(job_id)), 404
        last_id = last_event_id(request.headers.get("Last-Event-ID") or request.args.get("last_event_id"))
        subscription = relay.open()  # before reading the job: no change can fall in between
        try:
            start_id = relay.latest_id()
            job = jobs.get(job_id)
            if last_id:
                replay = [change for change in relay.history(last_id) if change.job_id == job_id]
                if not replay and job.status.is_terminal:  # it ended and the client saw it: stop reconnecting
                    relay.close(subscription)
                    return Response(status=204)
            else:  # start with the job as it is, under the newest change's id
                replay = [Change(start_id or "", "job", job_id, job.model_dump_json())]
        except JobNotFound:
            relay.close(subscription)
            return jsonify(not_found_body(job_id)), 404
        except BaseException:
            relay.close(subscription)
            raise
        host_url = request.host_url
        body = relay.stream(
            subscription,
            replay,
            lambda change: render_change(change, host_url, job_id, links),
            last_id,
            ends=lambda change: change.job_id == job_id and ends_job_stream(change),
        )
        return event_stream_response(body, lambda: relay.close(subscription), request.environ)

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok", auth=auth.mode)

    @app.get("/readyz")
    def readyz():
        storage.check()
        return jsonify(status="ready")

    return app

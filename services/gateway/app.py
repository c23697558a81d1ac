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

from flask import Flask

from services.gateway import metrics
from services.gateway.access import install_authentication
from services.gateway.bootstrap import EXTENSION, GatewayParts, gateway_parts
from services.gateway.downloads import downloads
from services.gateway.health import health
from services.gateway.jobs import jobs
from services.gateway.live import live
from services.gateway.pages import load_openapi, pages_blueprint, with_offered_formats
from services.gateway.quotas import install_quotas
from services.gateway.status_reads import StatusMiddleware
from services.gateway.submissions import submissions
from shared.auth import warn_if_open
from shared.config import Settings, settings
from shared.http import install_job_log_context, install_json_errors
from shared.metrics import install_metrics
from shared.video_codecs import offered_video_codecs


def create_app(s: Settings | None = None, **overrides) -> Flask:
    """The Flask app on :func:`~services.gateway.bootstrap.gateway_parts` (tests pass their own
    settings, or fakes by the parts' names: ``metadata``, ``storage``, ``upload``, ``relay``,
    ``auth``, ``quotas``, ``records``)."""
    s = s or settings()
    warn_if_open(s.api_keys_file, "gateway")
    return app_on(gateway_parts(s, **overrides))


def app_on(gateway: GatewayParts) -> Flask:
    """The Flask app serving ``gateway``'s parts: hooks in the order they must run (the caller's key,
    then its limits), then one blueprint per resource; in front of it all, the ``/status`` answers
    given without the metadata service (``status_reads.py``)."""
    app = Flask(__name__)
    app.extensions[EXTENSION] = gateway
    install_authentication(app, gateway.auth)
    install_json_errors(app)
    install_job_log_context(app)
    install_metrics(app)
    app.after_request(metrics.count_error_answer)
    install_quotas(app, gateway.limits)
    codecs = offered_video_codecs(gateway.settings.video_codecs, gateway.settings.ffmpeg_path)
    app.register_blueprint(pages_blueprint(with_offered_formats(load_openapi(), codecs)))  # GET /, /docs, /openapi.json
    for blueprint in (submissions, jobs, downloads, live, health):
        app.register_blueprint(blueprint)
    app.wsgi_app = StatusMiddleware(app.wsgi_app, gateway.status, gateway.auth)
    return app

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

from flask import Flask, g, request

from services.upload.bootstrap import EXTENSION, upload_parts
from services.upload.intake import Intake
from services.upload.job_routes import jobs
from services.upload.submissions import SUBMITTED_MESSAGE, submissions
from shared.auth import Authenticator, warn_if_open
from shared.config import Settings, settings
from shared.http import install_job_log_context, install_json_errors
from shared.metrics import install_metrics
from shared.quotas import Quotas

__all__ = ["SUBMITTED_MESSAGE", "create_app"]

MULTIPART_SLACK_BYTES = 64 * 1024
"""Room for multipart boundaries and small fields above MAX_UPLOAD_BYTES, bytes."""

FREE_ENDPOINTS = frozenset({"jobs.healthz", "jobs.readyz", "metrics"})
"""Endpoints that need no API key."""


def create_app(
    s: Settings | None = None,
    intake: Intake | None = None,
    auth: Authenticator | None = None,
    quotas: Quotas | None = None,
) -> Flask:
    """The Flask app; tests pass their own settings, an intake built on fakes, an authenticator or limits.

    With API keys on, every route but the health checks needs the caller's key, which the gateway
    passes on as it received it: the upload service names a job's owner from the key itself, never
    from a header a client could write.
    """
    s = s or settings()
    upload = upload_parts(s, intake, auth, quotas)
    warn_if_open(s.api_keys_file, "upload")
    app = Flask(__name__)
    app.extensions[EXTENSION] = upload
    app.config.update(MAX_CONTENT_LENGTH=s.max_upload_bytes + MULTIPART_SLACK_BYTES)
    install_json_errors(app)
    install_job_log_context(app)
    install_metrics(app)

    @app.before_request
    def _authenticate():
        if request.endpoint not in FREE_ENDPOINTS:
            g.principal = upload.auth.principal(request.headers.get("Authorization"))

    app.register_blueprint(submissions)
    app.register_blueprint(jobs)
    return app

"""``GET /unfinished`` (a caller's queued and processing jobs, for ``QUOTA_UNFINISHED_JOBS``),
``GET /healthz`` and ``GET /readyz`` (Redis and storage answer)."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from services.metadata.api import parts
from shared.errors import RequestRejected

service = Blueprint("service", __name__)


@service.get("/unfinished")
def count_unfinished():
    """``?subject=``: ``{"subject", "count"}``, its queued and processing jobs (QUOTA_UNFINISHED_JOBS)."""
    subject = request.args.get("subject") or ""
    if not subject:
        raise RequestRejected("'subject' is missing.", code="invalid_subject")
    return jsonify(subject=subject, count=parts().unfinished.count(subject))


@service.get("/healthz")
def healthz():
    return jsonify(status="ok", auth="keys" if parts().settings.api_keys_file is not None else "off")


@service.get("/readyz")
def readyz():
    parts().store.check()
    return jsonify(status="ready")

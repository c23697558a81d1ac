"""``GET /unfinished`` (a caller's queued and processing jobs, for ``QUOTA_UNFINISHED_JOBS``),
``GET /healthz`` and ``GET /readyz`` (Redis and storage answer)."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from services.metadata.api import parts
from shared.errors import RequestRejected

service = Blueprint("service", __name__)


@service.get("/unfinished")
def count_unfinished():
    """``?subject=[&limit=]``: ``{"subject", "count"}``, its queued and processing jobs
    (QUOTA_UNFINISHED_JOBS). With ``limit`` (a whole number ≥ 1), a count under it may be too high
    but stays under it, and a count at or over it is exact (``UnfinishedJobs.count``); 400
    ``invalid_subject`` or ``invalid_limit`` otherwise."""
    subject = request.args.get("subject") or ""
    if not subject:
        raise RequestRejected("'subject' is missing.", code="invalid_subject")
    limit = unfinished_limit(request.args.get("limit"))
    return jsonify(subject=subject, count=parts().unfinished.count(subject, limit))


def unfinished_limit(raw: str | None) -> int | None:
    """``limit`` of ``GET /unfinished``: None when absent; 400 ``invalid_limit`` unless a whole number ≥ 1."""
    if raw is None:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise RequestRejected("'limit' must be a whole number of at least 1.", code="invalid_limit")
    return int(raw)


@service.get("/healthz")
def healthz():
    return jsonify(status="ok", auth="keys" if parts().settings.api_keys_file is not None else "off")


@service.get("/readyz")
def readyz():
    parts().store.check()
    return jsonify(status="ready")

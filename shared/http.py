"""HTTP plumbing the Flask services share: JSON error bodies, never an HTML page or a traceback.

Every error answer is ``{"error": {"code": "...", "message": "..."}}`` with a specific status; an
error may add keys of its own (``SiphonError.to_dict``: ``invalid_option`` names ``field`` and ``allowed``).
"""

from __future__ import annotations

import contextlib
import logging

from flask import Flask, g, jsonify, request
from werkzeug.exceptions import HTTPException

from shared.errors import SiphonError
from shared.logs import job_context, job_id_in_path

log = logging.getLogger(__name__)

HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    411: "length_required",
    413: "file_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}
"""JSON error code for werkzeug's own HTTP errors, by status."""


def error_response(status: int, code: str, message: str, **details: str):
    """A Flask response ``(json, status)`` with the standard error body (plus ``details``, e.g. an
    ``invalid_option``'s ``field`` and ``allowed``)."""
    return jsonify({"error": {**details, "code": code, "message": message}}), status


def install_json_errors(app: Flask) -> None:
    """Answer every werkzeug HTTP error and every :class:`SiphonError` with the JSON body.

    Anything else is a bug: it is logged with its traceback and answered 500 without one.
    """

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        status = exc.code or 500
        response, _ = error_response(status, HTTP_CODES.get(status, "http_error"), exc.description or exc.name)
        # Keep the headers the error carries: a 405 must list the allowed methods in Allow (RFC 9110 §15.5.6).
        response.headers.extend((k, v) for k, v in exc.get_headers() if k.lower() != "content-type")
        return response, status

    @app.errorhandler(SiphonError)
    def _siphon_error(exc: SiphonError):
        if exc.status >= 500:
            log.warning("%s: %s", exc.code, exc.message)
        response, status = error_response(exc.status, **exc.to_dict())
        response.headers.update(exc.headers())
        return response, status

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error")
        return error_response(500, "internal_error", "Internal error; the failure was logged.")


def install_job_log_context(app: Flask) -> None:
    """Tag every record logged while handling a request whose path names a job (``/status/<job_id>``,
    ``/download/<job_id>.mp3``, ``/jobs/<job_id>``) with that ``job_id``."""

    @app.before_request
    def _enter_job_context():
        job_id = job_id_in_path(request.path)
        if job_id is not None:
            g.job_log_context = contextlib.ExitStack()
            g.job_log_context.enter_context(job_context(job_id))

    @app.teardown_request
    def _leave_job_context(exc):
        context = g.pop("job_log_context", None)
        if context is not None:
            context.close()

"""HTTP plumbing the Flask services share: JSON error bodies, never an HTML page or a traceback.

Every error answer is ``{"error": {"code": "...", "message": "..."}}`` with a specific status.
"""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from shared.errors import SiphonError

log = logging.getLogger(__name__)

HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    411: "length_required",
    413: "file_too_large",
    415: "unsupported_media_type",
    500: "internal_error",
    503: "service_unavailable",
}
"""JSON error code for werkzeug's own HTTP errors, by status."""


def error_response(status: int, code: str, message: str):
    """A Flask response ``(json, status)`` with the standard error body."""
    return jsonify({"error": {"code": code, "message": message}}), status


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
        return error_response(exc.status, exc.code, exc.message)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error")
        return error_response(500, "internal_error", "Internal error; the failure was logged.")

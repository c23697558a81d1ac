"""Streaming a stored MP3 with HTTP Range support (RFC 9110 §14: ``Range``, 206, 416)."""

from __future__ import annotations

from flask import Request, Response
from werkzeug.datastructures import Range

from services.gateway.metrics import counted_download
from shared.filenames import content_disposition
from shared.http import error_response
from shared.storage import Storage


def audio_response(
    storage: Storage, key: str, size: int, request: Request, filename: str, mimetype: str, etag: str
) -> Response:
    """A 200, 206 or 416 response streaming ``key`` (``size`` bytes) as an attachment."""
    headers = {"Accept-Ranges": "bytes", "Content-Disposition": content_disposition(filename)}
    start, stop, status = 0, size, 200
    if _range_applies(request, etag):
        byte_range = _satisfiable_range(request.range, size)
        if byte_range is None:
            response, status = error_response(
                416, "range_not_satisfiable", f"The requested range lies outside the file's {size} bytes."
            )
            response.status_code = status
            response.headers["Content-Range"] = f"bytes */{size}"
            return response
        (start, stop), status = byte_range, 206
        headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
    headers["Content-Length"] = str(stop - start)
    body = counted_download(storage.stream(key, start, stop)) if request.method != "HEAD" else iter(())
    response = Response(body, status=status, mimetype=mimetype, headers=headers, direct_passthrough=True)
    response.set_etag(etag)
    return response


def _range_applies(request: Request, etag: str) -> bool:
    """Whether to answer ``Range`` at all: one byte range, and no ``If-Range`` or one strongly matching ``etag``.

    RFC 9110 §13.1.5: If-Range needs a strong match, and with no Last-Modified sent a date never
    matches; §14.2: a Range in another unit, or several ranges, may be ignored (200, whole file).
    """
    byte_range = request.range
    if byte_range is None or byte_range.units != "bytes" or len(byte_range.ranges) != 1:
        return False
    return request.headers.get("If-Range", f'"{etag}"') == f'"{etag}"'


def _satisfiable_range(byte_range: Range, size: int) -> tuple[int, int] | None:
    """``(start, stop)`` of the range within ``size`` bytes, or None when none of it lies in the file.

    A suffix longer than the file means the whole file (RFC 9110 §14.1.2), not 416.
    """
    start, stop = byte_range.ranges[0]
    if stop is None and start < 0:
        start = max(size + start, 0)
    stop = size if stop is None else min(stop, size)
    return (start, stop) if start < stop else None

"""Streaming a stored MP3 with HTTP Range support (RFC 9110 §14: ``Range``, 206, 416)."""

from __future__ import annotations

from flask import Request, Response

from shared.filenames import content_disposition
from shared.storage import Storage


def audio_response(storage: Storage, key: str, size: int, request: Request, filename: str, mimetype: str,
                   etag: str) -> Response:
    """A 200, 206 or 416 response streaming ``key`` (``size`` bytes) as an attachment."""
    headers = {"Accept-Ranges": "bytes", "Content-Disposition": content_disposition(filename)}
    start, stop, status = 0, size, 200
    if request.range is not None and request.if_range.etag in (None, etag):
        byte_range = request.range.range_for_length(size)
        if byte_range is None:
            headers["Content-Range"] = f"bytes */{size}"
            return Response(status=416, headers=headers)
        (start, stop), status = byte_range, 206
        headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
    headers["Content-Length"] = str(stop - start)
    body = storage.stream(key, start, stop) if request.method != "HEAD" else iter(())
    response = Response(body, status=status, mimetype=mimetype, headers=headers, direct_passthrough=True)
    response.set_etag(etag)
    return response

"""The gateway's Prometheus metrics (served at ``/metrics``; see ``shared/metrics.py``).

Both are counted without a network call: an error answer's code is read from its own JSON body,
and a download's bytes are added up as they are sent, once per download.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from flask import Response
from prometheus_client import Counter

from shared.http import HTTP_CODES

HTTP_ERRORS = Counter(
    "siphon_http_errors_total", "Error answers (4xx, 5xx) of the public API, by JSON error code.", ["code"]
)
DOWNLOAD_BYTES = Counter("siphon_download_bytes_total", "Bytes of MP3 sent to clients by GET /download.")


def count_error_answer(response: Response) -> Response:
    """Flask ``after_request`` hook: count a 4xx/5xx answer under its ``error.code``."""
    if response.status_code >= 400:
        HTTP_ERRORS.labels(error_code_of(response)).inc()
    return response


def error_code_of(response: Response) -> str:
    """``error.code`` of a JSON error body; else the code siphon gives the status (a 404 of
    ``/status`` is ``not_found``)."""
    body = response.get_json(silent=True) if response.is_json and not response.direct_passthrough else None
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else HTTP_CODES.get(response.status_code, "http_error")


def counted_download(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """``chunks`` passed through; the bytes the server took are added to ``DOWNLOAD_BYTES`` at the
    end, also when the client goes away mid-file."""
    sent = 0
    try:
        for chunk in chunks:
            yield chunk
            sent += len(chunk)
    finally:
        DOWNLOAD_BYTES.inc(sent)
        close = getattr(chunks, "close", None)
        if close is not None:
            close()

"""Passing ``POST /convert`` on to the upload service as a stream, never whole in memory.

The body is forwarded as it arrives (chunked transfer encoding), unparsed: the upload service is
the one place that parses multipart. The gateway only counts bytes, so an oversized body is cut
off here with a 413 instead of travelling on.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

import requests

from shared.errors import RequestRejected, Unavailable

FORWARD_CHUNK_BYTES = 1024 * 1024
"""Size of the reads from the client and the chunks sent upstream, bytes."""

MAX_JSON_BODY_BYTES = 64 * 1024
"""Largest JSON body passed on (``POST /uploads``, a direct upload's ``POST /convert``), bytes."""


def limited_chunks(stream: BinaryIO, limit: int) -> Iterator[bytes]:
    """Yield ``stream``'s bytes in chunks; raise 413 ``file_too_large`` past ``limit`` bytes."""
    total = 0
    while chunk := stream.read(FORWARD_CHUNK_BYTES):
        total += len(chunk)
        if total > limit:
            raise RequestRejected(
                f"The upload is larger than the {limit}-byte limit.", code="file_too_large", status=413
            )
        yield chunk


def read_json_body(stream: BinaryIO) -> bytes:
    """A small JSON body, whole; the upload service checks what it says.

    Raises:
        RequestRejected: more than :data:`MAX_JSON_BODY_BYTES` (413 ``request_too_large``).
    """
    try:
        return b"".join(limited_chunks(stream, MAX_JSON_BODY_BYTES))
    except RequestRejected:
        raise RequestRejected(
            f"A JSON body may hold at most {MAX_JSON_BODY_BYTES} bytes.", code="request_too_large", status=413
        ) from None


class UploadService:
    """Client of the upload service's ``POST /convert`` (multipart, streamed; or JSON) and ``POST /uploads``."""

    def __init__(self, base_url: str, connect_timeout: float, read_timeout: float):
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/convert"
        self.timeout = (connect_timeout, read_timeout)
        self.session = requests.Session()

    def forward(
        self, body: Iterator[bytes], content_type: str, extra_headers: dict[str, str] | None = None
    ) -> requests.Response:
        """Send ``body`` with ``content_type`` (and ``extra_headers``: the caller's ``Authorization``,
        the quota subject); return the upload service's response.

        Raises:
            Unavailable: the upload service cannot be reached (503 ``upload_unavailable``).
            RequestRejected: raised by ``body`` itself (the size limit) passes through.
        """
        # A fresh connection per upload: a streamed body cannot be replayed, so a pooled connection
        # the upload service has just closed (after refusing a body it did not read to the end, or
        # at its keep-alive timeout) would turn the next client's upload into a 503.
        headers = {**(extra_headers or {}), "Content-Type": content_type, "Connection": "close"}
        try:
            return self.session.post(self.url, data=body, headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            raise Unavailable(
                f"The upload service is unavailable ({exc.__class__.__name__}).", code="upload_unavailable"
            ) from exc

    def post_json(self, path: str, body: bytes, extra_headers: dict[str, str] | None = None) -> requests.Response:
        """Send a small JSON ``body`` to ``path`` (``/uploads``, ``/convert``), with ``extra_headers``
        (the caller's ``Authorization``, the quota subject); return the response.

        Raises:
            Unavailable: the upload service cannot be reached (503 ``upload_unavailable``).
        """
        try:
            return self.session.post(
                self.base_url + path,
                data=body,
                headers={**(extra_headers or {}), "Content-Type": "application/json"},
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            raise Unavailable(
                f"The upload service is unavailable ({exc.__class__.__name__}).", code="upload_unavailable"
            ) from exc

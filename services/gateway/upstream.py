"""Passing ``POST /convert`` on to the upload service as a stream, never whole in memory.

The body is forwarded as it arrives, unparsed: the upload service is the one place that parses
multipart. The gateway only counts bytes, so an oversized body is cut off here with a 413 instead
of travelling on.

A body the client sent with a ``Content-Length`` goes on with that ``Content-Length``
(:class:`SizedBody`); only a chunked one goes on chunked. Chunking it anew cost both sides CPU
for nothing (issue #16): urllib3 copied every chunk to frame it with its size line, and the
upload service's gunicorn parsed that framing in Python (``ChunkedReader``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import BinaryIO

import urllib3

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


class SizedBody:
    """A request body of known length: ``len()`` is its length, which :meth:`UploadService.forward`
    sends as its ``Content-Length`` instead of chunking it; iterating yields its bytes
    (:func:`limited_chunks`, the 413 past ``limit`` included).

    Raises (while iterated):
        RequestRejected: more than ``limit`` bytes (413 ``file_too_large``); fewer than
            ``length`` (400 ``missing_file``, what the upload service answers a cut-off multipart
            body): the client stopped sending, and the upload service must not be left waiting
            for bytes that will not come.
    """

    def __init__(self, stream: BinaryIO, length: int, limit: int):
        self.stream = stream
        self.length = length
        self.limit = limit

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[bytes]:
        sent = 0
        for chunk in limited_chunks(self.stream, self.limit):
            sent += len(chunk)
            yield chunk
        if sent < self.length:
            raise RequestRejected(f"The upload ended after {sent} of its {self.length} bytes.", code="missing_file")


def forwarded_body(stream: BinaryIO, content_length: int | None, limit: int) -> Iterator[bytes] | SizedBody:
    """What to pass to :meth:`UploadService.forward`: a :class:`SizedBody` when the client gave a
    ``content_length`` (bytes), else its chunks (sent on chunked)."""
    if content_length:
        return SizedBody(stream, content_length, limit)
    return limited_chunks(stream, limit)


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


POOL_CONNECTIONS = 1000
"""Connections kept per pool and process, as the metadata client's (``shared/metadata_client.py``):
one per request a gevent worker serves at once (``WEB_CONNECTIONS``' default)."""


@dataclass(frozen=True)
class UploadAnswer:
    """The upload service's answer: its status, its headers (case-insensitive) and its body."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes


class UploadService:
    """Client of the upload service's ``POST /convert`` (multipart, streamed; or JSON) and ``POST
    /uploads``. urllib3 rather than requests, as the metadata client: requests' own layers (its
    environment and proxy lookups, hooks, cookie handling) cost about 1 ms of CPU more per call
    here, 0.6 against 1.6 ms, for nothing a call between two siphon services uses."""

    def __init__(self, base_url: str, connect_timeout: float, read_timeout: float):
        self.base_url = base_url.rstrip("/")
        self._prefix = urllib3.util.parse_url(self.base_url).path or ""
        self.timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
        # Streamed uploads get a pool of their own, where every connection is closed after its
        # request (below), so none is ever reused; small JSON calls keep theirs alive.
        self._streams = urllib3.connection_from_url(self.base_url, maxsize=POOL_CONNECTIONS, retries=False)
        self._calls = urllib3.connection_from_url(self.base_url, maxsize=POOL_CONNECTIONS, retries=False)

    def forward(
        self, body: Iterator[bytes] | SizedBody, content_type: str, extra_headers: dict[str, str] | None = None
    ) -> UploadAnswer:
        """Send ``body`` with ``content_type`` (and ``extra_headers``: the caller's ``Authorization``,
        the quota subject); return the upload service's answer. A :class:`SizedBody` goes with
        its ``Content-Length``, any other iterator chunked.

        Raises:
            Unavailable: the upload service cannot be reached (503 ``upload_unavailable``).
            RequestRejected: raised by ``body`` itself (the size limit, a short body) passes through.
        """
        # A fresh connection per upload: a streamed body cannot be replayed, so a pooled connection
        # the upload service has just closed (after refusing a body it did not read to the end, or
        # at its keep-alive timeout) would turn the next client's upload into a 503.
        headers = {**(extra_headers or {}), "Content-Type": content_type, "Connection": "close"}
        if isinstance(body, SizedBody):
            headers["Content-Length"] = str(len(body))
        return self._post(self._streams, "/convert", body, headers, chunked=not isinstance(body, SizedBody))

    def post_json(self, path: str, body: bytes, extra_headers: dict[str, str] | None = None) -> UploadAnswer:
        """Send a small JSON ``body`` to ``path`` (``/uploads``, ``/convert``), with ``extra_headers``
        (the caller's ``Authorization``, the quota subject); return the answer.

        Raises:
            Unavailable: the upload service cannot be reached (503 ``upload_unavailable``).
        """
        headers = {**(extra_headers or {}), "Content-Type": "application/json"}
        return self._post(self._calls, path, body, headers, chunked=False)

    def _post(self, pool, path: str, body, headers: dict[str, str], chunked: bool) -> UploadAnswer:
        try:
            response = pool.urlopen(
                "POST", self._prefix + path, body=body, headers=headers, chunked=chunked, timeout=self.timeout
            )
        except urllib3.exceptions.HTTPError as exc:
            raise Unavailable(
                f"The upload service is unavailable ({exc.__class__.__name__}).", code="upload_unavailable"
            ) from exc
        return UploadAnswer(response.status, response.headers, response.data)

"""The gateway's client of the upload service (``services/gateway/upstream.py``) against a real
HTTP server on loopback: a body whose length the client declared goes on with that
``Content-Length``, so the upload service's gunicorn reads it without de-chunking."""

from __future__ import annotations

import io

from services.gateway.upstream import UploadService, request_body
from tests.support.receivers import WebhookReceiver

BODY = b"--b\r\n" + b"v" * 3_000_000 + b"\r\n--b--\r\n"


def test_a_declared_length_is_forwarded_as_content_length_not_chunked():
    with WebhookReceiver(default=202) as upload:
        service = UploadService(upload.url.removesuffix("/hook"), 5, 5)
        body = request_body(io.BytesIO(BODY), len(BODY), limit=10_000_000)
        assert service.forward(body, "multipart/form-data; boundary=b").status_code == 202
    [received] = upload.requests
    assert received.headers["Content-Length"] == str(len(BODY))
    assert "Transfer-Encoding" not in received.headers
    assert received.body == BODY

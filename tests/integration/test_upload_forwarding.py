"""The gateway's stream to the upload service, as a real HTTP server receives it
(``services/gateway/upstream.py``): the client's framing kept, the bytes unchanged."""

from __future__ import annotations

import io
import json
import os
import threading
from collections.abc import Iterator

import pytest
from werkzeug.serving import make_server
from werkzeug.wsgi import get_input_stream

from services.gateway.upstream import UploadService, forwarded_body
from shared.errors import RequestRejected, Unavailable
from tests.support.net import free_port

BODY = os.urandom(3 * 1024 * 1024 + 17)
"""More than one forwarded chunk, not a whole number of them."""


def recorder(environ, start_response):
    """Answers with the framing headers it received and the length and bytes of the body it read."""
    body = get_input_stream(environ).read()  # to its Content-Length, or its last chunk
    seen = {
        "content_length": environ.get("CONTENT_LENGTH") or None,
        "transfer_encoding": environ.get("HTTP_TRANSFER_ENCODING"),
        "received": len(body),
        "intact": body == BODY,
    }
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(seen).encode()]


@pytest.fixture(scope="module")
def upload_service() -> Iterator[UploadService]:
    server = make_server("127.0.0.1", 0, recorder, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield UploadService(f"http://127.0.0.1:{server.port}", connect_timeout=5, read_timeout=30)
    finally:
        server.shutdown()
        thread.join(10)


def test_a_body_with_a_content_length_arrives_with_it_unchunked(upload_service):
    body = forwarded_body(io.BytesIO(BODY), len(BODY), limit=len(BODY))
    seen = json.loads(upload_service.forward(body, "multipart/form-data; boundary=x").content)
    assert seen == {"content_length": str(len(BODY)), "transfer_encoding": None, "received": len(BODY), "intact": True}


def test_a_chunked_body_arrives_chunked(upload_service):
    body = forwarded_body(io.BytesIO(BODY), None, limit=len(BODY))
    seen = json.loads(upload_service.forward(body, "multipart/form-data; boundary=x").content)
    assert seen == {"content_length": None, "transfer_encoding": "chunked", "received": len(BODY), "intact": True}


def test_a_body_cut_short_stops_the_forward_with_missing_file(upload_service):
    """The client said more bytes than it sent: the gateway stops instead of leaving the upload
    service waiting for the rest."""
    body = forwarded_body(io.BytesIO(BODY[:1000]), len(BODY), limit=len(BODY))
    with pytest.raises(RequestRejected) as refused:
        upload_service.forward(body, "multipart/form-data; boundary=x")
    assert refused.value.code == "missing_file"


def test_a_json_call_keeps_its_body_and_headers(upload_service):
    answer = upload_service.post_json("/uploads", b'{"size": 5}', {"Authorization": "Bearer k"})
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    assert json.loads(answer.content)["content_length"] == "11"


@pytest.mark.parametrize("call", ["forward", "post_json"])
def test_an_upload_service_that_is_not_there_is_503_upload_unavailable(call):
    service = UploadService(f"http://127.0.0.1:{free_port()}", connect_timeout=5, read_timeout=5)
    with pytest.raises(Unavailable) as refused:
        if call == "forward":
            service.forward(forwarded_body(io.BytesIO(b"x"), 1, limit=10), "multipart/form-data; boundary=x")
        else:
            service.post_json("/uploads", b"{}")
    assert refused.value.code == "upload_unavailable"

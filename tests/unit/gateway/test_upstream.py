"""The body ``POST /convert`` forwards to the upload service (``upstream.py``): with its declared
length or chunked, and the limits that hold while it streams. Sending it over HTTP is
tests/integration/test_gateway_upstream.py."""

from __future__ import annotations

import io

import pytest

from services.gateway.upstream import KnownLengthBody, limited_chunks, request_body
from shared.errors import RequestRejected

BODY = b"--b\r\n" + b"v" * 3_000_000 + b"\r\n--b--\r\n"


def test_an_undeclared_length_is_forwarded_chunked():
    body = request_body(io.BytesIO(BODY), None, limit=10_000_000)
    assert not isinstance(body, KnownLengthBody)
    assert b"".join(body) == BODY


def test_a_body_shorter_than_its_content_length_is_400_incomplete_body():
    body = request_body(io.BytesIO(BODY[:1000]), len(BODY), limit=10_000_000)
    with pytest.raises(RequestRejected) as caught:
        b"".join(body)
    assert (caught.value.status, caught.value.code) == (400, "incomplete_body")


def test_a_body_past_the_limit_is_413_while_it_streams():
    with pytest.raises(RequestRejected) as caught:
        b"".join(limited_chunks(io.BytesIO(BODY), limit=len(BODY) - 1))
    assert (caught.value.status, caught.value.code) == (413, "file_too_large")

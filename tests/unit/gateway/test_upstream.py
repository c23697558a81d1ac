"""What the gateway sends on to the upload service for ``POST /convert`` (``services/gateway/upstream.py``)."""

from __future__ import annotations

import io

import pytest
import requests

from services.gateway.upstream import SizedBody, forwarded_body
from shared.errors import RequestRejected

LIMIT = 1000


def framing_headers(body) -> dict[str, str]:
    """The framing headers ``requests`` would send ``body`` with."""
    prepared = requests.Request("POST", "http://upload/convert", data=body).prepare()
    return {k: v for k, v in prepared.headers.items() if k in ("Content-Length", "Transfer-Encoding")}


def test_a_body_sent_with_a_content_length_goes_on_with_it_and_not_chunked():
    body = forwarded_body(io.BytesIO(b"x" * 300), 300, LIMIT)
    assert framing_headers(body) == {"Content-Length": "300"}
    assert b"".join(body) == b"x" * 300


def test_a_chunked_body_goes_on_chunked():
    body = forwarded_body(io.BytesIO(b"x" * 300), None, LIMIT)
    assert framing_headers(body) == {"Transfer-Encoding": "chunked"}
    assert b"".join(body) == b"x" * 300


def test_a_body_shorter_than_its_content_length_is_refused_at_its_end():
    with pytest.raises(RequestRejected) as refused:
        b"".join(SizedBody(io.BytesIO(b"x" * 200), 300, LIMIT))
    assert (refused.value.status, refused.value.code) == (400, "missing_file")


@pytest.mark.parametrize("length", [None, LIMIT + 1])
def test_a_body_past_the_limit_is_413_however_it_is_framed(length):
    with pytest.raises(RequestRejected) as refused:
        b"".join(forwarded_body(io.BytesIO(b"x" * (LIMIT + 1)), length, LIMIT))
    assert (refused.value.status, refused.value.code) == (413, "file_too_large")

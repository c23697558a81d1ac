"""What the gateway sends on to the upload service for ``POST /convert`` (``services/gateway/upstream.py``)."""

from __future__ import annotations

import io

import pytest

from services.gateway.upstream import SizedBody, forwarded_body
from shared.errors import RequestRejected

LIMIT = 1000


def test_a_body_sent_with_a_content_length_goes_on_sized():
    body = forwarded_body(io.BytesIO(b"x" * 300), 300, LIMIT)
    assert isinstance(body, SizedBody) and len(body) == 300
    assert b"".join(body) == b"x" * 300


def test_a_chunked_body_goes_on_as_chunks():
    body = forwarded_body(io.BytesIO(b"x" * 300), None, LIMIT)
    assert not isinstance(body, SizedBody)
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

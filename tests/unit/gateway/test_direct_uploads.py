"""The gateway passes direct-upload requests (``POST /uploads``, JSON ``POST /convert``) to the upload service."""

from __future__ import annotations

import io

import pytest

from services.gateway.app import create_app
from services.gateway.upstream import MAX_JSON_BODY_BYTES
from shared.config import load_settings
from tests.unit.fakes import FakeMetadata, FakeStorage, FakeUpload

UPLOAD_ANSWER = b'{"upload_id": "0123456789abcdef0123456789abcdef", "upload_url": "http://s3/x"}'


def client_for(upload: FakeUpload):
    return create_app(load_settings(), metadata=FakeMetadata(), storage=FakeStorage(), upload=upload).test_client()


@pytest.mark.parametrize(("path", "status"), [("/uploads", 201), ("/convert", 202)])
def test_a_json_body_is_passed_on_and_the_answer_passed_back(path, status):
    upload = FakeUpload(status, UPLOAD_ANSWER)
    response = client_for(upload).post(path, json={"size": 5, "upload_id": "u"})
    assert (response.status_code, response.data) == (status, UPLOAD_ANSWER)
    assert upload.called("post_json") == [path]
    assert upload.forwarded == [(b'{"size": 5, "upload_id": "u"}', "application/json")]


def test_the_upload_services_501_on_local_storage_comes_through_as_json():
    body = b'{"error": {"code": "not_supported", "message": "Direct uploads need the S3 storage backend."}}'
    response = client_for(FakeUpload(501, body)).post("/uploads", json={"size": 5})
    assert (response.status_code, response.get_json()["error"]["code"]) == (501, "not_supported")


def test_a_json_body_above_the_limit_is_a_413_without_asking_the_upload_service():
    upload = FakeUpload()
    response = client_for(upload).post(
        "/uploads", data=b"{" + b" " * MAX_JSON_BODY_BYTES + b"}", content_type="application/json"
    )
    assert (response.status_code, response.get_json()["error"]["code"]) == (413, "request_too_large")
    assert upload.calls == []


def test_a_non_json_answer_of_the_upload_service_becomes_a_json_error():
    response = client_for(FakeUpload(502, b"<html>bad gateway</html>", "text/html")).post("/uploads", json={})
    assert response.status_code == 502 and "error" in response.get_json()


def test_multipart_convert_is_still_streamed_through_forward():
    upload = FakeUpload()
    client_for(upload).post("/convert", data={"file": (io.BytesIO(b"v"), "a.mp4")}, content_type="multipart/form-data")
    assert [name for name, _ in upload.calls] == ["forward"]

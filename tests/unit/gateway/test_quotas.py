"""The gateway's per-caller limits (services/gateway/quotas.py), counted in limits' memory storage."""

from __future__ import annotations

import io

import pytest
from limits.storage import MemoryStorage

from services.gateway.app import create_app
from services.gateway.quotas import client_address, trusted_networks
from shared.auth import Authenticator
from shared.config import load_settings
from shared.job_requests import NewJob
from shared.jobs import new_job_id
from shared.quotas import QUOTA_SUBJECT_HEADER, Quotas, rates_from_settings
from tests.support.keys import KeyFile
from tests.unit.fakes import FakeMetadata, FakeStorage, FakeUpload

PROXIES = trusted_networks("10.0.0.0/8, 192.0.2.1")


def limited_client(upload: FakeUpload, metadata: FakeMetadata | None = None, **limits):
    """A gateway whose limits are ``limits`` (settings overrides), counted in memory."""
    s = load_settings(**limits)
    quotas = Quotas(MemoryStorage(), rates_from_settings(s))
    app = create_app(s, metadata=metadata or FakeMetadata(), storage=FakeStorage(), upload=upload, quotas=quotas)
    return app.test_client()


def post_file(client, size: int = 10, **kwargs):
    return client.post(
        "/convert", data={"file": (io.BytesIO(b"v" * size), "a.mp4")}, content_type="multipart/form-data", **kwargs
    )


# --- who the caller is -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("peer", "forwarded_for", "client"),
    [
        ("203.0.113.9", "", "203.0.113.9"),
        ("203.0.113.9", "198.51.100.1", "203.0.113.9"),  # an untrusted peer's header is ignored
        ("192.0.2.1", "198.51.100.1", "198.51.100.1"),
        ("192.0.2.1", "6.6.6.6, 198.51.100.1", "198.51.100.1"),  # the client's own left part is skipped
        ("192.0.2.1", "198.51.100.1, 10.1.2.3", "198.51.100.1"),  # a chain of trusted proxies
        ("192.0.2.1", "10.1.2.3, 10.4.5.6", "10.1.2.3"),  # all trusted: the left-most
        ("192.0.2.1", "", "192.0.2.1"),
        ("192.0.2.1", "not-an-ip, 10.1.2.3", "10.1.2.3"),  # garbage: the proxy that passed it on
        ("192.0.2.1", "2001:db8:0:0::1", "2001:db8::1"),
    ],
)
def test_the_client_is_the_right_most_address_no_trusted_proxy_has(peer, forwarded_for, client):
    assert client_address(peer, forwarded_for, PROXIES) == client


def test_with_no_trusted_proxies_the_peer_is_the_client():
    assert client_address("127.0.0.1", "198.51.100.1", trusted_networks("")) == "127.0.0.1"


def test_a_bad_trusted_proxies_setting_stops_the_service():
    with pytest.raises(Exception, match="TRUSTED_PROXIES"):
        load_settings(trusted_proxies="10.0.0.0/8, nginx")


def test_the_upload_service_is_told_the_caller_by_address_in_open_mode():
    upload = FakeUpload()
    post_file(limited_client(upload), environ_base={"REMOTE_ADDR": "203.0.113.5"})
    assert upload.headers[0][QUOTA_SUBJECT_HEADER] == "addr:203.0.113.5"


def test_a_client_cannot_write_the_internal_header_itself():
    upload = FakeUpload()
    post_file(limited_client(upload), headers={QUOTA_SUBJECT_HEADER: "key:someone-else"})
    assert upload.headers[0][QUOTA_SUBJECT_HEADER] == "addr:127.0.0.1"


def test_a_key_is_its_own_caller_wherever_it_comes_from(tmp_path):
    keys = KeyFile(tmp_path / "keys")
    keys.add("alice")
    upload = FakeUpload()
    s = load_settings(api_keys_file=keys.path, download_link_secret="x" * 32)
    auth = Authenticator.from_path(keys.path)
    app = create_app(s, metadata=FakeMetadata(), storage=FakeStorage(), upload=upload, auth=auth)
    post_file(app.test_client(), headers={**keys.auth("alice"), "X-Forwarded-For": "198.51.100.1"})
    assert upload.headers[0][QUOTA_SUBJECT_HEADER] == "key:alice"


# --- the limits --------------------------------------------------------------------------------
def test_the_submission_over_the_limit_is_429_with_the_ratelimit_headers_and_not_passed_on():
    upload = FakeUpload()
    client = limited_client(upload, quota_submissions_per_minute=2)
    assert post_file(client).status_code == 202
    assert client.post("/uploads", json={"size": 5}).status_code == 202
    refused = post_file(client)
    assert (refused.status_code, refused.get_json()["error"]["code"]) == (429, "rate_limited")
    assert refused.headers["RateLimit-Limit"] == "2" and refused.headers["RateLimit-Remaining"] == "0"
    assert 0 < int(refused.headers["RateLimit-Reset"]) <= 60
    assert refused.headers["Retry-After"] == refused.headers["RateLimit-Reset"]
    assert len(upload.calls) == 2


def test_other_routes_are_not_counted_as_submissions():
    client = limited_client(FakeUpload(), quota_submissions_per_minute=1)
    for _ in range(3):
        assert client.get("/jobs").status_code == 200
    assert post_file(client).status_code == 202


def test_too_many_unfinished_jobs_is_429_with_a_polling_retry_after():
    subject = "addr:127.0.0.1"
    jobs = [NewJob.new(new_job_id(), "a.mp4", 1).model_copy(update={"quota_subject": subject}) for _ in range(2)]
    upload = FakeUpload()
    metadata = FakeMetadata(*jobs)
    client = limited_client(upload, metadata, quota_unfinished_jobs=2)
    refused = client.post("/convert", json={"upload_id": "x"})
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "30"
    assert refused.headers["RateLimit-Limit"] == "2" and refused.headers["RateLimit-Remaining"] == "0"
    assert upload.calls == []
    assert metadata.called("count_unfinished") == [(subject, 2)], "the limit lets metadata skip reading records"


def test_uploaded_bytes_are_charged_by_content_length_and_a_refusal_costs_nothing():
    upload = FakeUpload()
    client = limited_client(upload, quota_upload_bytes_per_day=2000)
    first = post_file(client, size=1200)
    assert first.status_code == 202
    refused = post_file(client, size=1200)
    assert refused.status_code == 429
    used = int(first.request.headers["Content-Length"])
    assert refused.headers["RateLimit-Remaining"] == str(2000 - used)
    assert post_file(client, size=100).status_code == 202  # what is left still fits a small one
    assert len(upload.calls) == 2


def test_a_direct_uploads_start_is_not_charged_bytes_again():
    client = limited_client(FakeUpload(), quota_upload_bytes_per_day=10)
    assert client.post("/convert", json={"upload_id": "x" * 100}).status_code == 202


def test_an_upload_without_content_length_is_411_while_bytes_are_limited():
    upload = FakeUpload()
    client = limited_client(upload, quota_upload_bytes_per_day=10**9)
    response = client.post(
        "/convert",
        input_stream=io.BytesIO(b"--x--\r\n"),
        headers={"Content-Type": "multipart/form-data; boundary=x", "Transfer-Encoding": "chunked"},
    )
    assert (response.status_code, response.get_json()["error"]["code"]) == (411, "length_required")
    assert upload.calls == []


def test_the_upload_services_429_comes_through_with_its_headers():
    body = b'{"error": {"code": "rate_limited", "message": "Rate limit reached."}}'
    upload = FakeUpload(429, body)
    upload.response.headers.update({"Retry-After": "120", "RateLimit-Limit": "1", "RateLimit-Reset": "120"})
    response = post_file(limited_client(upload))
    assert response.status_code == 429
    assert (response.headers["Retry-After"], response.headers["RateLimit-Limit"]) == ("120", "1")

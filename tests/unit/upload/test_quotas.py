"""The upload service's share of the per-caller limits: emails per hour, the declared bytes of
``POST /uploads``, and the caller recorded on each job (counted in limits' memory storage)."""

from __future__ import annotations

import io
import time

import pytest
from limits.storage import MemoryStorage

from services.upload.app import create_app
from services.upload.direct import new_upload_id
from services.upload.intake import Intake
from shared.broker import Topology
from shared.config import load_settings
from shared.jobs import input_key
from shared.quotas import QUOTA_SUBJECT_HEADER, Quotas, rates_from_settings
from tests.unit.fakes import FakeMetadata, FakePublisher, FakeStorage

CALLER = {QUOTA_SUBJECT_HEADER: "addr:203.0.113.7"}


@pytest.fixture
def intake() -> Intake:
    return Intake(FakeStorage(), FakeMetadata(), FakePublisher(), Topology(prefix="unit"), max_upload_bytes=10**6)


def client_for(intake: Intake, **limits):
    s = load_settings(max_upload_bytes=10**6, **limits)
    return create_app(s, intake=intake, quotas=Quotas(MemoryStorage(), rates_from_settings(s))).test_client()


def post_file(client, headers=CALLER, **fields):
    data = {"file": (io.BytesIO(b"\x00video"), "clip.mp4"), **fields}
    return client.post("/convert", data=data, content_type="multipart/form-data", headers=headers)


def test_a_submission_with_an_email_over_the_limit_is_429_and_nothing_is_stored(intake):
    client = client_for(intake, quota_emails_per_hour=1)
    assert post_file(client, email="a@example.com").status_code == 202
    stored = dict(intake.storage.objects)
    refused = post_file(client, email="b@example.com")
    assert (refused.status_code, refused.get_json()["error"]["code"]) == (429, "rate_limited")
    assert refused.headers["RateLimit-Limit"] == "1" and refused.headers["RateLimit-Remaining"] == "0"
    assert 3500 < int(refused.headers["Retry-After"]) <= 3600
    assert intake.storage.objects == stored and len(intake.metadata.jobs) == 1
    assert len(intake.publisher.published) == 1


def test_submissions_without_an_email_are_not_counted_as_emails(intake):
    client = client_for(intake, quota_emails_per_hour=1)
    for _ in range(3):
        assert post_file(client).status_code == 202
    assert post_file(client, email="a@example.com").status_code == 202


def test_a_request_that_did_not_come_through_the_gateway_is_not_limited(intake):
    client = client_for(intake, quota_emails_per_hour=1)
    for _ in range(2):
        assert post_file(client, headers={}, email="a@example.com").status_code == 202


def test_the_job_records_the_caller_the_gateway_named(intake):
    job_id = post_file(client_for(intake)).get_json()["job_id"]
    assert intake.metadata.jobs[job_id].quota_subject == "addr:203.0.113.7"


def test_a_direct_uploads_job_records_the_caller_too(intake):
    upload_id = new_upload_id(time.time() + 60)
    intake.storage.objects[input_key(upload_id)] = b"video"
    response = client_for(intake).post("/convert", json={"upload_id": upload_id}, headers=CALLER)
    assert response.status_code == 202
    assert intake.metadata.jobs[upload_id].quota_subject == "addr:203.0.113.7"


def test_the_declared_size_of_a_direct_upload_is_charged_to_the_days_bytes(intake):
    client = client_for(intake, quota_upload_bytes_per_day=1000)
    assert client.post("/uploads", json={"size": 600}, headers=CALLER).status_code == 201
    refused = client.post("/uploads", json={"size": 600}, headers=CALLER)
    assert refused.status_code == 429 and refused.headers["RateLimit-Remaining"] == "400"
    assert client.post("/uploads", json={"size": 400}, headers=CALLER).status_code == 201
    assert len(intake.storage.called("presign_put")) == 2


def test_an_invalid_size_is_refused_before_it_is_charged(intake):
    client = client_for(intake, quota_upload_bytes_per_day=1000)
    assert client.post("/uploads", json={"size": 10**7}, headers=CALLER).status_code == 400
    assert client.post("/uploads", json={"size": 1000}, headers=CALLER).status_code == 201

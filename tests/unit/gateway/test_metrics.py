"""The gateway's metrics: error answers counted by their JSON code, downloaded bytes, ``GET /metrics``."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from services.gateway.app import create_app
from shared.config import load_settings
from shared.jobs import Job, JobStatus
from tests.unit.fakes import FakeMetadata, FakeStorage, FakeUpload

JOB_ID = "0123456789abcdef0123456789abcdef"
MP3 = bytes(range(256)) * 40
COMPLETED = Job.new(JOB_ID, "clip.mov", 100).model_copy(update={"status": JobStatus.COMPLETED, "output_size": len(MP3)})
QUEUED = Job.new("a" * 32, "clip.mov", 100)


@pytest.fixture
def client():
    app = create_app(
        load_settings(max_upload_bytes=10_000),
        metadata=FakeMetadata(COMPLETED, QUEUED),
        storage=FakeStorage({COMPLETED.output_key: MP3}),
        upload=FakeUpload(413, b'{"error": {"code": "file_too_large", "message": "big"}}'),
    )
    return app.test_client()


def errors(code: str) -> float:
    return REGISTRY.get_sample_value("siphon_http_errors_total", {"code": code}) or 0.0


def all_errors() -> float:
    return sum(
        sample.value
        for family in REGISTRY.collect()
        if family.name == "siphon_http_errors"
        for sample in family.samples
        if sample.name == "siphon_http_errors_total"
    )


def downloaded() -> float:
    return REGISTRY.get_sample_value("siphon_download_bytes_total") or 0.0


@pytest.mark.parametrize(
    ("request_args", "code"),
    [
        (("GET", "/status/" + "f" * 32), "not_found"),  # the 404 body of /status has no error object
        (("GET", "/download/" + "a" * 32 + ".mp3"), "job_not_ready"),
        (("GET", "/no/such/route"), "not_found"),
        (("DELETE", "/convert"), "method_not_allowed"),
        (("GET", "/status/x?wait=soon"), "invalid_wait"),
    ],
)
def test_each_error_answer_is_counted_under_its_code(client, request_args, code):
    before = errors(code)
    method, path = request_args
    assert client.open(path, method=method).status_code >= 400
    assert errors(code) == before + 1


def test_an_upload_service_error_passed_through_is_counted_under_its_code(client):
    before = errors("file_too_large")
    response = client.post("/convert", data=b"--x--", content_type="multipart/form-data; boundary=x")
    assert response.status_code == 413
    assert errors("file_too_large") == before + 1


def test_a_success_counts_no_error(client):
    before = all_errors()
    assert client.get(f"/status/{JOB_ID}").status_code == 200
    assert all_errors() == before


def test_downloaded_bytes_are_counted_once_the_body_is_sent(client):
    before = downloaded()
    assert len(client.get(f"/download/{JOB_ID}.mp3").data) == len(MP3)
    assert len(client.get(f"/download/{JOB_ID}.mp3", headers={"Range": "bytes=0-99"}).data) == 100
    assert client.head(f"/download/{JOB_ID}.mp3").status_code == 200
    assert downloaded() == before + len(MP3) + 100


def test_metrics_are_served_in_prometheus_text(client):
    client.get("/status/" + "f" * 32)
    response = client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    text = response.get_data(as_text=True)
    assert 'siphon_http_errors_total{code="not_found"}' in text
    assert "siphon_download_bytes_total" in text

"""The gateway's cancel routes, downloads in every format, and what /status says of options and
progress, through Flask's test client on fakes."""

from __future__ import annotations

import pytest

from services.gateway.app import create_app
from services.gateway.views import status_body
from shared.config import load_settings
from shared.errors import JobStoreUnavailable
from shared.jobs import Job, JobErrorInfo, JobStatus
from shared.options import FORMATS
from tests.unit.fakes import FakeMetadata, FakeStorage, FakeUpload

AUDIO = b"\x00\x01" * 500


def job(status: JobStatus, job_id: str, extension: str = "mp3", **fields) -> Job:
    options = {} if extension == "mp3" else {"format": extension}
    fresh = Job.new(job_id, "Talk.mov", 100, options=options, extension=extension)
    return fresh.model_copy(update={"status": status, **fields})


QUEUED = job(JobStatus.QUEUED, "a" * 32)
PROCESSING = job(JobStatus.PROCESSING, "b" * 32, progress=37, attempts=1)
COMPLETED = job(JobStatus.COMPLETED, "c" * 32, output_size=len(AUDIO))
FAILED = job(JobStatus.FAILED, "d" * 32, error=JobErrorInfo(code="not_media", message="no"))
CANCELLED = job(JobStatus.CANCELLED, "e" * 32)
BY_FORMAT = {
    fmt: job(JobStatus.COMPLETED, f"{i:x}" * 32, fmt, output_size=len(AUDIO)) for i, fmt in enumerate(FORMATS, start=1)
}


@pytest.fixture
def metadata() -> FakeMetadata:
    return FakeMetadata(QUEUED, PROCESSING, COMPLETED, FAILED, CANCELLED, *BY_FORMAT.values())


@pytest.fixture
def storage() -> FakeStorage:
    return FakeStorage({done.output_key: AUDIO for done in (COMPLETED, *BY_FORMAT.values())})


@pytest.fixture
def client(metadata, storage):
    return create_app(load_settings(), metadata=metadata, storage=storage, upload=FakeUpload()).test_client()


def cancel(client, job_id: str, method: str):
    return client.delete(f"/jobs/{job_id}") if method == "DELETE" else client.post(f"/cancel/{job_id}")


# --- cancel -----------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["DELETE", "POST"])
@pytest.mark.parametrize("live", [QUEUED, PROCESSING, CANCELLED])
def test_cancelling_a_live_or_cancelled_job_answers_it_cancelled(client, metadata, method, live):
    response = cancel(client, live.job_id, method)
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.get_json() == {"job_id": live.job_id, "status": "cancelled", "message": "Conversion cancelled."}
    assert metadata.called("cancel_job") == [live.job_id]


@pytest.mark.parametrize("method", ["DELETE", "POST"])
@pytest.mark.parametrize("finished", [COMPLETED, FAILED])
def test_cancelling_a_finished_job_is_409_job_finished(client, method, finished):
    response = cancel(client, finished.job_id, method)
    assert response.status_code == 409
    error = response.get_json()["error"]
    assert error["code"] == "job_finished" and finished.status.value in error["message"]


@pytest.mark.parametrize("method", ["DELETE", "POST"])
@pytest.mark.parametrize("job_id", ["0" * 32, "*", "x" * 10_000, "A" * 32])
def test_cancelling_an_unknown_or_malformed_id_is_the_status_404(client, metadata, method, job_id):
    response = cancel(client, job_id, method)
    assert response.status_code == 404
    body = response.get_json()
    assert body["status"] == "not_found" and len(body["job_id"]) <= 64
    if job_id != "0" * 32:
        assert metadata.calls == [], "a malformed id is answered without a lookup"


def test_cancelling_when_metadata_is_down_is_503(client, metadata):
    metadata.fail("cancel_job", JobStoreUnavailable("metadata service unreachable"))
    response = client.delete(f"/jobs/{QUEUED.job_id}")
    assert response.status_code == 503 and response.get_json()["error"]["code"] == "metadata_unavailable"


def test_a_cancelled_job_has_nothing_to_download(client):
    response = client.get(f"/download/{CANCELLED.job_id}.mp3")
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "job_cancelled"


# --- downloads in every format -----------------------------------------------------------------------
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_each_format_downloads_under_its_extension_with_its_media_type(client, fmt):
    done = BY_FORMAT[fmt]
    response = client.get(f"/download/{done.job_id}.{fmt}")
    assert response.status_code == 200 and response.data == AUDIO
    assert response.headers["Content-Type"] == FORMATS[fmt].media_type
    assert response.headers["Content-Disposition"].startswith(f'attachment; filename="Talk.{fmt}"')


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_another_extension_than_the_jobs_is_404(client, storage, fmt):
    done = BY_FORMAT[fmt]
    other = "wav" if fmt != "wav" else "mp3"
    response = client.get(f"/download/{done.job_id}.{other}")
    assert response.status_code == 404 and response.get_json()["error"]["code"] == "job_not_found"
    assert storage.called("stream") == []


def test_a_range_works_in_other_formats_too(client):
    response = client.get(f"/download/{BY_FORMAT['flac'].job_id}.flac", headers={"Range": "bytes=0-9"})
    assert response.status_code == 206 and response.data == AUDIO[:10]


# --- /status ------------------------------------------------------------------------------------
def test_status_of_a_processing_job_carries_its_progress(client):
    assert client.get(f"/status/{PROCESSING.job_id}").get_json() == {
        "job_id": PROCESSING.job_id,
        "status": "processing",
        "message": "Conversion in progress.",
        "progress": 37,
    }


def test_status_of_a_cancelled_job_has_its_own_message(client):
    assert client.get(f"/status/{CANCELLED.job_id}").get_json() == {
        "job_id": CANCELLED.job_id,
        "status": "cancelled",
        "message": "Conversion cancelled.",
    }


def test_a_completed_jobs_download_url_ends_in_its_extension_and_its_options_are_shown():
    body = status_body(BY_FORMAT["opus"], "http://siphon.example/")
    assert body["download_url"] == f"http://siphon.example/download/{BY_FORMAT['opus'].job_id}.opus"
    assert body["options"] == {"format": "opus"}
    assert "progress" not in body, "a completed job is said to be completed, not 100 %"


def test_a_plain_job_shows_no_options():
    assert "options" not in status_body(COMPLETED, "http://h/")

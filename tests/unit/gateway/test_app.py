"""The public HTTP API through Flask's test client, with fakes for metadata, storage and upload."""

from __future__ import annotations

import io

import pytest

from services.gateway.app import create_app
from shared.config import load_settings
from shared.errors import JobStoreUnavailable, StorageUnavailable, Unavailable
from shared.jobs import Job, JobErrorInfo, JobStatus
from tests.unit.fakes import FakeMetadata, FakeStorage, FakeUpload

JOB_ID = "0123456789abcdef0123456789abcdef"
MP3 = bytes(range(256)) * 40  # 10 240 bytes, every offset distinguishable
ETAG = f'"{JOB_ID}-{len(MP3)}"'
MAX_UPLOAD = 10_000


def job(status: JobStatus, job_id: str = JOB_ID, **fields) -> Job:
    return Job.new(job_id, "Café ☕ holiday.mov", 100).model_copy(update={"status": status, **fields})


COMPLETED = job(JobStatus.COMPLETED, output_size=len(MP3))
FAILED = job(JobStatus.FAILED, "f" * 32, error=JobErrorInfo(code="not_media", message="Not a video."))
QUEUED = job(JobStatus.QUEUED, "a" * 32)
PROCESSING = job(JobStatus.PROCESSING, "b" * 32, attempts=1)


@pytest.fixture
def metadata() -> FakeMetadata:
    return FakeMetadata(COMPLETED, FAILED, QUEUED, PROCESSING)


@pytest.fixture
def storage() -> FakeStorage:
    return FakeStorage({COMPLETED.output_key: MP3})


@pytest.fixture
def upload() -> FakeUpload:
    return FakeUpload(202, b'{"job_id": "abc", "status": "queued"}')


@pytest.fixture
def client(metadata, storage, upload):
    app = create_app(load_settings(max_upload_bytes=MAX_UPLOAD), metadata=metadata, storage=storage, upload=upload)
    return app.test_client()


def assert_json_error(response, status: int, code: str) -> None:
    assert response.status_code == status
    assert response.mimetype == "application/json", response.data[:200]
    assert response.get_json()["error"]["code"] == code
    assert b"<html" not in response.data.lower() and b"Traceback" not in response.data


# --- /status -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("stored", "extra"),
    [
        (QUEUED, {}),
        (PROCESSING, {}),
        (COMPLETED, {"download_url": f"http://localhost/download/{JOB_ID}.mp3"}),
        (FAILED, {"error": {"code": "not_media", "message": "Not a video."}}),
    ],
)
def test_status_of_each_state(client, stored, extra):
    response = client.get(f"/status/{stored.job_id}")
    assert response.status_code == 200 and response.mimetype == "application/json"
    body = response.get_json()
    assert body["job_id"] == stored.job_id and body["status"] == stored.status.value
    assert {key: body[key] for key in extra} == extra
    assert set(body) == {"job_id", "status", "message", *extra}


def test_status_of_an_unknown_job_is_a_json_404(client, metadata):
    response = client.get(f"/status/{'c' * 32}")
    assert response.status_code == 404
    assert response.get_json() == {"job_id": "c" * 32, "status": "not_found", "message": "Job not found."}
    assert metadata.called("get_job") == ["c" * 32]


@pytest.mark.parametrize(
    "job_id",
    [
        "*",
        "..%2F..%2Fetc%2Fpasswd",
        "a/b",
        JOB_ID.upper(),
        JOB_ID + "0",
        "x" * 1_000_000,
    ],
)
def test_status_of_a_malformed_id_is_404_without_asking_metadata(client, metadata, job_id):
    response = client.get(f"/status/{job_id}")
    assert response.status_code == 404 and response.mimetype == "application/json"
    body = response.get_json()
    assert body["status"] == "not_found" and len(body["job_id"]) <= 64
    assert len(response.data) < 300
    assert metadata.calls == []


def test_status_when_metadata_is_down_is_503(client, metadata):
    metadata.fail("get_job", JobStoreUnavailable("metadata service unreachable"))
    assert_json_error(client.get(f"/status/{JOB_ID}"), 503, "metadata_unavailable")


# --- /download -----------------------------------------------------------------------------
def test_download_streams_the_mp3_as_an_attachment(client):
    response = client.get(f"/download/{JOB_ID}.mp3")
    assert response.status_code == 200 and response.data == MP3
    assert response.headers["Content-Type"] == "audio/mpeg"
    assert response.headers["Content-Length"] == str(len(MP3))
    assert response.headers["Accept-Ranges"] == "bytes" and response.headers["ETag"] == ETAG
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="Cafe  holiday.mp3"; ')
    assert disposition.endswith("filename*=UTF-8''Caf%C3%A9%20%E2%98%95%20holiday.mp3")


def test_head_sends_headers_without_reading_the_object(client, storage):
    response = client.head(f"/download/{JOB_ID}.mp3")
    assert response.status_code == 200 and response.data == b""
    assert response.headers["Content-Length"] == str(len(MP3))
    assert storage.called("stream") == []


def test_download_size_comes_from_storage_when_not_recorded(client, metadata, storage):
    metadata.jobs[JOB_ID] = COMPLETED.model_copy(update={"output_size": None})
    assert client.get(f"/download/{JOB_ID}.mp3").data == MP3
    assert storage.called("size") == [COMPLETED.output_key]


@pytest.mark.parametrize("name", ["c" * 32 + ".mp3", f"{JOB_ID}.wav", JOB_ID, "*.mp3", ".mp3", "x" * 100_000])
def test_download_of_an_unknown_or_malformed_name_is_404(client, name):
    assert_json_error(client.get(f"/download/{name}"), 404, "job_not_found")


@pytest.mark.parametrize(
    ("stored", "code"), [(QUEUED, "job_not_ready"), (PROCESSING, "job_not_ready"), (FAILED, "job_failed")]
)
def test_download_of_an_unfinished_or_failed_job_is_409(client, storage, stored, code):
    assert_json_error(client.get(f"/download/{stored.job_id}.mp3"), 409, code)
    assert storage.calls == []


def test_download_of_a_lost_output_is_404_and_of_a_dead_storage_503(client, storage):
    del storage.objects[COMPLETED.output_key]
    assert_json_error(client.get(f"/download/{JOB_ID}.mp3"), 404, "object_not_found")
    storage.fail("stream", StorageUnavailable("s3 down"))
    assert_json_error(client.get(f"/download/{JOB_ID}.mp3"), 503, "storage_unavailable")


# --- Range (RFC 9110 §14) ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("header", "start", "stop"),
    [
        ("bytes=0-9", 0, 10),
        ("bytes=100-", 100, len(MP3)),
        ("bytes=-16", len(MP3) - 16, len(MP3)),
        ("bytes=10000-99999", 10000, len(MP3)),  # last-pos past the end is clamped
        ("bytes=-999999", 0, len(MP3)),  # a suffix longer than the file means all of it
        (f"bytes={len(MP3) - 1}-", len(MP3) - 1, len(MP3)),
    ],
)
def test_a_satisfiable_range_is_206(client, header, start, stop):
    response = client.get(f"/download/{JOB_ID}.mp3", headers={"Range": header})
    assert response.status_code == 206, response.data[:200]
    assert response.data == MP3[start:stop]
    assert response.headers["Content-Range"] == f"bytes {start}-{stop - 1}/{len(MP3)}"
    assert response.headers["Content-Length"] == str(stop - start)


@pytest.mark.parametrize("header", [f"bytes={len(MP3)}-", f"bytes={len(MP3) + 5}-{len(MP3) + 10}"])
def test_an_unsatisfiable_range_is_416(client, header):
    response = client.get(f"/download/{JOB_ID}.mp3", headers={"Range": header})
    assert response.status_code == 416
    assert response.headers["Content-Range"] == f"bytes */{len(MP3)}"


@pytest.mark.parametrize("header", ["bytes=abc", "bytes=5-1", "pages=0-1", "bytes=0-1,5-6"])
def test_a_range_we_do_not_serve_is_ignored_with_a_full_200(client, header):
    response = client.get(f"/download/{JOB_ID}.mp3", headers={"Range": header})
    assert response.status_code == 200 and response.data == MP3


def test_if_range_with_the_current_etag_honours_the_range(client):
    response = client.get(f"/download/{JOB_ID}.mp3", headers={"Range": "bytes=0-3", "If-Range": ETAG})
    assert response.status_code == 206 and response.data == MP3[:4]


@pytest.mark.parametrize("if_range", ['"someone-else"', f"W/{ETAG}", "Wed, 21 Oct 2015 07:28:00 GMT"])
def test_if_range_that_does_not_strongly_match_sends_the_whole_file(client, if_range):
    response = client.get(f"/download/{JOB_ID}.mp3", headers={"Range": "bytes=0-3", "If-Range": if_range})
    assert response.status_code == 200 and response.data == MP3


# --- /convert ------------------------------------------------------------------------------
def test_convert_forwards_the_multipart_body_and_relays_the_answer(client, upload):
    response = client.post(
        "/convert", data={"file": (io.BytesIO(b"video"), "clip.mp4")}, content_type="multipart/form-data"
    )
    assert response.status_code == 202 and response.get_json() == {"job_id": "abc", "status": "queued"}
    [(body, content_type)] = upload.forwarded
    assert content_type.startswith("multipart/form-data; boundary=") and b"video" in body


def test_convert_without_multipart_is_400_missing_file(client, upload):
    assert_json_error(client.post("/convert", data=b"raw video", content_type="video/mp4"), 400, "missing_file")
    assert upload.calls == []


def test_convert_larger_than_the_limit_is_413_before_forwarding(client, upload):
    response = client.post("/convert", data=b"x" * (MAX_UPLOAD + 70_000), content_type="multipart/form-data")
    assert_json_error(response, 413, "file_too_large")
    assert upload.calls == []


def test_convert_when_upload_is_down_is_503(client, upload):
    upload.fail("forward", Unavailable("The upload service is unavailable.", code="upload_unavailable"))
    response = client.post("/convert", data=b"--b--", content_type="multipart/form-data; boundary=b")
    assert_json_error(response, 503, "upload_unavailable")


def test_a_non_json_upstream_answer_becomes_a_json_error(metadata, storage):
    upload = FakeUpload(502, b"<html>Bad Gateway</html>", content_type="text/html")
    app = create_app(load_settings(), metadata=metadata, storage=storage, upload=upload)
    response = app.test_client().post("/convert", data=b"--b--", content_type="multipart/form-data; boundary=b")
    assert_json_error(response, 502, "upload_error")


# --- everything else is JSON too -------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/no/such/route", 404, "not_found"),
        ("GET", "/download/", 404, "not_found"),
        ("DELETE", f"/status/{JOB_ID}", 405, "method_not_allowed"),
        ("POST", "/healthz", 405, "method_not_allowed"),
        ("GET", "/convert", 405, "method_not_allowed"),
    ],
)
def test_unknown_routes_and_methods_answer_json(client, method, path, status, code):
    assert_json_error(client.open(path, method=method), status, code)


def test_an_unexpected_error_is_a_json_500_without_the_traceback(client, metadata):
    metadata.fail("get_job", RuntimeError("secret internals"))
    response = client.get(f"/status/{JOB_ID}")
    assert_json_error(response, 500, "internal_error")
    assert b"secret internals" not in response.data


def test_health_and_readiness(client, storage):
    assert client.get("/healthz").get_json() == {"status": "ok", "auth": "off"}
    assert client.get("/readyz").get_json() == {"status": "ready"}
    storage.fail("check", StorageUnavailable("bucket gone"))
    assert_json_error(client.get("/readyz"), 503, "storage_unavailable")

"""Direct uploads against the real stack: ``POST /uploads`` on the gateway, the file PUT straight to
moto's S3 server with the presigned URL, then ``POST /convert`` with the upload id."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from shared.jobs import input_key

pytestmark = pytest.mark.e2e

VIDEO = "ordinary_h264_aac_stereo_48k_faststart_2s.mp4"
LIMIT = 400_000
EXPIRY = 3
"""PRESIGNED_URL_EXPIRY_SECONDS: short, so a test can outlive a URL; long enough to PUT and start in time."""


@pytest.fixture(scope="module")
def stack(module_stack):
    return module_stack("s3", workers=1, MAX_UPLOAD_BYTES=str(LIMIT), PRESIGNED_URL_EXPIRY_SECONDS=str(EXPIRY))


def begin(stack, size: int) -> requests.Response:
    return requests.post(f"{stack.url}/uploads", json={"size": size}, timeout=10)


def start(stack, **body) -> requests.Response:
    return requests.post(f"{stack.url}/convert", json=body, timeout=10)


def test_a_file_put_to_the_presigned_url_converts_without_passing_the_gateway(stack, media_dir):
    data = (media_dir / VIDEO).read_bytes()
    response = begin(stack, len(data))
    assert response.status_code == 201
    upload = response.json()
    assert (upload["method"], upload["headers"], upload["expires_in"], upload["max_bytes"]) == (
        "PUT",
        {"Content-Length": str(len(data))},
        EXPIRY,
        LIMIT,
    )
    assert upload["upload_url"].startswith(f"{stack.s3_endpoint}/{stack.bucket}/{input_key(upload['upload_id'])}?")
    put = requests.put(upload["upload_url"], data=data, headers=upload["headers"], timeout=30)
    assert put.status_code == 200
    started = start(stack, upload_id=upload["upload_id"], filename="lecture.mov", bitrate=128)
    assert started.status_code == 202
    assert started.json() == {
        "job_id": upload["upload_id"],
        "status": "queued",
        "message": "Conversion job submitted successfully.",
    }
    final = stack.wait_for_job(upload["upload_id"], timeout=60)
    assert final["status"] == "completed", final
    assert stack.job_record(upload["upload_id"])["options"] == {"bitrate": 128}
    mp3 = stack.download(upload["upload_id"])
    assert mp3.status_code == 200
    assert mp3.headers["Content-Disposition"].startswith('attachment; filename="lecture.mp3"')


def test_the_url_is_signed_for_the_size_and_the_expiry(stack):
    query = parse_qs(urlsplit(begin(stack, 1234).json()["upload_url"]).query)
    assert query["X-Amz-Expires"] == [str(EXPIRY)] and query["X-Amz-SignedHeaders"] == ["content-length;host"]


def test_a_put_after_the_url_expired_is_refused_410_by_siphon_though_moto_took_it(stack, media_dir):
    # moto 5 checks neither X-Amz-Expires nor the signed Content-Length of a presigned URL (its
    # SigV4 check reads the Authorization header only); S3 and MinIO answer 403 "Request has
    # expired". siphon does not rely on either: the upload id carries the URL's expiry.
    data = (media_dir / VIDEO).read_bytes()
    upload = begin(stack, len(data)).json()
    time.sleep(EXPIRY + 1.5)
    late = requests.put(upload["upload_url"], data=data, timeout=30)
    assert late.status_code == 200, "moto now refuses expired URLs: assert 403 here instead"
    response = start(stack, upload_id=upload["upload_id"])
    assert (response.status_code, response.json()["error"]["code"]) == (410, "upload_expired")
    assert input_key(upload["upload_id"]) not in stack.stored_keys()
    assert stack.status(upload["upload_id"]).status_code == 404


def test_a_file_put_in_time_but_started_after_the_expiry_is_refused_410(stack, media_dir):
    data = (media_dir / VIDEO).read_bytes()
    upload = begin(stack, len(data)).json()
    assert requests.put(upload["upload_url"], data=data, headers=upload["headers"], timeout=30).status_code == 200
    time.sleep(EXPIRY + 1.5)
    response = start(stack, upload_id=upload["upload_id"])
    assert (response.status_code, response.json()["error"]["code"]) == (410, "upload_expired")
    assert input_key(upload["upload_id"]) not in stack.stored_keys()


def test_a_file_larger_than_the_limit_put_anyway_is_refused_and_deleted(stack):
    upload = begin(stack, 1000).json()
    # The signed length stops this on S3 and MinIO; moto takes it, so siphon checks the stored size itself.
    requests.put(upload["upload_url"], data=b"x" * (LIMIT + 1), timeout=30)
    response = start(stack, upload_id=upload["upload_id"])
    assert (response.status_code, response.json()["error"]["code"]) == (413, "file_too_large")
    assert input_key(upload["upload_id"]) not in stack.stored_keys()
    assert stack.status(upload["upload_id"]).status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"upload_id": "0123456789abcdef0123456789abcdef"}, 404, "upload_not_found"),
        ({"upload_id": "../../etc/passwd"}, 400, "invalid_upload_id"),
        ({"file": "talk.mp4"}, 400, "missing_file"),
    ],
)
def test_an_unknown_or_malformed_upload_id_is_a_json_error(stack, body, status, code):
    response = start(stack, **body)
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)


def test_starting_before_the_file_is_there_is_a_404(stack):
    upload = begin(stack, 10).json()
    response = start(stack, upload_id=upload["upload_id"])
    assert (response.status_code, response.json()["error"]["code"]) == (404, "upload_not_found")


@pytest.mark.parametrize(
    ("body", "code"),
    [({"size": LIMIT + 1}, "file_too_large"), ({"size": 0}, "invalid_size"), ({"bytes": 10}, "invalid_size")],
)
def test_a_size_the_server_will_not_take_is_a_400(stack, body, code):
    response = requests.post(f"{stack.url}/uploads", json=body, timeout=10)
    assert (response.status_code, response.json()["error"]["code"]) == (400, code)


def test_local_storage_answers_501_with_a_clear_message(module_stack):
    local = module_stack("local", workers=1)
    response = begin(local, 100)
    assert response.status_code == 501 and response.headers["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == "not_supported" and "STORAGE_BACKEND=s3" in error["message"]

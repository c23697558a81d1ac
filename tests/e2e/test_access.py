"""Who may see what, on a real stack with API keys (issue #14): keys A and B and an admin key.

For every route that names or lists jobs, B is answered as if A's job did not exist, while A and the
admin see it; no key, or an unknown one, gets 401; a key removed from the file stops working after
the reload; signed download links work with no header and refuse every kind of tampering.
"""

from __future__ import annotations

import json
import time

import pytest
import requests

from shared.jobs import Job
from shared.links import LinkSigner
from tests.support.keys import KeyFile
from tests.support.net import wait_until
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

VIDEO = "opus_in_mp4_stereo_audio_only.mp4"
"""A 5 KB file that converts in a blink into a ~1 s MP3."""

LINK_SECRET = "test-download-link-secret-0123456789"


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> KeyFile:
    key_file = KeyFile(tmp_path_factory.mktemp("keys") / "api_keys")
    key_file.add("alice")
    key_file.add("bob")
    key_file.add("ops", admin=True)
    return key_file


@pytest.fixture(scope="module")
def stack(module_stack, keys) -> Stack:
    return module_stack(
        "local",
        workers=1,
        API_KEYS_FILE=str(keys.path),
        DOWNLOAD_LINK_SECRET=LINK_SECRET,
        EVENTS_HEARTBEAT_SECONDS="0.3",
    )


@pytest.fixture(scope="module")
def alices_job(stack, keys, media_dir) -> dict:
    """A completed job of alice's: its last /status body."""
    with open(media_dir / VIDEO, "rb") as f:
        response = requests.post(f"{stack.url}/convert", files={"file": f}, headers=keys.auth("alice"), timeout=30)
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    return wait_until(lambda: _completed(stack, job_id, keys.auth("alice")), 60, 0.1, "alice's job")


def _completed(stack: Stack, job_id: str, headers: dict) -> dict | None:
    body = requests.get(f"{stack.url}/status/{job_id}", headers=headers, timeout=10).json()
    return body if body["status"] == "completed" else None


def _get(stack: Stack, path: str, headers: dict | None = None, **kwargs) -> requests.Response:
    return requests.get(f"{stack.url}{path}", headers=headers or {}, timeout=10, **kwargs)


# --- keys ----------------------------------------------------------------------------------------
def test_the_job_records_the_keys_name_and_never_the_key(stack, keys, alices_job):
    record = stack.job_record(alices_job["job_id"])
    assert record["owner"] == "alice"
    assert keys.keys["alice"][0] not in json.dumps(record)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-a-key"}, {"Authorization": "Basic YTpi"}])
def test_a_request_without_a_valid_key_is_unauthorized(stack, alices_job, headers):
    for path in ("/jobs", f"/status/{alices_job['job_id']}", "/events"):
        response = _get(stack, path, headers)
        assert response.status_code == 401, path
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert response.json()["error"]["code"] == "unauthorized"
    response = requests.post(f"{stack.url}/convert", files={"file": b"x"}, headers=headers, timeout=10)
    assert response.status_code == 401


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/", "/docs", "/openapi.json", "/static/app.js"])
def test_health_metrics_page_and_docs_need_no_key(stack, path):
    assert _get(stack, path).status_code == 200


def test_healthz_says_keys_are_on(stack):
    assert _get(stack, "/healthz").json()["auth"] == "keys"


# --- owners ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("viewer", ["alice", "ops"])
def test_the_owner_and_an_admin_see_the_job_everywhere(stack, keys, alices_job, viewer):
    job_id, headers = alices_job["job_id"], keys.auth(viewer)
    assert _get(stack, f"/status/{job_id}", headers).json()["status"] == "completed"
    assert job_id in [job["job_id"] for job in _get(stack, "/jobs", headers).json()["jobs"]]
    assert _get(stack, f"/download/{job_id}.mp3", headers).status_code == 200
    assert job_id in _streamed_job_ids(stack, "/events", headers)
    assert job_id in _streamed_job_ids(stack, f"/events/{job_id}", headers)


def test_another_key_is_answered_as_if_the_job_did_not_exist(stack, keys, alices_job):
    job_id, bob = alices_job["job_id"], keys.auth("bob")
    unknown = "0" * 32
    for path in (f"/status/{job_id}", f"/status/{unknown}"):
        response = _get(stack, path, bob)
        assert response.status_code == 404
        assert response.json() == {"job_id": path.rsplit("/", 1)[1], "status": "not_found", "message": "Job not found."}
    assert _get(stack, f"/download/{job_id}.mp3", bob).json() == _get(stack, f"/download/{unknown}.mp3", bob).json()
    assert _get(stack, f"/download/{job_id}.mp3", bob).status_code == 404
    assert _get(stack, f"/events/{job_id}", bob).status_code == 404
    assert _get(stack, "/jobs", bob).json() == {"jobs": [], "next_cursor": None}
    assert job_id not in _streamed_job_ids(stack, "/events", bob)


def test_another_key_cannot_cancel_delete_or_retry_the_job(stack, keys, alices_job):
    job_id, bob = alices_job["job_id"], keys.auth("bob")
    assert requests.delete(f"{stack.url}/jobs/{job_id}", headers=bob, timeout=10).status_code == 404
    assert requests.post(f"{stack.url}/cancel/{job_id}", headers=bob, timeout=10).status_code == 404
    assert requests.post(f"{stack.url}/jobs/{job_id}/retry", headers=bob, timeout=10).status_code == 404
    # The owner is told the truth about the same job: it finished, and cannot be retried.
    assert requests.delete(f"{stack.url}/jobs/{job_id}", headers=keys.auth("alice"), timeout=10).status_code == 409
    retry = requests.post(f"{stack.url}/jobs/{job_id}/retry", headers=keys.auth("alice"), timeout=10)
    assert retry.status_code == 409 and retry.json()["error"]["code"] == "job_not_retryable"
    assert stack.job_record(job_id)["status"] == "completed"


def test_bobs_own_jobs_are_listed_for_him_and_not_for_alice(stack, keys, media_dir, alices_job):
    with open(media_dir / VIDEO, "rb") as f:
        response = requests.post(f"{stack.url}/convert", files={"file": f}, headers=keys.auth("bob"), timeout=30)
    bobs = response.json()["job_id"]
    assert [job["job_id"] for job in _get(stack, "/jobs", keys.auth("bob")).json()["jobs"]] == [bobs]
    assert bobs not in [job["job_id"] for job in _get(stack, "/jobs", keys.auth("alice")).json()["jobs"]]
    listed_for_admin = [job["job_id"] for job in _get(stack, "/jobs", keys.auth("ops")).json()["jobs"]]
    assert {bobs, alices_job["job_id"]} <= set(listed_for_admin)


def test_a_direct_upload_is_started_by_its_key_or_an_admin_only(module_stack, keys, media_dir):
    stack = module_stack(
        "s3",
        workers=1,
        API_KEYS_FILE=str(keys.path),
        DOWNLOAD_LINK_SECRET=LINK_SECRET,
        PRESIGNED_URL_EXPIRY_SECONDS="60",
    )
    data = (media_dir / VIDEO).read_bytes()
    upload = requests.post(f"{stack.url}/uploads", json={"size": len(data)}, headers=keys.auth("alice"), timeout=10)
    assert upload.status_code == 201, upload.text
    upload = upload.json()
    assert requests.put(upload["upload_url"], data=data, headers=upload["headers"], timeout=30).status_code == 200
    start = {"upload_id": upload["upload_id"]}
    refused = requests.post(f"{stack.url}/convert", json=start, headers=keys.auth("bob"), timeout=10)
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "upload_not_found"
    started = requests.post(f"{stack.url}/convert", json=start, headers=keys.auth("ops"), timeout=10)
    assert started.status_code == 202, started.text
    assert stack.job_record(upload["upload_id"])["owner"] == "alice"
    assert _get(stack, f"/status/{upload['upload_id']}", keys.auth("bob")).status_code == 404
    assert _get(stack, f"/status/{upload['upload_id']}", keys.auth("alice")).status_code == 200


# --- signed download links ---------------------------------------------------------------------------
def test_a_signed_link_downloads_with_no_header(stack, keys, alices_job):
    link = alices_job["download_url"]
    assert "expires=" in link and "signature=" in link
    plain = requests.get(link, timeout=10)
    assert plain.status_code == 200 and plain.headers["Content-Type"] == "audio/mpeg"
    keyed = _get(stack, f"/download/{alices_job['job_id']}.mp3", keys.auth("alice"))
    assert plain.content == keyed.content and len(plain.content) > 1000


def test_every_kind_of_tampering_with_a_link_is_forbidden(stack, keys, alices_job, media_dir):
    job_id = alices_job["job_id"]
    query = alices_job["download_url"].split("?", 1)[1]
    expires = int(query.split("expires=")[1].split("&")[0])
    signature = query.split("signature=")[1]
    other_id = "f" * 32
    rotated = LinkSigner("another-secret-0123456789abcdef", 86400).query(_job_like(job_id, expires))
    for path in (
        f"/download/{other_id}.mp3?{query}",  # another job id
        f"/download/{job_id}.m4a?{query}",  # another format
        f"/download/{job_id}.mp3?expires={expires + 3600}&signature={signature}",  # a later expiry
        f"/download/{job_id}.mp3?expires={expires}&signature={signature[:-2]}xx",  # another signature
        f"/download/{job_id}.mp3?signature={signature}",  # no expiry
        f"/download/{job_id}.mp3?{rotated}",  # signed with a secret since rotated
    ):
        response = _get(stack, path)
        assert response.status_code == 403, path
        assert response.json()["error"]["code"] == "invalid_signature"


def test_an_expired_link_is_gone(stack, alices_job):
    job_id = alices_job["job_id"]
    expired = LinkSigner(LINK_SECRET, 60).query(_job_like(job_id, time.time() - 3600))
    response = _get(stack, f"/download/{job_id}.mp3?{expired}")
    assert response.status_code == 410 and response.json()["error"]["code"] == "job_expired"


def _job_like(job_id: str, finished_at: float) -> Job:
    """A completed MP3 job with this id, finished at ``finished_at`` (what a link is signed from)."""
    return Job.new(job_id, "clip.mp4", 1).model_copy(update={"finished_at": finished_at})


# --- reload ------------------------------------------------------------------------------------------
def test_a_key_removed_from_the_file_stops_working_after_the_reload(stack, keys):
    key = keys.add("carol")
    headers = {"Authorization": f"Bearer {key}"}
    wait_until(lambda: _get(stack, "/jobs", headers).status_code == 200, 12, 0.25, "carol's key to work")
    keys.remove("carol")
    started = time.monotonic()
    wait_until(lambda: _get(stack, "/jobs", headers).status_code == 401, 12, 0.25, "carol's key to stop working")
    assert time.monotonic() - started <= 11


# --- helpers -----------------------------------------------------------------------------------------
def _streamed_job_ids(stack: Stack, path: str, headers: dict, seconds: float = 1.5) -> set[str]:
    """The job ids of the ``job`` events a Server-Sent Events stream sends in ``seconds`` (from the
    start of the change history)."""
    found: set[str] = set()
    deadline = time.monotonic() + seconds
    with requests.get(
        f"{stack.url}{path}", headers={**headers, "Last-Event-ID": "0"}, stream=True, timeout=5
    ) as response:
        assert response.status_code == 200, response.text
        for line in response.iter_lines():
            if line.startswith(b"data:"):
                found.add(json.loads(line[5:])["job_id"])
            if time.monotonic() > deadline:
                break
    return found

"""Direct uploads through the upload service's API (``POST /uploads``, JSON ``POST /convert``), on fakes."""

from __future__ import annotations

import io
import time

import pytest

from services.upload.app import SUBMITTED_MESSAGE, create_app
from services.upload.direct import new_upload_id, upload_expiry
from services.upload.intake import Intake, new_job
from shared.broker import Topology
from shared.config import load_settings
from shared.errors import BrokerUnavailable
from shared.jobs import JobStatus, input_key, is_valid_job_id
from shared.messages import ConversionTask
from shared.options import ConversionOptions
from shared.storage import LocalStorage
from tests.support.keys import KeyFile
from tests.unit.fakes import FakeMetadata, FakePublisher, FakeStorage

LIMIT = 1000
EXPIRY = 120


@pytest.fixture
def intake() -> Intake:
    return Intake(FakeStorage(), FakeMetadata(), FakePublisher(), Topology(prefix="unit"), max_upload_bytes=LIMIT)


@pytest.fixture
def client(intake):
    settings = load_settings(max_upload_bytes=LIMIT, presigned_url_expiry_seconds=EXPIRY)
    return create_app(settings, intake=intake).test_client()


def uploaded(intake: Intake, data: bytes = b"video bytes", expires_in: float = EXPIRY) -> str:
    """An upload id whose file the client has PUT, its URL expiring ``expires_in`` seconds from now."""
    upload_id = new_upload_id(time.time() + expires_in)
    intake.storage.objects[input_key(upload_id)] = data
    return upload_id


def test_an_upload_gets_a_url_signed_for_its_size_and_the_expiry(client, intake):
    response = client.post("/uploads", json={"size": 500})
    assert response.status_code == 201
    body = response.get_json()
    assert is_valid_job_id(body["upload_id"])
    assert intake.storage.called("presign_put") == [(input_key(body["upload_id"]), 500, EXPIRY)]
    assert body["upload_url"].startswith("https://s3.test/") and body["method"] == "PUT"
    assert body["headers"] == {"Content-Length": "500"}
    assert (body["expires_in"], body["max_bytes"]) == (EXPIRY, LIMIT)


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({}, "invalid_size"),
        ({"size": 0}, "invalid_size"),
        ({"size": -5}, "invalid_size"),
        ({"size": "10"}, "invalid_size"),
        ({"size": True}, "invalid_size"),
        ({"size": 1.5}, "invalid_size"),
        ({"size": LIMIT + 1}, "file_too_large"),
    ],
)
def test_a_bad_or_too_large_size_is_a_400(client, intake, payload, code):
    response = client.post("/uploads", json=payload)
    assert (response.status_code, response.get_json()["error"]["code"]) == (400, code)
    assert intake.storage.called("presign_put") == []


@pytest.mark.parametrize("data", [b"[1]", b"not json", b""])
def test_a_body_that_is_no_json_object_is_a_400(client, data):
    response = client.post("/uploads", data=data, content_type="application/json")
    assert (response.status_code, response.get_json()["error"]["code"]) == (400, "invalid_json")


def test_local_storage_answers_501_with_a_clear_message(tmp_path):
    intake = Intake(LocalStorage(tmp_path), FakeMetadata(), FakePublisher(), Topology(prefix="unit"), LIMIT)
    response = create_app(load_settings(), intake=intake).test_client().post("/uploads", json={"size": 10})
    assert response.status_code == 501
    error = response.get_json()["error"]
    assert error["code"] == "not_supported" and "STORAGE_BACKEND=s3" in error["message"]


def test_starting_an_upload_queues_its_job_with_the_options(client, intake):
    upload_id = uploaded(intake)
    response = client.post("/convert", json={"upload_id": upload_id, "filename": "../talk.mov", "bitrate": 192})
    assert response.status_code == 202
    assert response.get_json() == {"job_id": upload_id, "status": "queued", "message": SUBMITTED_MESSAGE}
    job = intake.metadata.jobs[upload_id]
    assert (job.input_key, job.input_size, job.original_filename) == (input_key(upload_id), 11, "talk.mov")
    [(_, _, body)] = intake.publisher.published
    assert ConversionTask.decode(body).options.bitrate == 192


def test_starting_it_again_while_queued_returns_the_same_job(client, intake):
    upload_id = uploaded(intake)
    first = client.post("/convert", json={"upload_id": upload_id})
    again = client.post("/convert", json={"upload_id": upload_id})
    assert first.get_json() == again.get_json() and again.status_code == 202
    assert len(intake.metadata.called("create_job")) == 1


def test_starting_it_after_its_job_started_or_with_other_options_is_a_409(client, intake):
    upload_id = uploaded(intake)
    client.post("/convert", json={"upload_id": upload_id})
    response = client.post("/convert", json={"upload_id": upload_id, "format": "flac"})
    assert (response.status_code, response.get_json()["error"]["code"]) == (409, "upload_already_started")
    intake.metadata.jobs[upload_id] = intake.metadata.jobs[upload_id].model_copy(update={"status": JobStatus.COMPLETED})
    response = client.post("/convert", json={"upload_id": upload_id})
    assert (response.status_code, response.get_json()["error"]["code"]) == (409, "upload_already_started")


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({}, 400, "missing_file"),
        ({"file": "x.mp4"}, 400, "missing_file"),
        ({"upload_id": "../../etc/passwd"}, 400, "invalid_upload_id"),
        ({"upload_id": 7}, 400, "invalid_upload_id"),
        ({"upload_id": "0" * 32}, 404, "upload_not_found"),
    ],
)
def test_an_unknown_or_malformed_upload_id_is_a_json_4xx(client, intake, payload, status, code):
    response = client.post("/convert", json=payload)
    assert (response.status_code, response.get_json()["error"]["code"]) == (status, code)
    assert intake.metadata.jobs == {}


def test_a_bad_option_is_a_400_naming_it_and_queues_nothing(client, intake):
    upload_id = uploaded(intake)
    response = client.post("/convert", json={"upload_id": upload_id, "bitrat": 128})
    assert (response.status_code, response.get_json()["error"]["code"]) == (400, "invalid_option")
    assert response.get_json()["error"]["field"] == "bitrat"
    assert intake.metadata.jobs == {} and input_key(upload_id) in intake.storage.objects


@pytest.mark.parametrize(
    ("data", "status", "code"), [(b"", 400, "empty_file"), (b"x" * (LIMIT + 1), 413, "file_too_large")]
)
def test_a_stored_file_out_of_limits_is_refused_and_deleted(client, intake, data, status, code):
    upload_id = uploaded(intake, data)
    response = client.post("/convert", json={"upload_id": upload_id})
    assert (response.status_code, response.get_json()["error"]["code"]) == (status, code)
    assert intake.storage.objects == {} and intake.metadata.jobs == {}


def test_a_broker_outage_is_a_503_that_keeps_the_file_for_a_retry(client, intake):
    upload_id = uploaded(intake)
    intake.publisher.fail("publish", BrokerUnavailable("down"), times=1)
    response = client.post("/convert", json={"upload_id": upload_id})
    assert response.status_code == 503 and intake.metadata.jobs == {}
    assert client.post("/convert", json={"upload_id": upload_id}).status_code == 202


def test_multipart_convert_still_works_beside_the_json_one(client, intake):
    response = client.post(
        "/convert", data={"file": (io.BytesIO(b"\x00video"), "a.mp4")}, content_type="multipart/form-data"
    )
    assert response.status_code == 202


def test_an_upload_id_carries_its_urls_expiry():
    upload_id = new_upload_id(1_900_000_000.2)
    assert is_valid_job_id(upload_id) and upload_expiry(upload_id) == 1_900_000_001


def test_the_upload_id_handed_out_expires_with_its_url(client):
    before = time.time()
    upload_id = client.post("/uploads", json={"size": 500}).get_json()["upload_id"]
    assert before + EXPIRY <= upload_expiry(upload_id) <= time.time() + EXPIRY + 1


def test_starting_after_the_url_expired_is_410_and_the_file_is_deleted(client, intake):
    upload_id = uploaded(intake, expires_in=-1)
    response = client.post("/convert", json={"upload_id": upload_id})
    assert (response.status_code, response.get_json()["error"]["code"]) == (410, "upload_expired")
    assert input_key(upload_id) not in intake.storage.objects
    assert intake.metadata.jobs == {} and intake.publisher.published == []


def test_a_job_started_in_time_is_still_answered_after_the_expiry(client, intake):
    upload_id = uploaded(intake, expires_in=-1)
    intake.metadata.create_job(new_job(upload_id, "a.mp4", 11, ConversionOptions()))
    response = client.post("/convert", json={"upload_id": upload_id})
    assert response.status_code == 202 and response.get_json()["job_id"] == upload_id
    assert input_key(upload_id) in intake.storage.objects


# --- owners: only the key that asked for the upload, or an admin, starts it -------------------------
@pytest.fixture
def keyed(intake, tmp_path):
    """A client of an upload service with keys alice, bob and the admin ops: ``(client, keys)``."""
    keys = KeyFile(tmp_path / "keys")
    for name in ("alice", "bob"):
        keys.add(name)
    keys.add("ops", admin=True)
    settings = load_settings(
        max_upload_bytes=LIMIT,
        presigned_url_expiry_seconds=EXPIRY,
        api_keys_file=keys.path,
        download_link_secret="unit-download-link-secret",
    )
    return create_app(settings, intake=intake).test_client(), keys


def begun_and_put(client, intake, headers) -> str:
    upload_id = client.post("/uploads", json={"size": 11}, headers=headers).get_json()["upload_id"]
    intake.storage.objects[input_key(upload_id)] = b"video bytes"
    return upload_id


def test_another_key_is_told_the_upload_does_not_exist(keyed, intake):
    client, keys = keyed
    upload_id = begun_and_put(client, intake, keys.auth("alice"))
    response = client.post("/convert", json={"upload_id": upload_id}, headers=keys.auth("bob"))
    assert response.status_code == 404 and response.get_json()["error"]["code"] == "upload_not_found"
    assert intake.metadata.jobs == {} and input_key(upload_id) in intake.storage.objects


@pytest.mark.parametrize("starter", ["alice", "ops"])
def test_the_owner_or_an_admin_starts_it_and_the_job_is_the_owners(keyed, intake, starter):
    client, keys = keyed
    upload_id = begun_and_put(client, intake, keys.auth("alice"))
    response = client.post("/convert", json={"upload_id": upload_id}, headers=keys.auth(starter))
    assert response.status_code == 202
    assert intake.metadata.jobs[upload_id].owner == "alice"


def test_an_upload_id_tampered_with_is_unknown(keyed, intake):
    client, keys = keyed
    upload_id = begun_and_put(client, intake, keys.auth("alice"))
    forged = upload_id[:16] + ("0" if upload_id[16] != "0" else "1") + upload_id[17:]
    intake.storage.objects[input_key(forged)] = b"video bytes"
    response = client.post("/convert", json={"upload_id": forged}, headers=keys.auth("alice"))
    assert response.status_code == 404 and response.get_json()["error"]["code"] == "upload_not_found"

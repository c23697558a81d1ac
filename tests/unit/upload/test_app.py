"""The upload service's ``POST /convert`` through Flask's test client, on an intake built from fakes."""

from __future__ import annotations

import io

import pytest

from services.upload.app import SUBMITTED_MESSAGE, create_app
from services.upload.intake import Intake
from shared.broker import Topology
from shared.config import load_settings
from shared.errors import BrokerUnavailable, RequestRejected
from tests.unit.fakes import FakeMetadata, FakePublisher, FakeStorage

LIMIT = 1000


@pytest.fixture
def intake() -> Intake:
    return Intake(FakeStorage(), FakeMetadata(), FakePublisher(), Topology(prefix="unit"), max_upload_bytes=LIMIT)


@pytest.fixture
def client(intake):
    return create_app(load_settings(max_upload_bytes=LIMIT), intake=intake).test_client()


def post_file(client, data: bytes, filename: str = "clip.mp4", field: str = "file"):
    return client.post("/convert", data={field: (io.BytesIO(data), filename)}, content_type="multipart/form-data")


def test_a_file_part_is_accepted_with_202(client, intake):
    response = post_file(client, b"\x00video")
    assert response.status_code == 202
    body = response.get_json()
    assert body["status"] == "queued" and body["message"] == SUBMITTED_MESSAGE
    assert intake.storage.objects == {f"jobs/{body['job_id']}/input": b"\x00video"}


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (b"", 400, "empty_file"),
        (b"\x00" * (LIMIT + 1), 413, "file_too_large"),
    ],
)
def test_a_rejected_file_answers_json(client, data, status, code):
    response = post_file(client, data)
    assert response.status_code == status and response.get_json()["error"]["code"] == code


def test_a_missing_file_part_is_400_missing_file(client):
    response = post_file(client, b"\x00video", field="video")
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "missing_file"


def test_a_body_far_over_the_limit_is_413_json(client):
    response = post_file(client, b"\x00" * (LIMIT + 100_000))
    assert response.status_code == 413 and response.get_json()["error"]["code"] == "file_too_large"


def test_broker_down_is_503_and_leaves_nothing(client, intake):
    intake.publisher.fail("publish", BrokerUnavailable("RabbitMQ unreachable"))
    response = post_file(client, b"\x00video")
    assert response.status_code == 503 and response.get_json()["error"]["code"] == "broker_unavailable"
    assert intake.storage.objects == {} and intake.metadata.jobs == {}


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"Shopping list: milk, eggs.\n", "text"),
        (b"<!doctype html><html><body>hi</body></html>", "an HTML page"),
        (b"PK\x03\x04" + bytes(200), "a ZIP archive"),
        (b"\x89PNG\r\n\x1a\n" + bytes(200), "a PNG image"),
    ],
)
def test_a_file_that_is_clearly_not_media_is_415_before_anything_is_kept(client, intake, data, kind):
    response = post_file(client, data)
    assert response.status_code == 415
    assert response.get_json()["error"] == {
        "code": "not_media",
        "message": f"The file is not a video or audio file. It looks like {kind}.",
    }
    assert intake.storage.objects == {} and intake.metadata.jobs == {} and intake.publisher.published == []


def test_a_long_non_media_body_is_refused_once_its_head_is_in(tmp_path):
    """The verdict comes from the first bytes the parser writes: the rest of the file is not read."""
    from services.upload.receive import HashingFile

    staged = HashingFile(open(tmp_path / "staged", "wb"))  # noqa: SIM115 - closed by the wrapper
    with staged, pytest.raises(RequestRejected) as refused:
        staged.write(b"PK\x03\x04" + bytes(64 * 1024))
    assert (refused.value.status, refused.value.code) == (415, "not_media")
    assert (tmp_path / "staged").stat().st_size == 0, "the chunk that showed it was never written"

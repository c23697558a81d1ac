"""Conversion options on the upload service's ``POST /convert``: validated before anything is kept,
recorded on the job, carried by the task (and by a retry's task)."""

from __future__ import annotations

import io

import pytest

from services.upload.app import create_app
from services.upload.intake import Intake
from shared.broker import Topology
from shared.config import load_settings
from shared.jobs import JobErrorInfo, JobStatus
from shared.messages import ConversionTask, JobEvent
from shared.options import ConversionOptions
from tests.unit.fakes import FakeMetadata, FakePublisher, FakeStorage


class RetryingMetadata(FakeMetadata):
    """FakeMetadata that applies events (the retry's ``queued``) with the real state machine."""

    def apply_event(self, event: JobEvent):
        self._record("apply_event", event)
        updated = self.jobs[event.job_id].apply(event)
        if updated is not None:
            self.jobs[event.job_id] = updated
        return updated


@pytest.fixture
def intake() -> Intake:
    return Intake(FakeStorage(), RetryingMetadata(), FakePublisher(), Topology(prefix="unit"), max_upload_bytes=10_000)


@pytest.fixture
def client(intake):
    return create_app(load_settings(max_upload_bytes=10_000), intake=intake).test_client()


def post(client, **fields):
    return client.post(
        "/convert", data={"file": (io.BytesIO(b"\x00video"), "talk.mp4"), **fields}, content_type="multipart/form-data"
    )


def published_task(intake: Intake) -> ConversionTask:
    [(_, _, body)] = intake.publisher.published
    return ConversionTask.decode(body)


def test_options_are_recorded_on_the_job_and_carried_by_the_task(client, intake):
    response = post(client, format="m4a", bitrate="128", start="00:00:01.5", end="10", title="Talk")
    assert response.status_code == 202
    job = intake.metadata.jobs[response.get_json()["job_id"]]
    assert job.options == {"format": "m4a", "bitrate": 128, "start": 1.5, "end": 10.0, "title": "Talk"}
    assert job.output_key.endswith("/output.m4a")
    task = published_task(intake)
    assert task.output_key == job.output_key
    assert task.options == ConversionOptions(format="m4a", bitrate=128, start=1.5, end=10.0, title="Talk")


def test_no_options_make_the_same_task_as_before_options_existed(client, intake):
    job_id = post(client).get_json()["job_id"]
    assert intake.metadata.jobs[job_id].options == {}
    task = published_task(intake)
    assert task.options is None and task.output_key == f"jobs/{job_id}/output.mp3"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"bitrate": "100"}, "bitrate"),
        ({"quality": "10"}, "quality"),
        ({"sample_rate": "44100", "format": "opus"}, "sample_rate"),
        ({"channels": "3"}, "channels"),
        ({"start": "5", "end": "1"}, "end"),
        ({"format": "aac"}, "format"),
        ({"normalize": "0"}, "normalize"),
        ({"cover": "maybe"}, "cover"),
    ],
)
def test_an_invalid_option_is_400_naming_the_field_and_keeps_nothing(client, intake, fields, field):
    response = post(client, **fields)
    assert response.status_code == 400 and response.mimetype == "application/json"
    error = response.get_json()["error"]
    assert (error["code"], error["field"]) == ("invalid_option", field)
    assert error["allowed"] and error["message"]
    assert intake.storage.objects == {} and intake.metadata.jobs == {} and intake.publisher.published == []


def test_a_retry_carries_the_jobs_options_again(client, intake):
    job_id = post(client, format="flac", channels="1").get_json()["job_id"]
    intake.metadata.jobs[job_id] = intake.metadata.jobs[job_id].model_copy(
        update={"status": JobStatus.FAILED, "error": JobErrorInfo(code="storage_unavailable", message="down")}
    )
    intake.publisher.published.clear()
    assert client.post(f"/jobs/{job_id}/retry").status_code == 202
    task = published_task(intake)
    assert (task.retry, task.options) == (1, ConversionOptions(format="flac", channels=1))

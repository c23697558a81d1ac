"""``GET /status/<id>?wait=<seconds>``: the gateway's half of the long-poll (the metadata service waits)."""

from __future__ import annotations

import pytest

from services.gateway.app import create_app
from services.gateway.jobs import MAX_STATUS_WAIT_SECONDS
from shared.config import load_settings
from shared.jobs import Job, JobStatus
from tests.unit.fakes import FakeMetadata, FakeStorage, FakeUpload

JOB_ID = "0123456789abcdef0123456789abcdef"


class WaitingMetadata(FakeMetadata):
    """Records the ``wait`` each read asked for."""

    def __init__(self, *jobs: Job) -> None:
        super().__init__(*jobs)
        self.waits: list[float] = []

    def get_job(self, job_id: str, wait: float = 0.0) -> Job:
        self.waits.append(wait)
        return super().get_job(job_id)


@pytest.fixture
def metadata() -> WaitingMetadata:
    return WaitingMetadata(Job.new(JOB_ID, "clip.mp4", 10).model_copy(update={"status": JobStatus.COMPLETED}))


@pytest.fixture
def client(metadata):
    return create_app(load_settings(), metadata=metadata, storage=FakeStorage(), upload=FakeUpload()).test_client()


@pytest.mark.parametrize(
    ("query", "asked"), [("", 0.0), ("?wait=0", 0.0), ("?wait=2.5", 2.5), ("?wait=3600", MAX_STATUS_WAIT_SECONDS)]
)
def test_the_wait_is_passed_on_and_capped(client, metadata, query, asked):
    response = client.get(f"/status/{JOB_ID}{query}")
    assert response.status_code == 200 and response.json["status"] == "completed"
    assert metadata.waits == [asked]


@pytest.mark.parametrize("value", ["soon", "-1", "nan", "inf", ""])
def test_a_wait_that_is_not_seconds_is_refused(client, metadata, value):
    response = client.get(f"/status/{JOB_ID}?wait={value}")
    assert response.status_code == 400
    assert response.json["error"]["code"] == "invalid_wait"
    assert metadata.waits == []


def test_a_malformed_id_is_not_found_without_waiting(client, metadata):
    response = client.get("/status/not-a-job?wait=30")
    assert response.status_code == 404 and metadata.waits == []

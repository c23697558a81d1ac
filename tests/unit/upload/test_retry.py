"""Retrying a failed job through the upload service (``POST /jobs/<id>/retry``, ``Intake.retry``):
queued again as the next retry, or left failed as it was when the task cannot be published."""

from __future__ import annotations

import pytest

from services.upload.app import create_app
from services.upload.intake import Intake
from shared.broker import Topology
from shared.config import load_settings
from shared.errors import BrokerUnavailable
from shared.jobs import Job, JobErrorInfo, JobStatus
from shared.messages import ConversionTask, JobEvent
from tests.unit.fakes import FakeMetadata, FakePublisher, FakeStorage

JOB_ID = "0123456789abcdef0123456789abcdef"
DOWN = JobErrorInfo(code="storage_unavailable", message="Object storage is unavailable.")


class EventMetadata(FakeMetadata):
    """FakeMetadata that applies events with the real state machine (``MetadataClient.apply_event``)."""

    def apply_event(self, event: JobEvent) -> Job | None:
        self._record("apply_event", event)
        updated = self.jobs[event.job_id].apply(event)
        if updated is not None:
            self.jobs[event.job_id] = updated
        return updated


def failed_job(error: JobErrorInfo = DOWN) -> Job:
    return Job.new(JOB_ID, "talk.mp4", 5).model_copy(update={"status": JobStatus.FAILED, "attempts": 1, "error": error})


@pytest.fixture
def intake() -> Intake:
    return Intake(
        FakeStorage(), EventMetadata(failed_job()), FakePublisher(), Topology(prefix="unit"), max_upload_bytes=100
    )


@pytest.fixture
def client(intake):
    return create_app(load_settings(max_upload_bytes=100), intake=intake).test_client()


def test_a_retry_queues_the_job_as_its_next_run_and_publishes_its_task(client, intake):
    response = client.post(f"/jobs/{JOB_ID}/retry")
    assert response.status_code == 202
    assert response.get_json() == {"job_id": JOB_ID, "status": "queued", "message": "Conversion job submitted again."}
    job = intake.metadata.jobs[JOB_ID]
    assert (job.status, job.retries, job.error) == (JobStatus.QUEUED, 1, None)
    [(exchange, _, body)] = intake.publisher.published
    task = ConversionTask.decode(body)
    assert (exchange, task.job_id, task.input_key, task.retry) == ("unit.tasks", JOB_ID, job.input_key, 1)


def test_a_job_that_failed_for_its_file_is_not_retried(client, intake):
    intake.metadata.jobs[JOB_ID] = failed_job(JobErrorInfo(code="not_media", message="text"))
    response = client.post(f"/jobs/{JOB_ID}/retry")
    assert (response.status_code, response.get_json()["error"]["code"]) == (409, "job_not_retryable")
    assert intake.publisher.published == []


@pytest.mark.parametrize("job_id", ["f" * 32, "../x", "*"])
def test_an_unknown_or_malformed_job_is_404(client, job_id):
    assert client.post(f"/jobs/{job_id}/retry").status_code == 404


def test_a_retry_the_broker_refuses_leaves_the_job_failed_and_retryable(client, intake):
    intake.publisher.fail("publish", BrokerUnavailable("RabbitMQ unreachable"))
    response = client.post(f"/jobs/{JOB_ID}/retry")
    assert (response.status_code, response.get_json()["error"]["code"]) == (503, "broker_unavailable")
    job = intake.metadata.jobs[JOB_ID]
    assert (job.status, job.retries, job.error) == (JobStatus.FAILED, 1, DOWN)
    assert job.is_retryable

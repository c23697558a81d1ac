"""Cancels and progress reports in the job store and the metadata service's HTTP API, on fakeredis
and a LocalStorage in tmp_path."""

from __future__ import annotations

import pytest

from services.metadata.app import create_app
from services.metadata.records import JobRecord
from shared.config import load_settings
from shared.errors import JobNotFound
from shared.jobs import JobErrorInfo, JobStatus, manifest_key
from shared.messages import JobEvent
from shared.storage import LocalStorage

JOB_ID = "0123456789abcdef0123456789abcdef"
PREFIX = "unit:"


class FakeControl:
    """The metadata service's :class:`~services.metadata.control.WorkerControl`; records the cancels."""

    def __init__(self) -> None:
        self.cancelled: list[str] = []

    def cancel(self, job_id: str) -> bool:
        self.cancelled.append(job_id)
        return True


@pytest.fixture
def job(store, storage) -> JobRecord:
    created = JobRecord.new(JOB_ID, "talk.mp4", 5, options={"format": "m4a"}, extension="m4a")
    store.create(created)
    storage.put_bytes(created.input_key, b"video")
    return created


@pytest.fixture
def control() -> FakeControl:
    return FakeControl()


@pytest.fixture
def client(store, control):
    return create_app(load_settings(), store=store, control=control).test_client()


def event(status: JobStatus, attempt: int = 1, **fields) -> JobEvent:
    return JobEvent(job_id=JOB_ID, status=status, attempt=attempt, **fields)


def files(storage: LocalStorage) -> list[str]:
    return sorted(p.name for p in (storage.root / "jobs" / JOB_ID).iterdir())


def manifest(storage: LocalStorage) -> JobRecord:
    return JobRecord.model_validate_json(storage.get_bytes(manifest_key(JOB_ID)))


# --- the store ----------------------------------------------------------------------------------
@pytest.mark.parametrize("live", [[], [event(JobStatus.PROCESSING, progress=0)]])
def test_cancelling_a_live_job_records_it_and_deletes_its_media(store, storage, job, live):
    for earlier in live:
        store.apply(earlier)
    storage.put_bytes(job.output_key, b"half an m4a")
    cancelled, changed = store.cancel(JOB_ID)
    assert changed and cancelled.status is JobStatus.CANCELLED and cancelled.finished_at is not None
    assert store.get(JOB_ID) == cancelled == manifest(storage)
    assert files(storage) == ["job.json"], "input and output are gone, the record stays"


def test_cancelling_again_answers_the_cancelled_job_and_changes_nothing(store, job):
    first, _ = store.cancel(JOB_ID)
    again, changed = store.cancel(JOB_ID)
    assert not changed and again == first


@pytest.mark.parametrize(
    "final",
    [
        event(JobStatus.COMPLETED, output_size=5),
        event(JobStatus.FAILED, error=JobErrorInfo(code="not_media", message="no")),
    ],
)
def test_a_finished_job_is_not_cancelled_and_keeps_its_files(store, storage, job, final):
    storage.put_bytes(job.output_key, b"m4a")
    store.apply(final)
    unchanged, changed = store.cancel(JOB_ID)
    assert not changed and unchanged.status is final.status
    assert files(storage) == ["input", "job.json", "output.m4a"]


def test_cancelling_an_unknown_job_raises_job_not_found(store):
    with pytest.raises(JobNotFound):
        store.cancel("e" * 32)


def test_an_output_stored_just_after_the_cancel_is_deleted_when_its_completed_event_comes(store, storage, job):
    store.apply(event(JobStatus.PROCESSING))
    store.cancel(JOB_ID)
    storage.put_bytes(job.output_key, b"late m4a")  # the worker finished before hearing the cancel
    assert store.apply(event(JobStatus.COMPLETED, output_size=8)) is None
    assert files(storage) == ["job.json"] and store.get(JOB_ID).status is JobStatus.CANCELLED


def test_media_outside_the_jobs_own_prefix_is_not_the_cancels_to_delete(store, storage):
    producer_job = JobRecord.new(JOB_ID, "x.mov", 5).model_copy(
        update={"input_key": "incoming/x.mov", "output_key": "outputs/x.mp3"}
    )
    store.create(producer_job)
    storage.put_bytes("incoming/x.mov", b"video")
    store.cancel(JOB_ID)
    assert storage.get_bytes("incoming/x.mov") == b"video"


def test_progress_reports_go_to_redis_but_not_to_the_manifest(store, storage, job, monkeypatch):
    store.apply(event(JobStatus.PROCESSING, progress=0))
    writes: list[str] = []
    real_put = storage.put_bytes
    monkeypatch.setattr(storage, "put_bytes", lambda key, data: (writes.append(key), real_put(key, data)))
    assert store.apply(event(JobStatus.PROCESSING, progress=37)).progress == 37
    assert store.get(JOB_ID).progress == 37 and writes == []
    assert manifest(storage).progress == 0
    store.apply(event(JobStatus.COMPLETED, output_size=5))
    assert writes == [manifest_key(JOB_ID)] and manifest(storage).progress == 100


def test_cancelling_wakes_a_long_poll(store, job):
    store.cancel(JOB_ID)
    assert store.wait_terminal(JOB_ID, timeout=5).status is JobStatus.CANCELLED


# --- the HTTP API ---------------------------------------------------------------------------------
def test_post_cancel_answers_the_cancelled_job_and_tells_the_workers(client, control, job):
    response = client.post(f"/jobs/{JOB_ID}/cancel")
    assert response.status_code == 200
    assert JobRecord.model_validate_json(response.data).status is JobStatus.CANCELLED
    assert control.cancelled == [JOB_ID]


def test_post_cancel_of_a_finished_job_answers_it_as_it_is_and_tells_nobody(client, store, control, job):
    store.apply(event(JobStatus.COMPLETED, output_size=5))
    response = client.post(f"/jobs/{JOB_ID}/cancel")
    assert response.status_code == 200 and response.get_json()["status"] == "completed"
    assert control.cancelled == []


@pytest.mark.parametrize("job_id", ["e" * 32, "not-an-id"])
def test_post_cancel_of_an_unknown_job_is_404(client, control, job_id):
    response = client.post(f"/jobs/{job_id}/cancel")
    assert response.status_code == 404 and response.get_json()["error"]["code"] == "job_not_found"
    assert control.cancelled == []

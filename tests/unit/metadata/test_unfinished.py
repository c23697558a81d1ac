"""The metadata service's ``GET /unfinished?subject=``: a caller's queued and processing jobs, kept
by the store's writes (``services/metadata/unfinished.py``; rollbacks: tests/integration)."""

from __future__ import annotations

import pytest

from services.metadata.app import create_app
from services.metadata.records import JobRecord
from services.metadata.store import JobStore
from services.metadata.unfinished import UnfinishedJobs
from shared.config import load_settings
from shared.jobs import JobStatus, new_job_id
from shared.messages import JobEvent
from tests.unit.metadata.conftest import PREFIX

ALICE = "key:alice"


@pytest.fixture
def store(redis_client, storage) -> JobStore:
    return JobStore(redis_client, PREFIX, storage, [UnfinishedJobs(redis_client, PREFIX)])


@pytest.fixture
def client(store):
    return create_app(load_settings(), store=store, control=object()).test_client()


def create(store: JobStore, subject: str | None = ALICE) -> str:
    job = JobRecord.new(new_job_id(), "a.mp4", 10).model_copy(update={"quota_subject": subject})
    store.create(job)
    return job.job_id


def count(client, subject: str) -> int:
    response = client.get("/unfinished", query_string={"subject": subject})
    assert response.status_code == 200 and response.get_json()["subject"] == subject
    return response.get_json()["count"]


def test_the_count_is_the_callers_live_jobs_only(store, client):
    done = create(store)
    create(store)
    create(store, "addr:203.0.113.1")
    create(store, None)
    assert count(client, ALICE) == 2
    store.apply(JobEvent(job_id=done, status=JobStatus.FAILED, attempt=1))
    assert count(client, ALICE) == 1
    assert count(client, "key:nobody") == 0


def test_a_missing_subject_is_a_400(client):
    response = client.get("/unfinished")
    assert (response.status_code, response.get_json()["error"]["code"]) == (400, "invalid_subject")

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


def count_against(client, subject: str, limit) -> int:
    response = client.get("/unfinished", query_string={"subject": subject, "limit": limit})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["count"]


def test_against_a_limit_a_count_under_it_reads_no_record(store, client, redis_client):
    first = create(store)
    create(store)
    redis_client.delete(f"{PREFIX}job:{first}")  # a stale member: Redis lost the record
    assert count_against(client, ALICE, 3) == 2, "under the limit whatever the stale member: not verified"
    assert count_against(client, ALICE, 2) == 1, "at the limit: verified, the stale member dropped"
    assert count_against(client, ALICE, 3) == 1


def test_against_a_limit_a_count_that_reaches_it_is_exact(store, client):
    for _ in range(3):
        create(store)
    assert count_against(client, ALICE, 2) == 3
    assert count_against(client, "key:nobody", 1) == 0


@pytest.mark.parametrize("limit", ["0", "-1", "two", ""])
def test_a_limit_that_is_not_a_whole_number_of_at_least_1_is_a_400(client, limit):
    response = client.get("/unfinished", query_string={"subject": ALICE, "limit": limit})
    assert (response.status_code, response.get_json()["error"]["code"]) == (400, "invalid_limit")

"""The long-poll behind ``GET /status/<id>?wait=``: ``JobStore.wait_terminal`` on fakeredis."""

from __future__ import annotations

import threading
import time

import pytest

from services.metadata.records import JobRecord
from shared.errors import JobNotFound, JobStoreUnavailable
from shared.jobs import JobStatus
from shared.messages import JobEvent

JOB_ID = "0123456789abcdef0123456789abcdef"
PREFIX = "unit:"


@pytest.fixture
def job(store) -> JobRecord:
    created = JobRecord.new(JOB_ID, "clip.mp4", 10)
    store.create(created)
    return created


def completed() -> JobEvent:
    return JobEvent(job_id=JOB_ID, status=JobStatus.COMPLETED, attempt=1, output_size=5)


def test_a_terminal_job_is_answered_at_once(store, job):
    store.apply(completed())
    started = time.monotonic()
    assert store.wait_terminal(JOB_ID, 10).status is JobStatus.COMPLETED
    assert time.monotonic() - started < 1


def test_a_waiter_wakes_when_the_job_completes(store, job):
    threading.Timer(0.3, store.apply, args=(completed(),)).start()
    started = time.monotonic()
    assert store.wait_terminal(JOB_ID, 10).status is JobStatus.COMPLETED
    assert time.monotonic() - started < 2


def test_every_waiter_wakes(store, job):
    answers: list[JobStatus] = []
    waiters = [
        threading.Thread(target=lambda: answers.append(store.wait_terminal(JOB_ID, 10).status)) for _ in range(3)
    ]
    for waiter in waiters:
        waiter.start()
    time.sleep(0.2)
    store.apply(completed())
    for waiter in waiters:
        waiter.join(5)
    assert answers == [JobStatus.COMPLETED] * 3


def test_the_wait_ends_with_the_job_as_it_is(store, job):
    started = time.monotonic()
    assert store.wait_terminal(JOB_ID, 0.3).status is JobStatus.QUEUED
    assert 0.3 <= time.monotonic() - started < 2


def test_an_unknown_job_is_not_found_without_waiting(store):
    with pytest.raises(JobNotFound):
        store.wait_terminal(JOB_ID, 10)


def test_a_waiter_rides_out_a_redis_lost_for_a_while(store, job, server):
    def failover():
        server.connected = False  # the primary died: every call fails...
        time.sleep(1.0)
        server.connected = True  # ...until the new one serves
        store.apply(completed())

    threading.Timer(0.3, failover).start()
    assert store.wait_terminal(JOB_ID, 10).status is JobStatus.COMPLETED


def test_a_redis_lost_until_the_deadline_fails_the_wait(store, job, server):
    threading.Timer(0.2, setattr, args=(server, "connected", False)).start()
    started = time.monotonic()
    with pytest.raises(JobStoreUnavailable):
        store.wait_terminal(JOB_ID, 5)
    assert time.monotonic() - started <= 5.5

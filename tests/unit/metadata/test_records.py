"""The metadata service's job records (``services/metadata/records.py``): records stored by the
version that kept every field on ``shared.jobs.Job`` still load, a record reads as a plain ``Job``
elsewhere, and the state machine keeps a record's own fields."""

from __future__ import annotations

import json

from services.metadata.records import JobRecord, NotificationRecord
from shared.job_requests import NewJob
from shared.jobs import Job, JobStatus
from shared.messages import JobEvent
from tests.support.old_records import OLD_RECORD

JOB_ID = "0123456789abcdef0123456789abcdef"

METADATA_FIELDS = {"email", "callback_url", "notifications", "content_sha256", "cache_key", "quota_subject"}


def test_a_record_stored_by_the_previous_version_loads_with_every_field():
    record = JobRecord.model_validate_json(OLD_RECORD)
    assert (record.email, record.callback_url, record.quota_subject) == (
        "me@example.com",
        "https://hooks.example.org/siphon",
        "key:alice",
    )
    assert record.cache_key.startswith(record.content_sha256 + "-")
    assert record.notifications == [
        NotificationRecord(kind="webhook", attempt=1, at=106.0, outcome="delivered", status_code=200)
    ]
    assert (record.attempts, record.retries, record.status) == (2, 1, JobStatus.COMPLETED)


def test_a_record_written_again_is_the_json_the_previous_version_wrote():
    assert json.loads(JobRecord.model_validate_json(OLD_RECORD).model_dump_json()) == json.loads(OLD_RECORD)


def test_a_record_reads_as_a_plain_job_without_metadata_fields():
    job = Job.model_validate_json(OLD_RECORD)
    assert type(job) is Job and job.status is JobStatus.COMPLETED and job.attempts == 2
    assert not METADATA_FIELDS & set(json.loads(job.model_dump_json()))


def test_only_metadata_fields_left_shared_jobs():
    assert set(JobRecord.model_fields) - set(Job.model_fields) == METADATA_FIELDS
    assert set(NewJob.model_fields) - set(Job.model_fields) == METADATA_FIELDS - {"notifications"}


def test_a_new_job_as_upload_sends_it_is_stored_with_its_facts():
    sent = NewJob.new(JOB_ID, "clip.mp4", 3).model_copy(
        update={"email": "me@example.com", "cache_key": "digest-options", "quota_subject": "addr:10.0.0.1"}
    )
    stored = JobRecord.model_validate_json(sent.model_dump_json())
    assert (stored.email, stored.cache_key, stored.quota_subject, stored.notifications) == (
        "me@example.com",
        "digest-options",
        "addr:10.0.0.1",
        [],
    )


def test_a_transition_keeps_a_record_a_record_with_its_fields():
    queued = JobRecord.model_validate_json(OLD_RECORD).model_copy(
        update={"status": JobStatus.QUEUED, "attempts": 0, "finished_at": None}
    )
    running = queued.apply(JobEvent(job_id=JOB_ID, status=JobStatus.PROCESSING, attempt=1, retry=1))
    assert isinstance(running, JobRecord) and running.status is JobStatus.PROCESSING
    assert (running.email, running.notifications) == (queued.email, queued.notifications)


def test_a_notification_record_changes_nothing_but_the_list():
    record = NotificationRecord(kind="webhook", attempt=1, at=3.0, outcome="delivered", status_code=200)
    completed = JobRecord.new(JOB_ID, "clip.mp4", 3).model_copy(update={"status": JobStatus.COMPLETED})
    noted = completed.with_notification(record)
    assert noted.notifications == [record] and noted.model_copy(update={"notifications": []}) == completed

"""How a worker reads a job before its task (``services/conversion/job_lookup.py``), on fakes; the
real Redis and metadata service are ``tests/integration/test_job_lookup.py``."""

from __future__ import annotations

import pytest

from services.conversion.job_lookup import RecordsThenMetadata, job_lookup
from shared.config import load_settings
from shared.errors import JobNotFound, JobStoreUnavailable
from shared.job_records import JobRecords
from shared.jobs import Job, JobStatus
from tests.unit.fakes import FakeJobRecords, FakeMetadata

JOB_ID = "0123456789abcdef0123456789abcdef"


def job(status: JobStatus) -> Job:
    return Job.new(JOB_ID, "talk.mp4", 5).model_copy(update={"status": status})


def test_a_record_in_redis_answers_without_the_metadata_service():
    metadata = FakeMetadata(job(JobStatus.QUEUED))
    lookup = RecordsThenMetadata(FakeJobRecords(job(JobStatus.CANCELLED)), metadata)
    assert lookup.get_job(JOB_ID).status is JobStatus.CANCELLED
    assert metadata.calls == []


def test_a_record_redis_does_not_give_is_asked_of_the_metadata_service():
    metadata = FakeMetadata(job(JobStatus.CANCELLED))
    records = FakeJobRecords()
    assert RecordsThenMetadata(records, metadata).get_job(JOB_ID).status is JobStatus.CANCELLED
    assert records.called("get") == [JOB_ID] and metadata.called("get_job") == [JOB_ID]


@pytest.mark.parametrize("error", [JobNotFound("Job not found."), JobStoreUnavailable("down")])
def test_the_metadata_services_errors_reach_the_caller(error):
    metadata = FakeMetadata()
    metadata.fail("get_job", error)
    with pytest.raises(type(error)):
        RecordsThenMetadata(FakeJobRecords(), metadata).get_job(JOB_ID)


def test_the_lookup_reads_the_configured_redis_under_its_prefix_without_connecting():
    lookup = job_lookup(load_settings(redis_url="redis://127.0.0.1:1/3", redis_prefix="p7:"))
    assert isinstance(lookup.records, JobRecords) and lookup.records.prefix == "p7:"
    assert lookup.records.redis.connection_pool.connection_kwargs["db"] == 3

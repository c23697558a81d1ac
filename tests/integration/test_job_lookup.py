"""A worker's check, before a task, that its job was not cancelled (``services/conversion/job_lookup.py``):
the record in the real Redis as metadata's own :class:`JobStore` writes it, and the metadata
service's real app on loopback when Redis has no record or does not answer."""

from __future__ import annotations

import pytest

from services.conversion.job_lookup import job_lookup
from services.conversion.tasks import TaskRunner
from services.metadata.records import JobRecord
from services.metadata.store import JobStore
from shared.broker import Settle
from shared.config import load_settings
from shared.errors import JobStoreUnavailable
from shared.job_records import job_record_key
from shared.jobs import JobStatus, input_key, new_job_id, output_key
from shared.messages import ConversionTask, JobEvent
from tests.support.net import free_port
from tests.unit.fakes import FakeConverter, FakeStorage

pytestmark = pytest.mark.integration


def nobody() -> str:
    """An address where nothing listens."""
    return f"127.0.0.1:{free_port()}"


def cancelled_job(store: JobStore) -> str:
    job = JobRecord.new(new_job_id(), "clip.mp4", 10)
    store.create(job)
    store.cancel(job.job_id)
    return job.job_id


def test_a_job_cancelled_while_queued_is_read_from_redis_without_the_metadata_service(store, prefix):
    job_id = cancelled_job(store)
    lookup = job_lookup(load_settings(redis_prefix=prefix, metadata_url=f"http://{nobody()}"))
    assert lookup.get_job(job_id).status is JobStatus.CANCELLED


def test_its_task_is_skipped_unconverted(store, prefix, tmp_path):
    job_id = cancelled_job(store)
    s = load_settings(redis_prefix=prefix, metadata_url=f"http://{nobody()}", work_dir=tmp_path / "work")
    storage, converter, events = FakeStorage({input_key(job_id): b"video"}), FakeConverter(), []
    runner = TaskRunner(s, storage, converter, events.append, jobs=job_lookup(s))
    task = ConversionTask(job_id=job_id, input_key=input_key(job_id), output_key=output_key(job_id)).encode()
    outcome = runner.handle(task, attempt=1)
    assert (outcome.settle, outcome.code) == (Settle.ACK, "cancelled")
    assert events == [] and converter.calls == [] and storage.calls == []


def test_a_record_missing_from_redis_is_asked_of_the_metadata_service(store, prefix, redis_client, metadata_url):
    job_id = cancelled_job(store)
    redis_client.delete(job_record_key(prefix, job_id))  # Redis lost it; the manifest still has it
    lookup = job_lookup(load_settings(redis_prefix=prefix, metadata_url=metadata_url))
    assert lookup.get_job(job_id).status is JobStatus.CANCELLED
    assert redis_client.exists(job_record_key(prefix, job_id)), "metadata put the record back"


def test_an_unreachable_redis_is_replaced_by_the_metadata_service(store, prefix, metadata_url):
    job_id = cancelled_job(store)
    s = load_settings(redis_url=f"redis://{nobody()}/0", redis_prefix=prefix, metadata_url=metadata_url)
    assert job_lookup(s).get_job(job_id).status is JobStatus.CANCELLED


def test_a_running_job_reads_as_running(store, prefix):
    job = JobRecord.new(new_job_id(), "clip.mp4", 10)
    store.create(job)
    store.apply(JobEvent(job_id=job.job_id, status=JobStatus.PROCESSING, progress=40))
    lookup = job_lookup(load_settings(redis_prefix=prefix, metadata_url=f"http://{nobody()}"))
    assert lookup.get_job(job.job_id).status is JobStatus.PROCESSING


def test_with_neither_answering_the_caller_hears_the_store_is_unavailable(prefix):
    s = load_settings(redis_url=f"redis://{nobody()}/0", redis_prefix=prefix, metadata_url=f"http://{nobody()}")
    with pytest.raises(JobStoreUnavailable):
        job_lookup(s).get_job(new_job_id())

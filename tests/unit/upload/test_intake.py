"""Accepting an upload all-or-nothing (``services.upload.intake.Intake``), on recording fakes."""

from __future__ import annotations

import io

import pytest

from services.upload.intake import Intake
from shared.broker import Topology
from shared.errors import BrokerUnavailable, JobStoreUnavailable, RequestRejected, StorageUnavailable
from shared.jobs import JobStatus, is_valid_job_id, job_prefix
from shared.messages import ConversionTask
from tests.unit.fakes import FakeMetadata, FakePublisher, FakeStorage

LIMIT = 100
TOPOLOGY = Topology(prefix="unit")


@pytest.fixture
def storage() -> FakeStorage:
    return FakeStorage()


@pytest.fixture
def intake(storage, metadata, publisher) -> Intake:
    return Intake(storage, metadata, publisher, TOPOLOGY, max_upload_bytes=LIMIT)


def nothing_kept(storage: FakeStorage, metadata: FakeMetadata, publisher: FakePublisher) -> bool:
    return storage.objects == {} and metadata.jobs == {} and publisher.published == []


def test_a_file_becomes_a_stored_recorded_and_published_job(intake, storage, metadata, publisher):
    job = intake.submit(io.BytesIO(b"video bytes"), "../../holiday\u202e.mp4")
    assert job.status is JobStatus.QUEUED and is_valid_job_id(job.job_id)
    assert storage.objects == {job.input_key: b"video bytes"}
    assert metadata.jobs == {job.job_id: job}
    assert (job.original_filename, job.input_size) == ("holiday.mp4", 11)
    [(exchange, routing_key, body)] = publisher.published
    assert (exchange, routing_key) == ("unit.tasks", "conversion")
    assert ConversionTask.decode(body) == ConversionTask(
        job_id=job.job_id, input_key=job.input_key, output_key=job.output_key
    )


def test_the_steps_run_in_order_store_record_publish(intake, storage, metadata, publisher):
    job = intake.submit(io.BytesIO(b"v"), None)
    assert storage.calls == [("put_stream", job.input_key)]
    assert [name for name, _ in metadata.calls] == ["create_job"] and job.original_filename == ""
    assert len(publisher.calls) == 1


def test_every_upload_gets_its_own_job(intake):
    ids = {intake.submit(io.BytesIO(b"v"), "same.mp4").job_id for _ in range(5)}
    assert len(ids) == 5


def test_publisher_down_deletes_the_job_and_the_object(intake, storage, metadata, publisher):
    publisher.fail("publish", BrokerUnavailable("RabbitMQ unreachable"))
    with pytest.raises(BrokerUnavailable):
        intake.submit(io.BytesIO(b"video"), "a.mp4")
    [created] = metadata.called("create_job")
    assert metadata.called("delete_job") == [created.job_id]
    assert storage.called("delete_prefix") == [job_prefix(created.job_id)]
    assert nothing_kept(storage, metadata, publisher)


def test_metadata_down_deletes_the_object_and_publishes_nothing(intake, storage, metadata, publisher):
    metadata.fail("create_job", JobStoreUnavailable("metadata service unreachable"))
    with pytest.raises(JobStoreUnavailable):
        intake.submit(io.BytesIO(b"video"), "a.mp4")
    [put_key] = storage.called("put_stream")
    assert storage.called("delete_prefix") == [put_key.rsplit("input", 1)[0]]
    assert publisher.calls == [] and metadata.called("delete_job") == []
    assert storage.objects == {} and publisher.published == []


def test_storage_down_records_nothing(intake, storage, metadata, publisher):
    storage.fail("put_stream", StorageUnavailable("disk gone"))
    with pytest.raises(StorageUnavailable):
        intake.submit(io.BytesIO(b"video"), "a.mp4")
    assert metadata.calls == [] and publisher.calls == []


def test_an_empty_file_is_400_empty_file_and_nothing_is_kept(intake, storage, metadata, publisher):
    with pytest.raises(RequestRejected) as info:
        intake.submit(io.BytesIO(b""), "empty.mp4")
    assert (info.value.status, info.value.code) == (400, "empty_file")
    assert metadata.calls == [] and publisher.calls == []
    assert len(storage.called("delete_prefix")) == 1
    assert nothing_kept(storage, metadata, publisher)


@pytest.mark.parametrize(
    ("data", "status", "code"), [(b"", 400, "empty_file"), (b"PK\x03\x04" + bytes(100), 415, "not_media")]
)
def test_a_received_head_that_is_empty_or_not_media_is_refused_before_storage_is_touched(
    intake, storage, metadata, publisher, data, status, code
):
    with pytest.raises(RequestRejected) as info:
        intake.submit(io.BytesIO(data), "upload.mp4", head=data[:8192])
    assert (info.value.status, info.value.code) == (status, code)
    assert storage.calls == [] and metadata.calls == [] and publisher.calls == []


def test_a_file_over_the_limit_is_413_and_nothing_is_kept(intake, storage, metadata, publisher):
    assert intake.submit(io.BytesIO(b"x" * LIMIT), "exactly.mp4").input_size == LIMIT
    storage.objects.clear()
    metadata.jobs.clear()
    publisher.published.clear()
    with pytest.raises(RequestRejected) as info:
        intake.submit(io.BytesIO(b"x" * (LIMIT + 1)), "big.mp4")
    assert (info.value.status, info.value.code) == (413, "file_too_large")
    assert nothing_kept(storage, metadata, publisher)

"""``GET /status`` answered from the job's record in Redis (``services/gateway/status_reads.py``),
here over a fake of the records; the real Redis is ``tests/integration/test_status_reads.py``."""

from __future__ import annotations

import pytest

from services.gateway.app import create_app
from services.gateway.status_reads import waits
from shared.config import load_settings
from shared.job_records import JobRecords
from shared.jobs import Job, JobStatus
from tests.support.keys import KeyFile
from tests.unit.fakes import FakeJobRecords, FakeMetadata, FakeStorage, FakeUpload

JOB_ID = "0123456789abcdef0123456789abcdef"


def job(status: JobStatus, owner: str | None = None, **update) -> Job:
    return Job.new(JOB_ID, "clip.mp4", 10, owner=owner).model_copy(update={"status": status, **update})


def client_with(records: FakeJobRecords, metadata: FakeMetadata, **settings):
    app = create_app(
        load_settings(**settings), metadata=metadata, storage=FakeStorage(), upload=FakeUpload(), records=records
    )
    return app.test_client()


def test_a_processing_job_in_redis_is_answered_without_the_metadata_service():
    metadata = FakeMetadata()
    client = client_with(FakeJobRecords(job(JobStatus.PROCESSING, progress=12)), metadata)
    answer = client.get(f"/status/{JOB_ID}")
    assert answer.status_code == 200 and answer.json["progress"] == 12
    assert metadata.calls == []


def test_a_cache_buster_in_the_query_string_is_answered_from_redis_too():
    metadata = FakeMetadata()
    client = client_with(FakeJobRecords(job(JobStatus.QUEUED)), metadata)
    assert client.get(f"/status/{JOB_ID}?t=1712345678").json["status"] == "queued"
    assert metadata.calls == []


def test_a_long_poll_and_a_redis_miss_go_to_the_metadata_service():
    records = FakeJobRecords(job(JobStatus.PROCESSING))
    metadata = FakeMetadata(job(JobStatus.PROCESSING))
    client = client_with(records, metadata)
    assert client.get(f"/status/{JOB_ID}?wait=0").status_code == 200
    assert client.get(f"/status/{JOB_ID}?wait=").status_code == 400
    records.jobs.clear()
    assert client.get(f"/status/{JOB_ID}").json["status"] == "processing"
    assert metadata.called("get_job") == [JOB_ID, JOB_ID]


class NoRedis:
    """A Redis client that must not be used."""

    def get(self, key):
        raise AssertionError(f"read {key!r}")


def test_a_malformed_id_is_not_looked_up_in_redis():
    records = JobRecords(NoRedis(), "p:")
    assert records.get("0123456789abcdef0123456789abcdef:done") is None
    assert records.get("../job") is None


def test_a_job_read_from_redis_is_only_its_owners(tmp_path):
    keys = KeyFile(tmp_path / "keys")
    keys.add("alice")
    keys.add("bob")
    records = FakeJobRecords(job(JobStatus.PROCESSING, owner="alice"))
    client = client_with(records, FakeMetadata(), api_keys_file=keys.path, download_link_secret="x" * 32)
    assert client.get(f"/status/{JOB_ID}", headers=keys.auth("alice")).status_code == 200
    assert client.get(f"/status/{JOB_ID}", headers=keys.auth("bob")).status_code == 404
    assert client.get(f"/status/{JOB_ID}").status_code == 401
    assert records.called("get") == [JOB_ID, JOB_ID], "a caller without a key was refused before any read"


@pytest.mark.parametrize(
    "query, expected",
    [("", False), ("t=1", False), ("wait=5", True), ("wait=", True), ("t=1&wait", True), ("awaited=1", False)],
)
def test_waits_is_true_for_any_wait_parameter(query, expected):
    assert waits(query) is expected

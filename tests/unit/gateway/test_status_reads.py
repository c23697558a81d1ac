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
    """A Redis client that must not be used (not even its connection pool)."""

    def __getattr__(self, name):
        raise AssertionError(f"used the redis client's {name!r}")


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


class RecordingConnection:
    """A redis-py connection that answers every command with ``reply`` and records what it was told."""

    def __init__(self, reply: bytes | None = None, **kwargs):
        self.reply = reply
        self.commands: list[tuple] = []
        self.disconnected = False

    def send_command(self, *args):
        self.commands.append(args)

    def read_response(self):
        return self.reply

    def disconnect(self):
        self.disconnected = True


class PoolOf:
    """The part of a redis-py pool the reader uses: how to make a connection, and whether the pool
    would keep one (a Sentinel pool keeps none on an address that is no longer the primary's)."""

    def __init__(self, reply: bytes, keeps: bool):
        self.connection_kwargs = {"reply": reply}
        self.keeps = keeps
        self.made: list[RecordingConnection] = []

    def connection_class(self, **kwargs):
        self.made.append(RecordingConnection(**kwargs))
        return self.made[-1]

    def owns_connection(self, connection):
        return self.keeps


class ClientOf:
    def __init__(self, pool: PoolOf):
        self.connection_pool = pool


@pytest.mark.parametrize("keeps, connections", [(True, 1), (False, 3)])
def test_a_connection_is_kept_for_the_next_read_only_while_its_pool_would_keep_it(keeps, connections):
    pool = PoolOf(job(JobStatus.PROCESSING).model_dump_json().encode(), keeps)
    records = JobRecords(ClientOf(pool), "p:")
    assert [records.get(JOB_ID).status for _ in range(3)] == [JobStatus.PROCESSING] * 3
    assert len(pool.made) == connections
    assert [c.commands for c in pool.made] == [[("GET", f"p:job:{JOB_ID}")] * (3 // connections)] * connections
    assert all(c.disconnected is not keeps for c in pool.made)

"""The gateway's ``GET /status`` reading job records straight from the real Redis
(``services/gateway/status_reads.py``, under ``shared/job_records.py``), with the metadata service
as the fallback: records are written by metadata's own :class:`JobStore`, and the metadata service,
when a test needs one, is its real app served over HTTP on loopback."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from services.gateway.app import create_app as create_gateway
from services.metadata.records import JobRecord
from services.metadata.store import JobStore
from shared.config import load_settings
from shared.job_records import JobRecords, job_record_key
from shared.jobs import JobStatus, new_job_id
from shared.messages import JobEvent
from tests.support.keys import KeyFile
from tests.support.net import free_port
from tests.support.stack import REDIS_URL
from tests.unit.fakes import FakeStorage, FakeUpload

pytestmark = pytest.mark.integration

STATE_ORDER = {"queued": 0, "processing": 1, "completed": 2}


def gateway(prefix: str, metadata_url: str, **settings):
    """A gateway test client on the real Redis under ``prefix``; its metadata service is at ``metadata_url``."""
    s = load_settings(redis_prefix=prefix, metadata_url=metadata_url, http_timeout_seconds=2, **settings)
    return create_gateway(s, storage=FakeStorage(), upload=FakeUpload()).test_client()


def no_metadata_url() -> str:
    """A metadata URL where nothing listens: any call to it answers 503."""
    return f"http://127.0.0.1:{free_port()}"


def create(store: JobStore, owner: str | None = None) -> str:
    job = JobRecord.new(new_job_id(), "clip.mp4", 10).model_copy(update={"owner": owner})
    store.create(job)
    return job.job_id


def test_a_processing_job_is_answered_from_redis_without_the_metadata_service(store, prefix):
    job_id = create(store)
    store.apply(JobEvent(job_id=job_id, status=JobStatus.PROCESSING, progress=37))
    client = gateway(prefix, no_metadata_url())
    answer = client.get(f"/status/{job_id}")
    assert answer.status_code == 200, answer.json
    assert answer.json == {
        "job_id": job_id,
        "status": "processing",
        "message": "Conversion in progress.",
        "progress": 37,
    }
    etag = answer.headers["ETag"]
    assert client.get(f"/status/{job_id}", headers={"If-None-Match": etag}).status_code == 304


def test_a_record_missing_from_redis_is_restored_by_the_metadata_service(store, prefix, redis_client, metadata_url):
    job_id = create(store)
    redis_client.delete(job_record_key(prefix, job_id))  # Redis lost it; the manifest still has it
    answer = gateway(prefix, metadata_url).get(f"/status/{job_id}")
    assert answer.status_code == 200 and answer.json["status"] == "queued"
    assert redis_client.exists(job_record_key(prefix, job_id)), "metadata put the record back"


def test_a_record_missing_from_redis_while_metadata_is_unreachable_is_a_503(store, prefix, redis_client):
    job_id = create(store)
    redis_client.delete(job_record_key(prefix, job_id))
    answer = gateway(prefix, no_metadata_url()).get(f"/status/{job_id}")
    assert answer.status_code == 503 and answer.json["error"]["code"] == "metadata_unavailable"


def test_an_unknown_job_is_a_404_from_the_metadata_service(prefix, metadata_url):
    answer = gateway(prefix, metadata_url).get(f"/status/{new_job_id()}")
    assert answer.status_code == 404 and answer.json["status"] == "not_found"


def test_another_keys_job_is_a_404_and_its_owners_a_200(store, prefix, tmp_path, metadata_url):
    keys = KeyFile(tmp_path / "keys")
    for name in ("alice", "bob"):
        keys.add(name)
    keys.add("root", admin=True)
    job_id = create(store, owner="alice")
    store.apply(JobEvent(job_id=job_id, status=JobStatus.PROCESSING))
    client = gateway(prefix, metadata_url, api_keys_file=keys.path, download_link_secret="x" * 32)
    assert client.get(f"/status/{job_id}", headers=keys.auth("alice")).json["status"] == "processing"
    assert client.get(f"/status/{job_id}", headers=keys.auth("root")).status_code == 200
    refused = client.get(f"/status/{job_id}", headers=keys.auth("bob"))
    assert refused.status_code == 404 and refused.json["status"] == "not_found"
    assert client.get(f"/status/{job_id}").status_code == 401


def test_a_long_poll_still_waits_at_the_metadata_service(store, prefix, metadata_url):
    job_id = create(store)
    started = time.monotonic()
    answer = gateway(prefix, metadata_url).get(f"/status/{job_id}?wait=0.5")
    assert answer.status_code == 200 and answer.json["status"] == "queued"
    assert time.monotonic() - started >= 0.5, "answered at once: the long-poll did not reach metadata"


def test_a_status_read_while_the_job_moves_on_never_goes_backwards(store, prefix):
    job_id = create(store)
    client = gateway(prefix, no_metadata_url())
    seen: list[tuple[int, int]] = []

    def move_on() -> None:
        for progress in range(0, 100, 3):
            store.apply(JobEvent(job_id=job_id, status=JobStatus.PROCESSING, progress=progress))
        store.apply(JobEvent(job_id=job_id, status=JobStatus.COMPLETED, output_size=1000))

    writer = threading.Thread(target=move_on)
    writer.start()
    while writer.is_alive() or not seen or seen[-1][0] != STATE_ORDER["completed"]:
        body = client.get(f"/status/{job_id}").json
        seen.append((STATE_ORDER[body["status"]], body.get("progress", 100 if body["status"] == "completed" else -1)))
    writer.join()
    assert seen == sorted(seen), "a later answer showed an earlier state or less progress"
    assert {state for state, _ in seen} >= {STATE_ORDER["processing"], STATE_ORDER["completed"]}


def named_records(prefix: str, name: str) -> JobRecords:
    """The gateway's record reader on the real Redis, its connections named ``name`` (``CLIENT SETNAME``)."""
    return JobRecords(redis.Redis.from_url(REDIS_URL, client_name=name, socket_timeout=5), prefix)


def connections_named(client: redis.Redis, name: str) -> list[dict]:
    return [c for c in client.client_list() if c.get("name") == name]


def test_record_reads_one_after_another_share_one_connection(store, prefix, redis_client, run_id):
    job_id = create(store)
    records = named_records(prefix, f"it-{run_id}")
    assert [records.get(job_id).status for _ in range(5)] == [JobStatus.QUEUED] * 5
    assert len(connections_named(redis_client, f"it-{run_id}")) == 1


def test_a_record_read_after_redis_closed_the_kept_connection_reads_on_a_new_one(store, prefix, redis_client, run_id):
    job_id = create(store)
    records = named_records(prefix, f"it-{run_id}")
    assert records.get(job_id) is not None
    [kept] = connections_named(redis_client, f"it-{run_id}")
    redis_client.client_kill_filter(_id=kept["id"])
    assert records.get(job_id).job_id == job_id
    [new] = connections_named(redis_client, f"it-{run_id}")
    assert new["id"] != kept["id"]


def test_a_record_read_that_redis_refuses_is_left_to_the_metadata_service(prefix):
    records = JobRecords(redis.Redis(port=free_port(), socket_connect_timeout=1), prefix)
    assert records.get(new_job_id()) is None

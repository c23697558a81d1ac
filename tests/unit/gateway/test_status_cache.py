"""``GET /status`` answers of final jobs kept in the gateway process (``services/gateway/status_cache.py``):
what is kept, what is not, the owner check on a hit, and ETag/304."""

from __future__ import annotations

import time

import pytest

from services.gateway.app import create_app
from services.gateway.status_cache import StatusCache, etag_matches
from shared.config import load_settings
from shared.jobs import Job, JobErrorInfo, JobStatus
from tests.support.keys import KeyFile
from tests.unit.fakes import FakeMetadata, FakeStorage, FakeUpload

JOB_ID = "0123456789abcdef0123456789abcdef"


def job(status: JobStatus, owner: str | None = None, **update) -> Job:
    fields = {"status": status, "finished_at": time.time(), **update}
    return Job.new(JOB_ID, "clip.mp4", 10, owner=owner).model_copy(update=fields)


def app_with(metadata: FakeMetadata, **settings):
    return create_app(load_settings(**settings), metadata=metadata, storage=FakeStorage(), upload=FakeUpload())


def test_a_completed_answer_is_read_once_then_served_from_the_cache():
    metadata = FakeMetadata(job(JobStatus.COMPLETED))
    client = app_with(metadata).test_client()
    first, second = client.get(f"/status/{JOB_ID}"), client.get(f"/status/{JOB_ID}")
    assert first.status_code == second.status_code == 200
    assert first.data == second.data and first.json["status"] == "completed"
    assert first.headers["ETag"] == second.headers["ETag"]
    assert metadata.called("get_job") == [JOB_ID]


@pytest.mark.parametrize("status", [JobStatus.QUEUED, JobStatus.PROCESSING])
def test_an_unfinished_job_is_read_afresh_every_time(status):
    metadata = FakeMetadata(job(status))
    client = app_with(metadata).test_client()
    client.get(f"/status/{JOB_ID}")
    metadata.jobs[JOB_ID] = job(JobStatus.COMPLETED)
    assert client.get(f"/status/{JOB_ID}").json["status"] == "completed"
    assert len(metadata.called("get_job")) == 2


def test_a_retryable_failure_is_not_kept_and_a_final_one_is():
    cache = StatusCache(output_ttl=86400)
    retryable = job(JobStatus.FAILED, error=JobErrorInfo(code="storage_unavailable", message="x"))
    final = job(JobStatus.FAILED, error=JobErrorInfo(code="no_audio_stream", message="x"))
    assert not cache.cacheable(retryable)
    assert cache.cacheable(final)


def test_a_completed_job_about_to_expire_is_not_kept():
    cache = StatusCache(output_ttl=60, seconds=2)
    assert cache.cacheable(job(JobStatus.COMPLETED, finished_at=time.time() - 10))
    assert not cache.cacheable(job(JobStatus.COMPLETED, finished_at=time.time() - 59))


def test_a_kept_answer_goes_stale_after_its_seconds():
    metadata = FakeMetadata(job(JobStatus.COMPLETED))
    flask_app = app_with(metadata)
    client = flask_app.test_client()
    flask_app.extensions["siphon.gateway"].status.cache.seconds = 0.05
    client.get(f"/status/{JOB_ID}")
    client.get(f"/status/{JOB_ID}")
    time.sleep(0.06)
    client.get(f"/status/{JOB_ID}")
    assert len(metadata.called("get_job")) == 2


def test_if_none_match_with_the_etag_answers_304_without_a_body():
    client = app_with(FakeMetadata(job(JobStatus.COMPLETED))).test_client()
    etag = client.get(f"/status/{JOB_ID}").headers["ETag"]
    for headers in ({"If-None-Match": etag}, {"If-None-Match": f'"other", W/{etag}'}, {"If-None-Match": "*"}):
        answer = client.get(f"/status/{JOB_ID}", headers=headers)
        assert answer.status_code == 304 and answer.data == b"" and answer.headers["ETag"] == etag
    assert client.get(f"/status/{JOB_ID}", headers={"If-None-Match": '"other"'}).status_code == 200


def test_the_route_answers_304_too_for_an_unfinished_job():
    client = app_with(FakeMetadata(job(JobStatus.PROCESSING))).test_client()
    etag = client.get(f"/status/{JOB_ID}").headers["ETag"]
    assert client.get(f"/status/{JOB_ID}", headers={"If-None-Match": etag}).status_code == 304


def test_a_cached_answer_is_still_only_its_owners(tmp_path):
    keys = KeyFile(tmp_path / "keys")
    keys.add("alice")
    keys.add("bob")
    keys.add("root", admin=True)
    metadata = FakeMetadata(job(JobStatus.COMPLETED, owner="alice"))
    client = app_with(metadata, api_keys_file=keys.path, download_link_secret="x" * 32).test_client()
    assert client.get(f"/status/{JOB_ID}", headers=keys.auth("alice")).status_code == 200
    assert client.get(f"/status/{JOB_ID}", headers=keys.auth("bob")).status_code == 404
    assert client.get(f"/status/{JOB_ID}").status_code == 401
    assert client.get(f"/status/{JOB_ID}", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get(f"/status/{JOB_ID}", headers=keys.auth("root")).status_code == 200
    assert metadata.called("get_job") == [JOB_ID]  # every answer after the first came from the cache


def test_answers_are_kept_per_host():
    metadata = FakeMetadata(job(JobStatus.COMPLETED))
    client = app_with(metadata).test_client()
    one = client.get(f"/status/{JOB_ID}", base_url="http://one.example")
    two = client.get(f"/status/{JOB_ID}", base_url="http://two.example")
    assert one.json["download_url"].startswith("http://one.example/")
    assert two.json["download_url"].startswith("http://two.example/")


def test_etag_matches_follows_rfc_9110_weak_comparison():
    assert etag_matches('W/"a"', '"a"') and etag_matches('"b", "a"', '"a"') and etag_matches("*", '"a"')
    assert not etag_matches(None, '"a"') and not etag_matches('"b"', '"a"')

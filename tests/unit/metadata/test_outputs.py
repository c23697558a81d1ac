"""The output cache serves a hit only when its output is in storage (``services/metadata/outputs.py``)."""

from __future__ import annotations

import json

import pytest

from services.metadata.outputs import OutputCache
from services.metadata.records import JobRecord
from shared.errors import StorageUnavailable
from shared.jobs import JobStatus, new_job_id
from tests.unit.metadata.conftest import PREFIX

CACHE_KEY = "digest-options"
ORIGIN_OUTPUT = "jobs/0123456789abcdef0123456789abcdef/output.mp3"


@pytest.fixture
def cache(redis_client, storage) -> OutputCache:
    cache = OutputCache(redis_client, PREFIX, storage)
    entry = {"job_id": "0123456789abcdef0123456789abcdef", "output_key": ORIGIN_OUTPUT, "output_size": 3}
    redis_client.set(cache.entry_key(CACHE_KEY), json.dumps(entry))
    return cache


def repeat_upload() -> JobRecord:
    return JobRecord.new(new_job_id(), "clip.mp4", 3).model_copy(update={"cache_key": CACHE_KEY})


def holders(redis_client, cache: OutputCache) -> set[str]:
    return {member.decode() for member in redis_client.smembers(cache.holders_key(ORIGIN_OUTPUT))}


def test_a_hit_whose_output_is_stored_completes_at_once_and_holds_it(cache, storage, redis_client):
    storage.put_bytes(ORIGIN_OUTPUT, b"mp3")
    job = cache.reuse(repeat_upload())
    assert job.cached and job.status is JobStatus.COMPLETED and job.output_key == ORIGIN_OUTPUT
    assert holders(redis_client, cache) == {job.job_id}


def test_a_hit_whose_output_is_gone_is_dropped_and_the_upload_is_converted(cache, redis_client):
    upload = repeat_upload()
    job = cache.reuse(upload)
    assert job == upload and job.status is JobStatus.QUEUED and not job.cached
    assert redis_client.get(cache.entry_key(CACHE_KEY)) is None, "the entry pointing at nothing is dropped"
    assert holders(redis_client, cache) == set(), "the claim's hold is given back"


def test_when_storage_cannot_say_the_upload_is_converted_and_the_entry_kept(cache, storage, redis_client, monkeypatch):
    def unavailable(key: str) -> int:
        raise StorageUnavailable("s3 head: timeout")

    monkeypatch.setattr(storage, "size", unavailable)
    upload = repeat_upload()
    assert cache.reuse(upload) == upload
    assert json.loads(redis_client.get(cache.entry_key(CACHE_KEY)))["output_key"] == ORIGIN_OUTPUT
    assert holders(redis_client, cache) == set()

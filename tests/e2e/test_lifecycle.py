"""Lifecycle and the output cache end to end: inputs deleted when a job ends, outputs expired by an
rq scheduled job after OUTPUT_TTL (then ``expired`` and 410), identical uploads converted once and
a shared output deleted only by the last job holding it (issue 5: "Lifecycle and cache")."""

from __future__ import annotations

import time

import pytest

from tests.support.http import assert_json_error
from tests.support.net import wait_until
from tests.support.not_media import write_unreadable
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

VIDEO = "opus_in_mp4_stereo_audio_only.mp4"
TTL_SECONDS = 4


@pytest.fixture(scope="module")
def stack(module_stack) -> Stack:
    return module_stack("local", workers=1, OUTPUT_TTL=str(TTL_SECONDS))


def submit(stack: Stack, path, **fields) -> dict:
    response = stack.convert(path, **fields)
    assert response.status_code == 202, response.text
    return response.json()


def own_keys(stack: Stack, job_id: str) -> list[str]:
    return [key.rsplit("/", 1)[1] for key in stack.stored_keys() if key.startswith(f"jobs/{job_id}/")]


def wait_expired(stack: Stack, job_id: str, timeout: float = 30) -> dict:
    return stack.wait_for_job(job_id, timeout=timeout, states=("expired",))


def test_input_is_deleted_when_the_job_ends(stack, media_dir, tmp_path):
    notes = write_unreadable(tmp_path / "notes.mp4")  # fails in the worker (text is refused at upload)
    completed = submit(stack, media_dir / VIDEO, title="input test")["job_id"]
    failed = submit(stack, notes)["job_id"]
    stack.wait_for_jobs([completed, failed], timeout=30)
    assert own_keys(stack, completed) == ["job.json", "output.mp3"]
    assert own_keys(stack, failed) == ["job.json"]


def test_output_expires_after_output_ttl_and_its_download_is_410(stack, media_dir):
    job_id = submit(stack, media_dir / VIDEO, quality="5")["job_id"]
    completed_at = time.monotonic()
    assert stack.wait_for_job(job_id, timeout=30)["status"] == "completed"
    assert stack.download(job_id).status_code == 200

    body = wait_expired(stack, job_id)
    assert time.monotonic() - completed_at >= TTL_SECONDS - 1  # rq schedules in whole seconds
    assert body == {
        "job_id": job_id,
        "status": "expired",
        "message": "The converted file has expired and was deleted; convert the video again.",
        "options": {"quality": 5},
    }
    assert_json_error(stack.download(job_id), 410, "job_expired")
    assert own_keys(stack, job_id) == ["job.json"]
    record = stack.job_record(job_id)
    assert record["output_size"] > 0, "the facts stay"


def test_identical_upload_is_converted_once_and_other_options_are_not(stack, media_dir):
    first = submit(stack, media_dir / VIDEO, bitrate="96")
    assert first["status"] == "queued"
    assert stack.wait_for_job(first["job_id"], timeout=30)["status"] == "completed"

    repeat = submit(stack, media_dir / VIDEO, bitrate="96", email="me@example.com")  # notification fields don't count
    assert repeat["job_id"] != first["job_id"]
    assert repeat == {  # the contract's answer, as for any upload; the job is completed already
        "job_id": repeat["job_id"],
        "status": "queued",
        "message": "Conversion job submitted successfully.",
        "cached": True,
    }
    status = stack.status(repeat["job_id"]).json()
    assert status["status"] == "completed" and status["cached"] is True
    original, cached = stack.job_record(first["job_id"]), stack.job_record(repeat["job_id"])
    assert cached["output_key"] == original["output_key"] and cached["cached"] and not original["cached"]
    assert cached["content_sha256"] == original["content_sha256"]
    assert stack.download(repeat["job_id"]).content == stack.download(first["job_id"]).content
    assert own_keys(stack, repeat["job_id"]) == ["job.json"], "its input is deleted too; it has no output of its own"

    other = submit(stack, media_dir / VIDEO, bitrate="128")
    assert other["status"] == "queued" and "cached" not in other


def test_shared_output_lives_until_the_last_job_holding_it_expires(stack, media_dir):
    first = submit(stack, media_dir / VIDEO, channels="1")["job_id"]
    assert stack.wait_for_job(first, timeout=30)["status"] == "completed"
    time.sleep(2)
    repeat = submit(stack, media_dir / VIDEO, channels="1")
    assert repeat["cached"] is True
    output_key = stack.job_record(first)["output_key"]

    wait_expired(stack, first)
    assert stack.status(repeat["job_id"]).json()["status"] == "completed"
    assert output_key in stack.stored_keys(), "deleted while a cached job still holds it"
    assert stack.download(repeat["job_id"]).status_code == 200

    wait_expired(stack, repeat["job_id"])
    wait_until(lambda: output_key not in stack.stored_keys(), 10, 0.1, "the shared output to be deleted")
    # With every holder gone, the cache forgets the output: the next identical upload is converted again.
    again = submit(stack, media_dir / VIDEO, channels="1")
    assert again["status"] == "queued"
    assert stack.wait_for_job(again["job_id"], timeout=30)["status"] == "completed"

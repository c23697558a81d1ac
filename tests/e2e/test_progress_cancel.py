"""Progress and cancel over HTTP against real stacks: progress rising on a long input and 100 only on
completion; the same on the transcoding_progress queue, about twice a second, each change once, across
a restart of the queue intake; a queued job cancelled and then skipped by a worker started afterwards;
a processing job's ffmpeg killed within a second; files removed; 409 for a finished job."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pika
import pytest
import redis

from shared.changes import Change, changes_key
from tests.support.http import assert_json_error
from tests.support.net import wait_until
from tests.support.not_media import write_unreadable
from tests.support.processes import live_mentioning
from tests.support.queues import FINAL, Progress
from tests.support.sources import make_tone
from tests.support.stack import AMQP_URL, REDIS_URL, Stack

pytestmark = pytest.mark.e2e

SLOW_OPTIONS = {"sample_rate": "48000", "quality": "0"}
"""Upsampling an 8 kHz tone to 48 kHz at LAME -V0: a small upload that keeps a worker busy for seconds."""


@pytest.fixture(scope="module")
def stack(module_stack) -> Stack:
    return module_stack("local", workers=1)


@pytest.fixture(scope="module")
def progress(stack) -> Progress:
    """The stack's transcoding_progress queue, read by one follower for the whole module."""
    return Progress(stack)


@pytest.fixture
def long_tone(tmp_path_factory):
    """Factory: twenty minutes of 8 kHz mono tone (19 MB of WAV) at ``frequency`` Hz: a file of its own
    for each job, since siphon may answer an identical upload with the output it already has."""

    def make(frequency: int) -> Path:
        return make_tone(tmp_path_factory.mktemp("long") / "long tone.wav", 1200, frequency=frequency)

    return make


def submit(stack: Stack, path: Path, **fields) -> str:
    response = stack.convert(path, **fields)
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def job_files(stack: Stack, job_id: str) -> list[str]:
    return sorted(key.rsplit("/", 1)[1] for key in stack.stored_keys() if key.startswith(f"jobs/{job_id}/"))


def queued_tasks(stack: Stack) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        return connection.channel().queue_declare(stack.topology.conversion_queue, passive=True).method.message_count
    finally:
        connection.close()


def worker_log(stack: Stack, job_id: str) -> list[dict]:
    """The JSON log lines conversion worker 1 wrote about ``job_id``."""
    lines = (stack.log_dir / "conversion-1.log").read_text(errors="replace").splitlines()
    return [entry for line in lines if line.startswith("{") and (entry := json.loads(line)).get("job_id") == job_id]


def wait_for_progress(stack: Stack, job_id: str, above: int = 0, timeout: float = 120) -> dict:
    def seen():
        body = stack.status(job_id).json()
        if body["status"] == "processing":
            return body if body.get("progress", 0) > above else None
        return body if body["status"] != "queued" else None

    return wait_until(seen, timeout, 0.05, f"job {job_id} to report progress above {above}")


# --- progress ---------------------------------------------------------------------------------------
def test_progress_rises_while_processing_and_reaches_100_only_on_completion(stack, long_tone):
    job_id = submit(stack, long_tone(440), **SLOW_OPTIONS)
    seen: list[tuple[float, int]] = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        body = stack.status(job_id).json()
        if body["status"] in ("completed", "failed"):
            break
        if body["status"] == "processing":
            assert "progress" not in body or isinstance(body["progress"], int)
            seen.append((time.monotonic(), body.get("progress", 0)))
        time.sleep(0.05)
    assert body["status"] == "completed", body
    assert "progress" not in body, "a completed job says so; it has no progress bar"
    values = [progress for _, progress in seen]
    assert values == sorted(values), "progress never goes back"
    assert all(0 <= value < 100 for value in values)
    distinct = sorted(set(values))
    assert len(distinct) >= 3 and distinct[-1] > distinct[1] > 0, distinct
    # A new value about twice a second while it runs (the worker reports at most every 0.5 s); the median,
    # as a busy machine may stall ffmpeg itself now and then.
    changes = [at for (at, value), (_, before) in zip(seen[1:], seen, strict=False) if value != before]
    gaps = sorted(b - a for a, b in zip(changes, changes[1:], strict=False))
    assert gaps[len(gaps) // 2] <= 1.0, [(round(at, 2), value) for at, value in seen]
    record = stack.job_record(job_id)
    assert record["progress"] == 100 and record["speed"] > 0
    assert record["started_at"] < record["finished_at"]


def feed_of(stack: Stack, job_id: str) -> list[Change]:
    """The job's entries in the stack's change feed (what metadata wrote), oldest first."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        entries = client.xrange(changes_key(stack.redis_prefix))
    finally:
        client.close()
    return [change for change in map(lambda e: Change.from_entry(*e), entries) if change.job_id == job_id]


def test_the_progress_queue_hears_each_change_about_twice_a_second_and_once_across_an_intake_restart(
    stack, progress, long_tone
):
    job_id = submit(stack, long_tone(770), **SLOW_OPTIONS)
    wait_for_progress(stack, job_id)  # converting: now restart the queue intake, which follows the feed
    stack.signal("upload-queue-intake")
    stack.processes["upload-queue-intake"].wait(15)
    stack.restart("upload-queue-intake")

    arrived: list[float] = []  # when each of the job's messages was read, polling every 50 ms
    deadline = time.monotonic() + 180
    while not (progress.of(job_id) and progress.of(job_id)[-1]["status"] in FINAL):
        assert time.monotonic() < deadline, progress.of(job_id)
        progress.drain()
        arrived += [time.monotonic()] * (len(progress.of(job_id)) - len(arrived))
        time.sleep(0.05)
    messages = progress.of(job_id)
    assert messages[-1] == {
        "job_id": job_id,
        "status": "completed",
        "progress": 100,
        "input_key": f"jobs/{job_id}/input",
        "output_key": f"jobs/{job_id}/output.mp3",
    }
    # Every change metadata made is told once, in order: none lost while the intake was down, none twice.
    told = [change.job for change in feed_of(stack, job_id) if change.job.status != "queued"]
    assert [(m["status"], m["progress"]) for m in messages] == [
        (job.status.value, 100 if job.status == "completed" else job.progress or 0) for job in told
    ]
    # While it runs, a message about twice a second (the worker reports every 0.5 s); the median, as
    # the restart holds some back for a second or two and a busy machine may stall ffmpeg now and then.
    running = [at for at, m in zip(arrived, messages, strict=True) if m["status"] == "processing"]
    gaps = sorted(b - a for a, b in zip(running, running[1:], strict=False))
    assert len(running) >= 4 and gaps[len(gaps) // 2] <= 1.0, gaps


# --- cancel a queued job ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def idle_stack(module_stack) -> Stack:
    """No conversion worker until a test starts one."""
    return module_stack("local", workers=0)


def test_a_queued_job_cancelled_is_skipped_by_a_worker_started_later(idle_stack, media_dir):
    stack = idle_stack
    job_id = submit(stack, media_dir / "ordinary_h264_aac_stereo_48k_8s.mp4", format="m4a")
    assert stack.status(job_id).json()["status"] == "queued"
    response = stack.cancel(job_id)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "job_id": job_id,
        "status": "cancelled",
        "message": "Conversion cancelled.",
        "options": {"format": "m4a"},
    }
    assert job_files(stack, job_id) == ["job.json"], "the upload is deleted; the record stays"
    assert queued_tasks(stack) == 1

    stack.start_worker(1)
    wait_until(lambda: queued_tasks(stack) == 0, 30, 0.1, "the worker to take the task")
    wait_until(
        lambda: any("skipping" in entry["msg"] for entry in worker_log(stack, job_id)),
        30,
        0.1,
        "the worker to skip the task",
    )
    body = stack.status(job_id).json()
    assert body["status"] == "cancelled" and body["message"] == "Conversion cancelled."
    record = stack.job_record(job_id)
    assert record["attempts"] == 0 and record["started_at"] is None, "it never ran"
    assert job_files(stack, job_id) == ["job.json"]
    assert_json_error(stack.download(job_id, "m4a"), 409, "job_cancelled")


# --- cancel a processing job ------------------------------------------------------------------------
@pytest.mark.parametrize(("method", "frequency"), [("DELETE", 550), ("POST", 660)])
def test_a_processing_job_cancelled_has_its_ffmpeg_killed_within_a_second(
    stack, progress, long_tone, media_dir, method, frequency
):
    job_id = submit(stack, long_tone(frequency), **SLOW_OPTIONS)
    body = wait_for_progress(stack, job_id)
    assert body["status"] == "processing", body
    assert live_mentioning(job_id), "ffmpeg reads the job's input"

    response = stack.cancel(job_id, method)
    answered = time.monotonic()
    assert response.status_code == 200 and response.json()["status"] == "cancelled", response.text
    wait_until(lambda: not live_mentioning(job_id), 5, 0.02, "ffmpeg to die")
    assert time.monotonic() - answered < 1.0, "ffmpeg outlived the cancel by more than a second"

    assert stack.status(job_id).json() == {
        "job_id": job_id,
        "status": "cancelled",
        "message": "Conversion cancelled.",
        "options": {"sample_rate": 48000, "quality": 0},
    }
    wait_until(lambda: job_files(stack, job_id) == ["job.json"], 10, 0.1, "the job's media to be deleted")
    # The worker acks the task (no requeue, no failure) and takes the next one at once.
    short = submit(stack, media_dir / "opus_in_mp4_stereo_audio_only.mp4", title=f"after a {method} cancel")
    assert stack.wait_for_job(short, timeout=60)["status"] == "completed"
    assert queued_tasks(stack) == 0
    messages = [entry["msg"] for entry in worker_log(stack, job_id)]
    assert any("cancel" in msg for msg in messages) and not any("requeue" in msg for msg in messages), messages
    assert stack.status(job_id).json()["status"] == "cancelled", "nothing the worker said later changed it"
    assert job_files(stack, job_id) == ["job.json"], "no output left behind"
    assert [m["status"] for m in progress.until_final(job_id)][-1] == "cancelled"
    assert [m["status"] for m in progress.of(job_id)].count("cancelled") == 1


# --- what cannot be cancelled ----------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["DELETE", "POST"])
def test_cancelling_a_finished_job_is_a_409(stack, media_dir, method, tmp_path):
    done = submit(stack, media_dir / "opus_in_mp4_stereo_audio_only.mp4")
    failed = submit(stack, write_unreadable(tmp_path / "notes.mp4"))  # text would be refused at upload
    assert stack.wait_for_job(done, timeout=60)["status"] == "completed"
    assert stack.wait_for_job(failed, timeout=60)["status"] == "failed"
    for job_id, status in ((done, "completed"), (failed, "failed")):
        error = assert_json_error(stack.cancel(job_id, method), 409, "job_finished")
        assert status in error["message"]
        assert stack.status(job_id).json()["status"] == status
    assert stack.download(done).status_code == 200, "the output of a finished job is kept"


@pytest.mark.parametrize("job_id", ["0123456789abcdef0123456789abcdef", "*", "x" * 1000])
def test_cancelling_an_unknown_job_is_the_404_of_status(stack, job_id):
    response = stack.cancel(job_id)
    assert response.status_code == 404 and response.headers["Content-Type"] == "application/json"
    assert response.json()["status"] == "not_found" and response.json()["message"] == "Job not found."

"""Queue-native jobs against the real stack: a producer publishes to the job queue with plain pika,
a follower reads the progress queue, and the job is an ordinary one in /status."""

from __future__ import annotations

import json
import uuid

import pytest

from shared.jobs import new_job_id
from tests.support.queues import DeadLetters, Progress, channel, get_object, publish_job, put_object

pytestmark = pytest.mark.e2e

VIDEO = "ordinary_h264_aac_stereo_48k_faststart_2s.mp4"


@pytest.fixture(scope="module")
def stack(module_stack):
    return module_stack("s3", workers=1)


@pytest.fixture(scope="module")
def progress(stack):
    return Progress(stack)


@pytest.fixture(scope="module")
def dead_letters(stack):
    return DeadLetters(stack)


@pytest.fixture
def video_key(stack, media_dir) -> str:
    key = f"videos/{uuid.uuid4().hex[:8]}/talk.mp4"
    put_object(stack, key, (media_dir / VIDEO).read_bytes())
    return key


def is_mp3(data: bytes) -> bool:
    return data[:3] == b"ID3" or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0)


def test_a_published_job_converts_and_is_followed_on_the_progress_queue(stack, progress, video_key):
    job_id = new_job_id()
    publish_job(
        stack,
        {
            "job_id": job_id,
            "input_key": video_key,
            "output_key": "audio/talk.mp3",
            "transcode_options": {"bitrate": 128},
        },
    )
    messages = progress.until_final(job_id)
    final = messages[-1]
    assert final == {
        "job_id": job_id,
        "status": "completed",
        "progress": 100,
        "input_key": video_key,
        "output_key": "audio/talk.mp3",
    }
    running = [m for m in messages if m["status"] == "processing"]
    assert running and all(0 <= m["progress"] <= 100 for m in running)
    assert stack.status(job_id).json()["status"] == "completed"
    record = stack.job_record(job_id)
    assert (record["input_key"], record["output_key"], record["options"]) == (
        video_key,
        "audio/talk.mp3",
        {"bitrate": 128},
    )
    assert is_mp3(get_object(stack, "audio/talk.mp3"))
    assert is_mp3(stack.download(job_id).content)
    assert get_object(stack, video_key)  # the producer's input is left where it was


def test_without_output_key_the_audio_is_the_jobs_own(stack, progress, video_key):
    job_id = new_job_id()
    publish_job(stack, {"job_id": job_id, "input_key": video_key})
    assert progress.until_final(job_id)[-1]["output_key"] == f"jobs/{job_id}/output.mp3"
    assert stack.download(job_id).status_code == 200


def test_a_gstreamer_pipeline_is_refused_with_an_error_event_and_never_run(stack, progress, dead_letters, video_key):
    job_id = new_job_id()
    pipeline = f"filesrc location={video_key} ! decodebin ! audioconvert ! lamemp3enc ! filesink location=out.mp3"
    publish_job(
        stack,
        {"job_id": job_id, "input_key": video_key, "output_key": "audio/piped.mp3", "transcode_options": pipeline},
    )
    [final] = progress.until_final(job_id)
    assert final["status"] == "failed" and final["error"]["code"] == "pipeline_refused"
    assert "GStreamer" in final["error"]["message"]
    status = stack.status(job_id).json()
    assert (status["status"], status["error"]["code"]) == ("failed", "pipeline_refused")
    [(headers, body)] = dead_letters.with_code("pipeline_refused")
    assert json.loads(body)["job_id"] == job_id and headers["x-siphon-queue"] == stack.topology.jobs_queue
    assert "audio/piped.mp3" not in stack.stored_keys()


def test_a_missing_input_is_a_failed_job(stack, progress):
    job_id = new_job_id()
    publish_job(stack, {"job_id": job_id, "input_key": "videos/never-uploaded.mov"})
    [final] = progress.until_final(job_id)
    assert (final["status"], final["error"]["code"]) == ("failed", "input_missing")
    assert stack.status(job_id).json()["error"]["code"] == "input_missing"


def test_an_empty_input_is_a_failed_job_never_converted(stack, progress):
    job_id = new_job_id()
    put_object(stack, "videos/empty.mov", b"")
    publish_job(stack, {"job_id": job_id, "input_key": "videos/empty.mov"})
    assert [m["status"] for m in progress.until_final(job_id)] == ["failed"]
    assert stack.status(job_id).json()["error"]["code"] == "empty_file"


def test_a_text_file_goes_to_the_conversion_and_fails_as_not_media(stack, progress):
    job_id = new_job_id()
    put_object(stack, "videos/notes.mov", b"just some text, not a video\n" * 50)
    publish_job(stack, {"job_id": job_id, "input_key": "videos/notes.mov"})
    assert progress.until_final(job_id)[-1]["error"]["code"] == "not_media"


@pytest.mark.parametrize(
    ("body", "echoed", "code"),
    [
        (b"{this is not json", None, "invalid_message"),
        ({"job_id": "job-42", "input_key": "videos/x.mov"}, "job-42", "invalid_job_id"),
    ],
)
def test_a_message_without_a_usable_job_id_is_rejected_and_dead_lettered(
    stack, progress, dead_letters, body, echoed, code
):
    publish_job(stack, body)
    final = progress.until_final(echoed)[-1]
    assert (final["status"], final["error"]["code"]) == ("rejected", code)
    assert dead_letters.with_code(code)


def test_bad_options_with_a_usable_job_id_are_a_failed_job_naming_the_option(stack, progress, video_key):
    job_id = new_job_id()
    publish_job(stack, {"job_id": job_id, "input_key": video_key, "transcode_options": {"bitrate": 100}})
    final = progress.until_final(job_id)[-1]
    assert final["error"]["code"] == "invalid_option" and "bitrate" in final["error"]["message"]


def test_the_same_job_published_twice_is_one_job(stack, progress, video_key):
    job_id = new_job_id()
    message = {"job_id": job_id, "input_key": video_key, "output_key": "audio/twice.mp3"}
    publish_job(stack, message)
    seen = len(progress.until_final(job_id))
    publish_job(stack, message)  # a redelivery: the job is done, nothing happens
    publish_job(stack, {**message, "input_key": "videos/other.mov", "output_key": "audio/other.mp3"})
    final = progress.until_final(job_id, after=seen)  # the id is taken: that message is rejected, the job left alone
    assert [m["status"] for m in final] == ["rejected"] and final[0]["error"]["code"] == "input_missing"
    assert [m["status"] for m in progress.of(job_id)].count("completed") == 1
    assert stack.status(job_id).json()["status"] == "completed"


def test_a_producer_can_declare_the_public_queues_as_plain_durable_queues(stack):
    with channel() as ch:
        ch.queue_declare(stack.topology.jobs_queue, durable=True)
        ch.queue_declare(stack.topology.progress_queue, durable=True)


def test_http_jobs_are_on_the_progress_queue_too(stack, progress, media_dir):
    job_id = stack.convert(media_dir / VIDEO).json()["job_id"]
    final = progress.until_final(job_id)[-1]
    assert (final["status"], final["input_key"], final["output_key"]) == (
        "completed",
        f"jobs/{job_id}/input",
        f"jobs/{job_id}/output.mp3",
    )


def test_queue_jobs_work_on_local_storage_too(module_stack, media_dir):
    local = module_stack("local", workers=1)
    put_object(local, "videos/talk.mp4", (media_dir / VIDEO).read_bytes())
    job_id = new_job_id()
    publish_job(local, {"job_id": job_id, "input_key": "videos/talk.mp4", "output_key": "audio/talk.mp3"})
    assert Progress(local).until_final(job_id)[-1]["status"] == "completed"
    assert is_mp3(get_object(local, "audio/talk.mp3"))

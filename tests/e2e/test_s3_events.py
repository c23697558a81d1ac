"""S3-event jobs against the real stack: an object lands under the incoming prefix of the moto
bucket, an S3 event notification in MinIO's JSON format arrives on ``<p>.s3-events`` (as MinIO's
AMQP target publishes it; moto has no AMQP target, so the test publishes it), and the MP3 appears
under the output prefix."""

from __future__ import annotations

import json
import uuid
from urllib.parse import quote_plus

import pytest

from services.upload.s3_events import CreatedObject
from tests.support.queues import DeadLetters, Progress, get_object, publish, put_object

pytestmark = pytest.mark.e2e

VIDEO = "ordinary_h264_aac_stereo_48k_faststart_2s.mp4"  # 266 745 bytes
LONGER_VIDEO = "ordinary_h264_aac_stereo_48k_2997fps_10s.mp4"  # 515 225 bytes
LIMIT = 400_000


@pytest.fixture(scope="module")
def stack(module_stack):
    return module_stack("s3", workers=1, MAX_UPLOAD_BYTES=str(LIMIT))


@pytest.fixture(scope="module")
def progress(stack):
    return Progress(stack)


def minio_event(
    stack, key: str, size: int, content_type: str | None = "video/mp4", event: str = "s3:ObjectCreated:Put"
) -> dict:
    """The body MinIO's AMQP target publishes for one object (internal/event/target/amqp.go)."""
    obj = {"key": quote_plus(key), "size": size, "eTag": uuid.uuid4().hex, "sequencer": uuid.uuid4().hex[:16].upper()}
    if content_type:
        obj["contentType"] = content_type
        obj["userMetadata"] = {"content-type": content_type}
    bucket = {"name": stack.bucket, "ownerIdentity": {"principalId": "siphon"}, "arn": f"arn:aws:s3:::{stack.bucket}"}
    record = {
        "eventVersion": "2.0",
        "eventSource": "minio:s3",
        "awsRegion": "",
        "eventTime": "2026-11-21T10:00:00.000Z",
        "eventName": event,
        "userIdentity": {"principalId": "siphon"},
        "requestParameters": {},
        "responseElements": {},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "Config", "bucket": bucket, "object": obj},
        "source": {"host": "127.0.0.1", "port": "", "userAgent": "MinIO (linux; amd64)"},
    }
    return {"EventName": event, "Key": f"{stack.bucket}/{key}", "Records": [record]}


def drop(stack, key: str, data: bytes, content_type: str | None = "video/mp4", **event) -> str:
    """Put an object and deliver its notification; return the job id it becomes."""
    put_object(stack, key, data, content_type)
    body = minio_event(stack, key, len(data), content_type, **event)
    publish(stack.topology.s3_events_exchange, "", body)
    obj = body["Records"][0]["s3"]["object"]
    return CreatedObject(stack.bucket, key, version=obj["sequencer"]).job_id


def test_a_video_dropped_under_incoming_becomes_an_mp3_under_outputs(stack, progress, media_dir):
    folder = uuid.uuid4().hex[:8]
    job_id = drop(stack, f"incoming/{folder}/day one.mov", (media_dir / VIDEO).read_bytes(), "video/quicktime")
    final = progress.until_final(job_id)[-1]
    assert final == {
        "job_id": job_id,
        "status": "completed",
        "progress": 100,
        "input_key": f"incoming/{folder}/day one.mov",
        "output_key": f"outputs/{folder}/day one.mp3",
    }
    assert get_object(stack, f"outputs/{folder}/day one.mp3")[:3] == b"ID3"
    status = stack.status(job_id).json()
    assert status["status"] == "completed" and stack.download(job_id).headers["Content-Disposition"].startswith(
        'attachment; filename="day one.mp3"'
    )


def test_an_oversize_object_is_a_failed_job_never_converted(stack, progress, media_dir):
    job_id = drop(stack, "incoming/long.mp4", (media_dir / LONGER_VIDEO).read_bytes())
    assert [m["status"] for m in progress.until_final(job_id)] == ["failed"]  # never processing
    error = stack.status(job_id).json()["error"]
    assert error["code"] == "file_too_large" and str(LIMIT) in error["message"]
    assert "outputs/long.mp3" not in stack.stored_keys()


@pytest.mark.parametrize(
    ("key", "data", "content_type", "code"),
    [
        ("incoming/readme.txt", b"hello\n", "text/plain", "not_media"),
        ("incoming/cover.png", b"\x89PNG\r\n\x1a\n" + bytes(100), "image/png", "not_media"),
        ("incoming/empty.mov", b"", "video/quicktime", "empty_file"),
    ],
)
def test_plainly_non_media_or_empty_objects_are_failed_jobs_never_converted(
    stack, progress, key, data, content_type, code
):
    job_id = drop(stack, key, data, content_type)
    [final] = progress.until_final(job_id)
    assert (final["status"], final["error"]["code"]) == ("failed", code)
    assert stack.status(job_id).json()["error"]["code"] == code


def test_a_non_media_object_without_a_telling_type_fails_in_the_conversions_probe(stack, progress):
    job_id = drop(stack, "incoming/mystery.bin", b"\x00\x01 definitely not a video" * 40, "application/octet-stream")
    assert progress.until_final(job_id)[-1]["error"]["code"] == "not_media"


def test_a_notification_for_an_object_that_is_gone_is_a_failed_job(stack, progress):
    body = minio_event(stack, "incoming/deleted.mov", 1234)
    publish(stack.topology.s3_events_exchange, "", body)
    sequencer = body["Records"][0]["s3"]["object"]["sequencer"]
    job_id = CreatedObject(stack.bucket, "incoming/deleted.mov", version=sequencer).job_id
    assert progress.until_final(job_id)[-1]["error"]["code"] == "input_missing"


def test_the_same_notification_delivered_twice_is_one_job(stack, progress, media_dir):
    key = f"incoming/{uuid.uuid4().hex[:8]}.mp4"
    put_object(stack, key, (media_dir / VIDEO).read_bytes())
    body = minio_event(stack, key, 266745)
    publish(stack.topology.s3_events_exchange, "", body)
    publish(stack.topology.s3_events_exchange, "", body)
    job_id = CreatedObject(stack.bucket, key, version=body["Records"][0]["s3"]["object"]["sequencer"]).job_id
    progress.until_final(job_id)
    second = drop(stack, "incoming/marker.txt", b"x", "text/plain")  # handled after both copies: a barrier
    progress.until_final(second)
    assert [m["status"] for m in progress.of(job_id)].count("completed") == 1


def test_objects_outside_the_incoming_prefix_and_other_events_make_no_job(stack, progress):
    before = len(stack.redis_keys())
    publish(stack.topology.s3_events_exchange, "", minio_event(stack, "outputs/some.mp3", 10, "audio/mpeg"))
    publish(
        stack.topology.s3_events_exchange, "", minio_event(stack, "incoming/x.mov", 10, event="s3:ObjectRemoved:Delete")
    )
    barrier = drop(stack, "incoming/barrier.txt", b"x", "text/plain")
    progress.until_final(barrier)
    assert len(stack.redis_keys()) == before + 1 + 1  # the barrier's record and its "done" marker


def test_a_malformed_notification_is_dead_lettered_and_reported(stack, progress):
    publish(stack.topology.s3_events_exchange, "", b'{"EventName": "s3:ObjectCreated:Put", "Records": "nope"}')
    final = progress.until_final(None)[-1]
    assert (final["status"], final["error"]["code"]) == ("rejected", "invalid_message")
    [(headers, body)] = DeadLetters(stack).with_code("invalid_message")
    assert headers["x-siphon-queue"] == stack.topology.s3_events_queue and json.loads(body)["Records"] == "nope"

"""Jobs from S3 event notifications (``services.upload.s3_events``), on fakes."""

from __future__ import annotations

import json
from urllib.parse import quote_plus

import pytest

from services.upload.intake import Intake
from services.upload.s3_events import S3EventIntake, created_objects, obviously_not_media, output_key_for
from shared.broker import ACK, Settle, Topology
from shared.errors import MessageError, StorageUnavailable
from shared.jobs import JobStatus, is_valid_job_id
from shared.messages import ConversionTask, JobEvent
from tests.unit.fakes import FakePublisher, FakeStorage

LIMIT = 100
BUCKET = "siphon"


def record(
    key: str,
    size: int = 11,
    event: str = "s3:ObjectCreated:Put",
    bucket: str = BUCKET,
    content_type: str | None = "video/quicktime",
    sequencer: str = "17A2B3C4D5E6F708",
) -> dict:
    """One record as MinIO writes it (internal/event/event.go), the key URL-encoded."""
    obj = {
        "key": quote_plus(key),
        "size": size,
        "eTag": "d41d8cd98f00b204e9800998ecf8427e",
        "sequencer": sequencer,
        "userMetadata": {"content-type": content_type},
    }
    if content_type:
        obj["contentType"] = content_type
    return {
        "eventVersion": "2.0",
        "eventSource": "minio:s3",
        "awsRegion": "",
        "eventTime": "2026-11-21T01:02:03.456Z",
        "eventName": event,
        "userIdentity": {"principalId": "siphon"},
        "requestParameters": {},
        "responseElements": {},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "Config",
            "bucket": {"name": bucket, "ownerIdentity": {"principalId": "siphon"}, "arn": f"arn:aws:s3:::{bucket}"},
            "object": obj,
        },
        "source": {"host": "127.0.0.1", "port": "", "userAgent": "MinIO (linux; amd64)"},
    }


def notification(*records: dict) -> bytes:
    """A body as MinIO's AMQP target publishes it: ``{"EventName", "Key", "Records"}``."""
    first = records[0]
    return json.dumps(
        {"EventName": first["eventName"], "Key": f"{BUCKET}/{first['s3']['object']['key']}", "Records": list(records)}
    ).encode()


@pytest.fixture
def storage() -> FakeStorage:
    return FakeStorage(
        {
            "incoming/talks/day one.mov": b"video bytes",
            "incoming/empty.mov": b"",
            "incoming/huge.mov": b"x" * (LIMIT + 1),
            "incoming/notes.txt": b"hello",
        }
    )


@pytest.fixture
def events(storage, metadata, publisher, progress) -> S3EventIntake:
    intake = Intake(storage, metadata, publisher, Topology(prefix="unit"), max_upload_bytes=LIMIT)
    return S3EventIntake(intake, progress.append, BUCKET, "incoming/", "outputs/")


def tasks(publisher: FakePublisher) -> list[ConversionTask]:
    return [ConversionTask.decode(body) for exchange, _, body in publisher.published if exchange == "unit.tasks"]


def test_records_are_read_from_minio_and_aws_bodies_with_their_keys_decoded():
    minio = created_objects(notification(record("incoming/talks/day one.mov")))
    aws_record = record("incoming/a+b.mov", event="ObjectCreated:CompleteMultipartUpload", content_type=None)
    aws = created_objects(json.dumps({"Records": [aws_record]}).encode())
    assert [(o.bucket, o.key, o.size, o.content_type) for o in minio] == [
        (BUCKET, "incoming/talks/day one.mov", 11, "video/quicktime")
    ]
    assert [(o.key, o.content_type) for o in aws] == [("incoming/a+b.mov", None)]


def test_other_events_are_left_out():
    assert created_objects(notification(record("incoming/x.mov", event="s3:ObjectRemoved:Delete"))) == []
    assert created_objects(b'{"Records": []}') == []


@pytest.mark.parametrize(
    "body",
    [
        b"nope",
        b"[]",
        b'{"Service": "Amazon S3", "Event": "s3:TestEvent"}',
        b'{"Records": [{"eventName": "s3:ObjectCreated:Put"}]}',
        b'{"Records": [7]}',
    ],
)
def test_what_is_no_notification_is_a_message_error(body):
    with pytest.raises(MessageError):
        created_objects(body)


def test_one_creation_is_one_job_id_and_another_creation_of_the_key_another():
    [a] = created_objects(notification(record("incoming/x.mov")))
    [again] = created_objects(notification(record("incoming/x.mov")))
    [later] = created_objects(notification(record("incoming/x.mov", sequencer="17A2B3C4D5E6F799")))
    assert is_valid_job_id(a.job_id) and a.job_id == again.job_id != later.job_id


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("incoming/foo/bar.mov", "outputs/foo/bar.mp3"),
        ("incoming/bar", "outputs/bar.mp3"),
        ("incoming/a.b/c.tar.mp4", "outputs/a.b/c.tar.mp3"),
        ("incoming/.hidden", "outputs/.hidden.mp3"),
    ],
)
def test_output_keys_mirror_the_incoming_path(key, expected):
    assert output_key_for(key, "incoming/", "outputs/") == expected


@pytest.mark.parametrize(
    ("content_type", "refused"),
    [
        (None, False),
        ("video/mp4", False),
        ("audio/mpeg", False),
        ("application/octet-stream", False),
        ("binary/octet-stream", False),
        ("text/plain; charset=utf-8", True),
        ("image/png", True),
        ("application/pdf", True),
        ("APPLICATION/JSON", True),
    ],
)
def test_only_plainly_non_media_content_types_are_refused(content_type, refused):
    assert obviously_not_media(content_type) is refused


def test_a_video_under_the_incoming_prefix_becomes_a_job_writing_under_the_output_prefix(events, metadata, publisher):
    assert events.handle(notification(record("incoming/talks/day one.mov"))) == ACK
    [job] = metadata.jobs.values()
    assert (job.status, job.input_key, job.output_key) == (
        JobStatus.QUEUED,
        "incoming/talks/day one.mov",
        "outputs/talks/day one.mp3",
    )
    assert job.original_filename == "day one.mov" and job.input_size == 11
    [task] = tasks(publisher)
    assert (task.input_key, task.output_key) == (job.input_key, job.output_key)


def test_the_same_notification_twice_is_one_job(events, metadata, publisher):
    body = notification(record("incoming/talks/day one.mov"))
    events.handle(body)
    metadata.jobs = {k: v.model_copy(update={"status": JobStatus.COMPLETED}) for k, v in metadata.jobs.items()}
    events.handle(body)
    assert len(metadata.jobs) == 1 and len(tasks(publisher)) == 1


@pytest.mark.parametrize(
    ("key", "content_type", "code"),
    [
        ("incoming/empty.mov", "video/mp4", "empty_file"),
        ("incoming/huge.mov", "video/mp4", "file_too_large"),
        ("incoming/notes.txt", "text/plain", "not_media"),
        ("incoming/gone.mov", "video/mp4", "input_missing"),
        ("incoming/a//b.mov", "video/mp4", "invalid_key"),
    ],
)
def test_refused_objects_become_failed_jobs_and_are_never_converted(
    events, metadata, publisher, key, content_type, code
):
    assert events.handle(notification(record(key, content_type=content_type))) == ACK
    [job] = metadata.jobs.values()
    assert (job.status, job.error.code, job.input_key) == (JobStatus.FAILED, code, key)
    [(exchange, routing_key, body)] = publisher.published
    assert (exchange, routing_key, JobEvent.decode(body).error.code) == ("unit.events", "job.failed", code)


@pytest.mark.parametrize(
    "rec",
    [
        record("elsewhere/x.mov"),
        record("outputs/x.mp3"),
        record("incoming/x.mov", bucket="other"),
        record("incoming/folder/", size=0),
    ],
)
def test_objects_outside_the_incoming_prefix_or_bucket_are_ignored(events, metadata, publisher, rec):
    assert events.handle(notification(rec)) == ACK
    assert metadata.jobs == {} and publisher.published == []


def test_a_malformed_notification_is_dead_lettered_and_rejected_on_the_progress_feed(events, metadata, progress):
    verdict = events.handle(b"{not json")
    assert (verdict.settle, verdict.code) == (Settle.DEAD_LETTER, "invalid_message")
    assert metadata.jobs == {} and progress == [
        {
            "job_id": None,
            "status": "rejected",
            "error": {"code": "invalid_message", "message": "Not an S3 event notification: no Records list."},
        }
    ]


def test_a_storage_outage_propagates_and_a_redelivery_makes_no_duplicate(events, storage, metadata, publisher):
    body = notification(record("incoming/talks/day one.mov"), record("incoming/empty.mov"))
    storage.fail("size", StorageUnavailable("down"), times=1)
    with pytest.raises(StorageUnavailable):
        events.handle(body)
    assert events.handle(body) == ACK and events.handle(body) == ACK
    assert sorted(job.status for job in metadata.jobs.values()) == [JobStatus.FAILED, JobStatus.QUEUED]

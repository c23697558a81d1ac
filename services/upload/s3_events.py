"""Jobs that start themselves: an object created under ``S3_INCOMING_PREFIX`` is converted to a
matching key under ``S3_OUTPUT_PREFIX`` (``incoming/a/b.mov`` → ``outputs/a/b.mp3``).

The intake reads S3 event notifications from ``<p>.s3-events``, fed by MinIO's native AMQP
target (compose.yaml sets it up). A body is MinIO's ``{"EventName", "Key", "Records": [...]}`` or
AWS's ``{"Records": [...]}``; a record gives ``eventName`` (``s3:ObjectCreated:Put`` or
``ObjectCreated:Put``), ``s3.bucket.name``, ``s3.object.key`` (URL-encoded, ``+`` for a space),
``size``, ``eTag``, ``sequencer`` and, from MinIO, ``contentType``
(https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html).

The job id is derived from the event (bucket, key, sequencer), so a notification delivered twice
is one job. Empty, oversized (``MAX_UPLOAD_BYTES``), missing, or plainly non-media objects (by the
content type the event gives) become ``failed`` jobs and are never converted; everything else is
probed by the conversion as usual. Records of other buckets, other prefixes or other events
(removals) are ignored.
"""

from __future__ import annotations

import json
import logging
import posixpath
import time
import uuid
from dataclasses import dataclass
from urllib.parse import unquote_plus

from services.upload.intake import Intake
from services.upload.progress import Publish, rejected_message
from services.upload.queue_jobs import checked_key
from shared.broker import ACK, Settlement, dead_letter
from shared.errors import MessageError, ObjectNotFound, RequestRejected
from shared.filenames import clean_filename
from shared.jobs import Job, JobErrorInfo

log = logging.getLogger(__name__)

JOB_ID_NAMESPACE = uuid.UUID("9b1c3f4e-58a2-4d57-9a0e-6f3b2f7d1c20")
"""uuid5 namespace of the job ids of S3-event jobs (any fixed UUID; changing it re-keys them)."""

NOT_MEDIA_TYPE_FAMILIES = ("text/", "image/", "font/", "message/", "model/", "multipart/")
NOT_MEDIA_TYPES = frozenset(
    {
        "application/json",
        "application/xml",
        "application/pdf",
        "application/zip",
        "application/gzip",
        "application/x-tar",
        "application/x-7z-compressed",
        "application/x-rar-compressed",
        "application/javascript",
        "application/x-sh",
        "application/x-yaml",
        "application/yaml",
        "application/msword",
        "application/rtf",
    }
)
"""Content types no video or audio file is sent with. Others (``video/*``, ``audio/*``, the generic
``application/octet-stream``, ...) go on to the conversion's probe, which knows for sure."""


@dataclass(frozen=True)
class CreatedObject:
    """An object an ``ObjectCreated`` record announces."""

    bucket: str
    key: str
    size: int | None = None
    content_type: str | None = None
    version: str = ""
    """What tells this creation from another of the same key: sequencer, else eTag, else event time."""

    @property
    def job_id(self) -> str:
        return uuid.uuid5(JOB_ID_NAMESPACE, f"{self.bucket}/{self.key}\n{self.version}").hex


def created_objects(body: bytes) -> list[CreatedObject]:
    """The objects a notification body announces as created (other events are left out).

    Raises:
        MessageError: not an S3 event notification (``invalid_message``).
    """
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    records = data.get("Records") if isinstance(data, dict) else None
    if not isinstance(records, list):
        raise MessageError("Not an S3 event notification: no Records list.", code="invalid_message")
    return [obj for record in records if (obj := _created(record)) is not None]


def _created(record: object) -> CreatedObject | None:
    try:
        if "ObjectCreated:" not in record["eventName"]:
            return None
        s3 = record["s3"]
        obj = s3["object"]
        size = obj.get("size")
        return CreatedObject(
            bucket=s3["bucket"]["name"],
            key=unquote_plus(obj["key"]),
            size=size if isinstance(size, int) else None,
            content_type=obj.get("contentType") or None,
            version=str(obj.get("sequencer") or obj.get("eTag") or record.get("eventTime") or ""),
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise MessageError(f"Not an S3 event record: {exc!r} missing or malformed.", code="invalid_message") from None


def output_key_for(key: str, incoming_prefix: str, output_prefix: str, extension: str = "mp3") -> str:
    """``incoming/a/b.mov`` → ``outputs/a/b.mp3``: the path below the incoming prefix, under the
    output prefix, with the audio's extension for the file's own."""
    stem, _ = posixpath.splitext(key.removeprefix(incoming_prefix))
    return f"{output_prefix}{stem}.{extension}"


def obviously_not_media(content_type: str | None) -> bool:
    """Whether a content type rules out audio (``text/plain``, ``image/png``, ``application/pdf``)."""
    if not content_type:
        return False
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type.startswith(NOT_MEDIA_TYPE_FAMILIES) or media_type in NOT_MEDIA_TYPES


class S3EventIntake:
    """Turns S3 event notification bodies into jobs."""

    def __init__(
        self, intake: Intake, publish_progress: Publish, bucket: str, incoming_prefix: str, output_prefix: str
    ):
        self.intake = intake
        self.publish_progress = publish_progress
        self.bucket = bucket
        self.incoming_prefix = incoming_prefix
        self.output_prefix = output_prefix

    def handle(self, body: bytes, redelivered: bool = False) -> Settlement:
        """Start (or refuse) a job for each object the notification announces under the incoming prefix.

        Raises:
            Unavailable: storage, the metadata service or RabbitMQ is down (requeue the message:
                the objects already handled are not handled twice, their job ids being fixed).
        """
        try:
            objects = created_objects(body)
        except MessageError as exc:
            log.warning("dead-lettering a malformed S3 event: %s", exc.message)
            self.publish_progress(rejected_message(None, exc.code, exc.message))
            return dead_letter(exc.code, exc.message)
        for obj in objects:
            if self._is_incoming(obj):
                self._start(obj, redelivered)
            else:
                log.info("ignoring an S3 event for %s/%s (not under %s)", obj.bucket, obj.key, self.incoming_prefix)
        return ACK

    def _is_incoming(self, obj: CreatedObject) -> bool:
        return obj.bucket == self.bucket and obj.key.startswith(self.incoming_prefix) and not obj.key.endswith("/")

    def _start(self, obj: CreatedObject, redelivered: bool) -> None:
        job = Job(
            job_id=obj.job_id,
            created_at=time.time(),
            input_key=obj.key,
            input_size=obj.size or 0,
            output_key=output_key_for(obj.key, self.incoming_prefix, self.output_prefix),
            original_filename=clean_filename(obj.key),
            owner=self.intake.intake_owner,
        )
        try:
            checked_key("key", obj.key)  # S3 allows keys ("a//b", "../b") no job may name
            if obviously_not_media(obj.content_type):
                raise RequestRejected(
                    f"The object's content type {obj.content_type!r} is not audio or video.", code="not_media"
                )
            size = self.intake.stored_size(obj.key)
        except ObjectNotFound:
            self._refuse(job, "input_missing", f"The object {obj.key!r} no longer exists.")
        except (MessageError, RequestRejected) as exc:
            self._refuse(job, exc.code, exc.message)
        else:
            self.intake.queue_stored(job.model_copy(update={"input_size": size}), redelivered)

    def _refuse(self, job: Job, code: str, message: str) -> None:
        log.info("refusing %s: %s: %s", job.input_key, code, message)
        self.intake.record_refused(job, JobErrorInfo(code=code, message=message))

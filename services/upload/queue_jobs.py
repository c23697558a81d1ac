"""Jobs published to the job queue (``TRANSCODING_JOBS_QUEUE``) by producers inside the company.

A message is a JSON object (other fields are ignored)::

    {"job_id": "3f2c8e0d9a6b4c1e8f7a5d4c3b2a1908",   required: the siphon job id, 32 lower-case hex
                                                      digits (uuid.uuid4().hex); /status/<job_id>
     "input_key": "videos/talk.mov",                 required: an object already in the bucket
     "output_key": "audio/talk.mp3",                 optional: default jobs/<job_id>/output.mp3;
                                                      ends in the format's extension
     "transcode_options": {"bitrate": 192}}          optional: the options of POST /convert

Keys are ``/``-separated and relative; ``jobs/`` is siphon's own and refused. What cannot become a
job is refused for good and the message dead-lettered: with a usable ``job_id`` as a ``failed``
job (in /status, and on the progress queue); without one as a ``rejected`` progress message.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from services.upload.intake import Intake
from services.upload.json_options import options_from_json
from services.upload.progress import Publish, rejected_message
from shared.broker import ACK, Settlement, dead_letter
from shared.errors import MessageError, ObjectNotFound, RequestRejected
from shared.filenames import clean_filename
from shared.jobs import JOBS_KEY_PREFIX, Job, JobErrorInfo, is_valid_job_id, output_key
from shared.options import ConversionOptions

log = logging.getLogger(__name__)

MAX_KEY_BYTES = 1024
"""Longest storage key, UTF-8 bytes (S3's limit)."""

INPUT_MISSING = "input_missing"


@dataclass(frozen=True)
class QueueJob:
    """A valid job message."""

    job_id: str
    input_key: str
    output_key: str
    options: ConversionOptions

    def job(self, input_size: int) -> Job:
        """The ``queued`` job it becomes, recording the options (its task carries them)."""
        return Job(
            job_id=self.job_id,
            created_at=time.time(),
            input_key=self.input_key,
            input_size=input_size,
            output_key=self.output_key,
            original_filename=clean_filename(self.input_key),
            options=self.options.recorded(),
        )


def parse_job_message(body: bytes, video_codecs: tuple[str, ...] = ()) -> QueueJob:
    """Validate a job message; ``video_codecs`` are the codecs offered (``Intake.video_codecs``).

    Raises:
        MessageError: not a JSON object (``invalid_message``), a bad ``job_id`` (``invalid_job_id``)
            or a bad key (``invalid_key``).
        RequestRejected: the options are a GStreamer pipeline (``pipeline_refused``) or invalid
            (``invalid_option``).
    """
    data = _json_object(body)
    if data is None:
        raise MessageError("The message is not a JSON object.", code="invalid_message")
    job_id = data.get("job_id")
    if not isinstance(job_id, str) or not is_valid_job_id(job_id):
        raise MessageError("job_id must be 32 lower-case hex digits (e.g. uuid.uuid4().hex).", code="invalid_job_id")
    input_key = checked_key("input_key", data.get("input_key"))
    options = options_from_json(data.get("transcode_options"), video_codecs)
    extension = options.output_format.extension
    given_output = data.get("output_key")
    if given_output is None:
        return QueueJob(job_id, input_key, output_key(job_id, extension), options)
    if not checked_key("output_key", given_output).endswith(f".{extension}"):
        raise MessageError(
            f"output_key must end in .{extension}, the extension of format {options.format}.", code="invalid_key"
        )
    return QueueJob(job_id, input_key, given_output, options)


def checked_key(field: str, key: object) -> str:
    """``key`` if it is a relative ``/``-separated storage key outside ``jobs/``.

    Raises:
        MessageError: ``invalid_key``, naming ``field``.
    """
    if not isinstance(key, str) or not key:
        raise MessageError(f"{field} must be a non-empty string (a key in the bucket).", code="invalid_key")
    parts = key.split("/")
    if (
        len(key.encode()) > MAX_KEY_BYTES
        or any(part in ("", ".", "..") for part in parts)
        or any(ord(c) < 32 or c == "\x7f" for c in key)
    ):
        raise MessageError(
            f"{field} {key[:200]!r} is not a valid key: relative, '/'-separated, no empty, '.' or '..' "
            f"parts, no control characters, at most {MAX_KEY_BYTES} bytes.",
            code="invalid_key",
        )
    if key.startswith(JOBS_KEY_PREFIX):
        raise MessageError(
            f"{field} may not be under {JOBS_KEY_PREFIX!r}, where siphon keeps its own jobs.", code="invalid_key"
        )
    return key


class JobQueueIntake:
    """Turns job message bodies into queued jobs, or refuses them."""

    def __init__(self, intake: Intake, publish_progress: Publish):
        self.intake = intake
        self.publish_progress = publish_progress

    def handle(self, body: bytes, redelivered: bool = False) -> Settlement:
        """Queue the job a message asks for, or refuse it (``redelivered``: see :meth:`Intake.queue_stored`).

        Raises:
            Unavailable: storage, the metadata service or RabbitMQ is down (requeue the message).
        """
        try:
            request = parse_job_message(body, self.intake.video_codecs)
            size = self.intake.stored_size(request.input_key)
        except ObjectNotFound:
            return self._refuse(body, INPUT_MISSING, f"There is no object at input_key {request.input_key!r}.")
        except (MessageError, RequestRejected) as exc:
            return self._refuse(body, exc.code, exc.message)
        try:
            self.intake.queue_stored(self.intake.owned_by_intake(request.job(size)), redelivered)
        except RequestRejected as exc:  # duplicate_job_id: the job that has the id is left alone
            return self._reject(body, exc.code, exc.message)
        return ACK

    def _refuse(self, body: bytes, code: str, message: str) -> Settlement:
        data = _json_object(body) or {}
        job_id = data.get("job_id")
        if not (isinstance(job_id, str) and is_valid_job_id(job_id)):
            return self._reject(body, code, message)
        log.info("refusing queued job %s: %s: %s", job_id, code, message)
        refused = self.intake.record_refused(
            self.intake.owned_by_intake(_refused_job(job_id, data)), JobErrorInfo(code=code, message=message)
        )
        if refused is None:  # a job has this id already: tell the producer, leave the job alone
            return self._reject(body, code, message)
        return dead_letter(code, message)

    def _reject(self, body: bytes, code: str, message: str) -> Settlement:
        log.warning("rejecting a job message: %s: %s", code, message)
        self.publish_progress(rejected_message((_json_object(body) or {}).get("job_id"), code, message))
        return dead_letter(code, message)


def _refused_job(job_id: str, data: dict) -> Job:
    """The job a refused message stands for, keeping whatever keys it named that are valid."""

    def key_or(field: str, default: str) -> str:
        try:
            return checked_key(field, data.get(field))
        except MessageError:
            return default

    input_key = key_or("input_key", "")
    return Job(
        job_id=job_id,
        created_at=time.time(),
        input_key=input_key,
        output_key=key_or("output_key", output_key(job_id)),
        original_filename=clean_filename(input_key),
    )


def _json_object(body: bytes) -> dict | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None

"""The job model every service shares: ids, states, storage keys and the forward-only state machine.

States::

    queued ──> processing ──> completed
       │            │
       ├────────────┴───────> failed ──(retry: storage_unavailable, disk_full, sandbox_failed)──> queued
       │            │
       └────────────┴───────> cancelled   (a client's DELETE /jobs/<id>)

    completed ──(OUTPUT_TTL later)──> expired   (its output deleted; the only move out of completed)

A job only moves forward. ``processing`` may repeat with a higher *attempt* number (a task
redelivered after a worker died), and reports ``progress`` (0-99 %) for its current attempt; a
completed job never changes again, so late or repeated events are harmless (at-least-once
delivery, idempotent transitions). A cancel applies to any job that is not yet terminal, whatever
its retry.

The one way back is a *retry*: a client asking to convert again a job that failed for a reason
that is not the file's (:data:`RETRYABLE_ERROR_CODES`). Retry ``retries + 1`` starts the job's
attempts again from 1. Every task and event names the retry it belongs to (``retry``; absent for
the job's first conversion, retry 0), and a job ignores events of any retry but its current one, so
a late event of the failed retry cannot touch the new one. The words are defined once, in
docs/architecture.md's glossary.

Only what every service reads is here; what the upload service sends when it creates a job is
``shared/job_requests.py``, and what only the metadata service keeps is
``services/metadata/records.py``. :class:`Job` ignores fields it does not know, so the gateway and
the workers read those records as plain jobs.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Self

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:  # shared.messages imports this module: the event type is for annotations only
    from shared.messages import JobEvent

JOB_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")

DISK_FULL = "disk_full"
"""The worker's ``WORK_DIR`` ran out of space (a conversion error code, ``services/conversion/media_codes.py``)."""

STORAGE_UNAVAILABLE = "storage_unavailable"
"""Object storage kept failing for the worker's ``STORAGE_RETRIES`` tries (a conversion error code)."""

SANDBOX_FAILED = "sandbox_failed"
"""ffmpeg, ffprobe or the forked child could not be confined (``SANDBOX``; a conversion error code)."""

RETRYABLE_ERROR_CODES = frozenset({STORAGE_UNAVAILABLE, DISK_FULL, SANDBOX_FAILED})
"""Failure codes a retry may cure (the worker's surroundings failed, not the file)."""


class JobStatus(StrEnum):
    """Where a job is in its life."""

    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    @property
    def is_terminal(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.EXPIRED)


def new_job_id() -> str:
    """A fresh job id: 32 lower-case hex digits (a UUID4 without dashes)."""
    return uuid.uuid4().hex


def is_valid_job_id(value: str) -> bool:
    """Whether ``value`` is shaped like a job id; checked before any Redis or storage lookup."""
    return bool(JOB_ID_PATTERN.fullmatch(value))


def input_key(job_id: str) -> str:
    """Storage key of a job's uploaded file (never derived from the client's file name)."""
    return f"jobs/{job_id}/input"


def output_key(job_id: str, extension: str = "mp3") -> str:
    """Storage key of a job's converted audio."""
    return f"jobs/{job_id}/output.{extension}"


def manifest_key(job_id: str) -> str:
    """Storage key of a job's durable JSON record, rewritten at every transition."""
    return f"jobs/{job_id}/job.json"


def job_prefix(job_id: str) -> str:
    """Storage prefix holding everything of one job."""
    return f"{JOBS_KEY_PREFIX}{job_id}/"


JOBS_KEY_PREFIX = "jobs/"
"""Where siphon keeps its own jobs' files. Keys outside it are the objects of queue producers and
S3 events (``services/upload/queue_jobs.py``, ``s3_events.py``), which a job may read and write."""


class JobErrorInfo(BaseModel):
    """Why a job failed: a stable ``code`` and a human ``message``."""

    code: str
    message: str


class MediaFacts(BaseModel):
    """What the probe found in the input: container (demuxer name), audio codec, duration (s)."""

    container: str | None = None
    audio_codec: str | None = None
    duration_seconds: float | None = None
    sample_rate_hz: int | None = None
    channels: int | None = None
    video_codec: str | None = None


class Job(BaseModel):
    """A job as every service reads it (times are Unix seconds, sizes bytes).

    ``options`` are the conversion options the client set (``ConversionOptions.recorded()``);
    ``progress`` is percent done (0-100, 100 only once completed) and ``speed`` the conversion's
    pace in seconds of audio per wall-clock second (× realtime). ``attempts`` is how many attempts
    the current retry has made (the number of the latest, 0 before the first); ``retries`` how many
    retries the job has had (the number of the current one, 0 for the first conversion).
    ``cached``: the job reused an identical earlier job's output (``services/metadata/outputs.py``).

    Fields it does not know are ignored (``extra="ignore"``), so a metadata record
    (``services/metadata/records.py``) reads as a plain job.
    """

    model_config = ConfigDict(extra="ignore")

    job_id: str
    owner: str | None = None
    """The name of the API key that created the job (never the key; ``shared/auth.py``); None in open mode."""
    status: JobStatus = JobStatus.QUEUED
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    original_filename: str = ""
    input_key: str
    input_size: int = 0
    output_key: str
    output_size: int | None = None
    output_duration_seconds: float | None = None
    media: MediaFacts | None = None
    attempts: int = 0
    retries: int = 0
    error: JobErrorInfo | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    progress: int | None = Field(None, ge=0, le=100)
    speed: float | None = None
    cached: bool = False

    @classmethod
    def new(
        cls,
        job_id: str,
        original_filename: str,
        input_size: int,
        options: dict[str, Any] | None = None,
        extension: str = "mp3",
        owner: str | None = None,
    ) -> Self:
        """A ``queued`` job (of this class) with the standard storage keys; its output is
        ``output.<extension>``; ``input_size`` is bytes."""
        return cls(
            job_id=job_id,
            owner=owner,
            created_at=time.time(),
            original_filename=original_filename,
            input_key=input_key(job_id),
            input_size=input_size,
            output_key=output_key(job_id, extension),
            options=options or {},
        )

    @property
    def output_extension(self) -> str:
        """The output file's extension (``mp3``, ``m4a``, ...), from its storage key."""
        return self.output_key.rpartition(".")[2]

    def apply(self, event: JobEvent) -> Self | None:
        """The job after ``event`` (of the same class: a metadata record stays one), or None if it
        changes nothing; one handler per event status (:data:`_TRANSITIONS`).

        Forward-only: a terminal job ignores everything but a ``queued`` event starting the next
        retry of a retryable failure; a ``cancelled`` event ends any live job; an event of another
        retry than the current one changes nothing, nor does a ``completed`` or ``failed`` event of an
        attempt older than the one recorded (a superseded delivery's late result); ``processing``
        applies with an attempt number above the one recorded, or, for the current attempt, as a
        progress report that raises ``progress``; an ``expired`` event moves a completed job, and
        only a completed one, on.
        """
        return _TRANSITIONS[event.status](self, event)

    def _on_queued(self, event: JobEvent) -> Self | None:
        return self._retried(event.retry)

    def _on_expired(self, event: JobEvent) -> Self | None:
        return self.model_copy(update={"status": JobStatus.EXPIRED}) if self.status is JobStatus.COMPLETED else None

    def _on_cancelled(self, event: JobEvent) -> Self | None:
        if self.status.is_terminal:
            return None
        return self.model_copy(update={"status": JobStatus.CANCELLED, "finished_at": event.at})

    def _of_current_retry(self, event: JobEvent) -> bool:
        """Whether a worker's event concerns this job's live retry (not a finished job, not another retry)."""
        return not self.status.is_terminal and (event.retry or 0) == self.retries

    def _on_processing(self, event: JobEvent) -> Self | None:
        if not self._of_current_retry(event):
            return None
        if event.attempt == self.attempts and self.status is JobStatus.PROCESSING:
            return self._progressed(event)
        if event.attempt <= self.attempts:
            return None
        return self.model_copy(
            update={
                "status": JobStatus.PROCESSING,
                "attempts": event.attempt,
                "started_at": self.started_at or event.at,
                "media": event.media or self.media,
                "progress": event.progress,
                "speed": event.speed,
            }
        )

    def _superseded(self, event: JobEvent) -> bool:
        """Whether a worker's result comes from an earlier delivery than the attempt under way: the
        late result of a worker cut off from the broker while its task went to another (issue 18).
        The fence is the delivery count (``attempt``), which the quorum queue raises on each redelivery."""
        return event.attempt < self.attempts

    def _on_completed(self, event: JobEvent) -> Self | None:
        if not self._of_current_retry(event) or self._superseded(event):
            return None
        return self.model_copy(
            update={
                "status": JobStatus.COMPLETED,
                "finished_at": event.at,
                "attempts": max(self.attempts, event.attempt),
                "output_size": event.output_size,
                "output_duration_seconds": event.output_duration_seconds,
                "media": event.media or self.media,
                "progress": 100,
                "speed": event.speed or self.speed,
            }
        )

    def _on_failed(self, event: JobEvent) -> Self | None:
        if not self._of_current_retry(event) or self._superseded(event):
            return None
        return self.model_copy(
            update={
                "status": JobStatus.FAILED,
                "finished_at": event.at,
                "attempts": max(self.attempts, event.attempt),
                "error": event.error,
                "media": event.media or self.media,
            }
        )

    def _progressed(self, event: JobEvent) -> Self | None:
        """The job with the progress report ``event`` applied; None unless it raises ``progress``.
        100 % is the completed event's to set, so a report is held to 99 %."""
        if event.progress is None:
            return None
        progress = min(event.progress, 99)
        if self.progress is not None and progress <= self.progress:
            return None
        return self.model_copy(update={"progress": progress, "speed": event.speed or self.speed})

    def differs_only_in_progress(self, other: Job) -> bool:
        """Whether ``other`` is this job with nothing but ``progress`` and ``speed`` changed (a
        report the durable manifest need not record)."""
        return self.model_copy(update={"progress": other.progress, "speed": other.speed}) == other

    @property
    def is_retryable(self) -> bool:
        """Whether the job failed for a reason a retry may cure (:data:`RETRYABLE_ERROR_CODES`)."""
        return self.status is JobStatus.FAILED and self.error is not None and self.error.code in RETRYABLE_ERROR_CODES

    def _retried(self, retry: int | None) -> Self | None:
        """The job ``queued`` again as retry number ``retry``, its attempts counted afresh; None
        unless it failed for a retryable reason and ``retry`` is the next one (``retries + 1``)."""
        if not self.is_retryable or retry != self.retries + 1:
            return None
        return self.model_copy(
            update={
                "status": JobStatus.QUEUED,
                "retries": retry,
                "attempts": 0,
                "error": None,
                "started_at": None,
                "finished_at": None,
            }
        )


_TRANSITIONS: dict[JobStatus, Callable[[Job, JobEvent], Job | None]] = {
    JobStatus.QUEUED: Job._on_queued,
    JobStatus.PROCESSING: Job._on_processing,
    JobStatus.COMPLETED: Job._on_completed,
    JobStatus.FAILED: Job._on_failed,
    JobStatus.CANCELLED: Job._on_cancelled,
    JobStatus.EXPIRED: Job._on_expired,
}
"""The handler of each event status (every status has one; ``tests/unit/shared/test_jobs.py`` checks)."""

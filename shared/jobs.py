"""The job model: ids, states, storage keys and the forward-only state machine.

States::

    queued ──> processing ──> completed
       │            │
       └────────────┴───────> failed ──(retry: storage_unavailable, disk_full)──> queued

A job only moves forward. ``processing`` may repeat with a higher attempt number (a task
redelivered after a worker died); a completed job never changes again, so late or repeated
events are harmless (at-least-once delivery, idempotent transitions).

The one way back is an explicit retry of a job that failed for a reason that is not the file's
(:data:`RETRYABLE_ERROR_CODES`): it starts run ``retries + 1``. Every task and event names its run
(``retry``), and a job ignores events of any run but its current one, so a late event of the
failed run cannot touch the new one.
"""

from __future__ import annotations

import re
import time
import uuid
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

JOB_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")

RETRYABLE_ERROR_CODES = frozenset({"storage_unavailable", "disk_full"})
"""Failure codes another run may cure (the worker's surroundings failed, not the file)."""


class JobStatus(StrEnum):
    """Where a job is in its life."""

    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED)


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
    return f"jobs/{job_id}/"


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


class Job(BaseModel):
    """A job record, as the metadata service stores it (times are Unix seconds, sizes bytes)."""

    job_id: str
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

    @classmethod
    def new(cls, job_id: str, original_filename: str, input_size: int) -> Job:
        """A ``queued`` job with the standard storage keys."""
        return cls(
            job_id=job_id,
            created_at=time.time(),
            original_filename=original_filename,
            input_key=input_key(job_id),
            input_size=input_size,
            output_key=output_key(job_id),
        )

    def apply(self, event: Any) -> Job | None:
        """The job after ``event`` (a :class:`shared.messages.JobEvent`), or None if it changes nothing.

        Forward-only: a terminal job ignores everything but a ``queued`` event starting the next
        run of a retryable failure; an event of another run than the current one changes nothing;
        ``processing`` applies only with an attempt number above the one recorded.
        """
        if event.status is JobStatus.QUEUED:
            return self._requeued(event.retry)
        if self.status.is_terminal or (event.retry or 0) != self.retries:
            return None
        if event.status is JobStatus.PROCESSING:
            if event.attempt <= self.attempts:
                return None
            return self.model_copy(update={
                "status": JobStatus.PROCESSING,
                "attempts": event.attempt,
                "started_at": self.started_at or event.at,
                "media": event.media or self.media,
            })
        if event.status is JobStatus.COMPLETED:
            return self.model_copy(update={
                "status": JobStatus.COMPLETED,
                "finished_at": event.at,
                "attempts": max(self.attempts, event.attempt),
                "output_size": event.output_size,
                "output_duration_seconds": event.output_duration_seconds,
                "media": event.media or self.media,
            })
        if event.status is JobStatus.FAILED:
            return self.model_copy(update={
                "status": JobStatus.FAILED,
                "finished_at": event.at,
                "attempts": max(self.attempts, event.attempt),
                "error": event.error,
                "media": event.media or self.media,
            })
        return None

    @property
    def is_retryable(self) -> bool:
        """Whether the job failed for a reason another run may cure (:data:`RETRYABLE_ERROR_CODES`)."""
        return self.status is JobStatus.FAILED and self.error is not None and self.error.code in RETRYABLE_ERROR_CODES

    def _requeued(self, run: int | None) -> Job | None:
        if not self.is_retryable or run != self.retries + 1:
            return None
        return self.model_copy(update={
            "status": JobStatus.QUEUED, "retries": run, "attempts": 0, "error": None,
            "started_at": None, "finished_at": None,
        })

"""The queue protocol: what travels through RabbitMQ, as JSON.

* :class:`ConversionTask` — upload → conversion workers, on the tasks exchange
  (routing key ``conversion``), persistent, one per job.
* :class:`JobEvent` — conversion → metadata, on the events topic exchange
  (routing key ``job.<status>``), one per state change, plus ``processing`` progress reports.
* :class:`WorkerCommand` — metadata → every conversion worker, on the control fanout exchange
  (``cancel``: stop working on a job).

Both carry ``version`` so the schema can grow; unknown fields are refused (a producer bug
should dead-letter loudly, not half-work).
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.errors import MessageError
from shared.jobs import JOB_ID_PATTERN, JOBS_KEY_PREFIX, JobErrorInfo, JobStatus, MediaFacts, job_prefix
from shared.jobs import input_key as job_input_key
from shared.options import ConversionOptions

SCHEMA_VERSION = 1


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = SCHEMA_VERSION

    def encode(self) -> bytes:
        """UTF-8 JSON body."""
        return self.model_dump_json(exclude_none=True).encode()

    @classmethod
    def decode(cls, body: bytes):
        """Parse and validate a message body.

        Raises:
            MessageError: the body is not JSON or does not match the schema.
        """
        try:
            return cls.model_validate_json(body)
        except ValidationError as exc:
            raise MessageError(f"{cls.__name__}: {exc.errors()[0]['msg']} at {exc.errors()[0]['loc']}") from None


class ConversionTask(_Message):
    """Convert the object at ``input_key`` into audio at ``output_key`` for job ``job_id``."""

    job_id: str = Field(pattern=JOB_ID_PATTERN.pattern)
    input_key: str = Field(min_length=1)
    output_key: str = Field(min_length=1)
    retry: int | None = Field(
        None, ge=1, description="The retry this task belongs to (1, 2, ...); absent for the job's first conversion."
    )
    options: ConversionOptions | None = Field(None, description="What the client asked for; absent: the plain MP3.")

    @model_validator(mode="after")
    def _keys_belong_to_the_job(self) -> ConversionTask:
        # A task naming another job's objects would make a worker read them or overwrite them
        # (another job's MP3, or its manifest with MP3 bytes): such a task is malformed. Keys
        # outside jobs/ are a queue producer's or an S3 event's objects, checked by the upload
        # service before it queues them.
        extension = self.output_key.removeprefix(f"{job_prefix(self.job_id)}output.")
        own_input = self.input_key == job_input_key(self.job_id) or not self.input_key.startswith(JOBS_KEY_PREFIX)
        own_output = (extension != self.output_key and extension.isalnum()) or not self.output_key.startswith(
            JOBS_KEY_PREFIX
        )
        if not (own_input and own_output):
            raise ValueError(
                f"input_key and output_key must be the job's own storage keys, or keys outside {JOBS_KEY_PREFIX!r}"
            )
        return self


class JobEvent(_Message):
    """A job changed state. ``at`` is Unix seconds; ``attempt`` is the number of the task's
    delivery to a worker within its retry, from 1 (docs/architecture.md, the glossary)."""

    job_id: str = Field(pattern=JOB_ID_PATTERN.pattern)
    status: JobStatus
    at: float = Field(default_factory=time.time)
    attempt: int = Field(1, ge=1)
    media: MediaFacts | None = None
    output_size: int | None = None
    output_duration_seconds: float | None = None
    error: JobErrorInfo | None = None
    retry: int | None = Field(
        None, ge=1, description="The retry the event belongs to (its task's ``retry``); absent for retry 0."
    )
    progress: int | None = Field(None, ge=0, le=100, description="Percent done (``processing`` reports).")
    speed: float | None = Field(None, ge=0, description="Seconds of audio converted per wall-clock second.")

    @property
    def routing_key(self) -> str:
        return f"job.{self.status.value}"


class WorkerCommand(_Message):
    """An order every conversion worker hears; only the one working on ``job_id`` acts on it."""

    action: Literal["cancel"]
    job_id: str = Field(pattern=JOB_ID_PATTERN.pattern)

"""The queue protocol: what travels through RabbitMQ, as JSON.

* :class:`ConversionTask` — upload → conversion workers, on the tasks exchange
  (routing key ``conversion``), persistent, one per job.
* :class:`JobEvent` — conversion → metadata, on the events topic exchange
  (routing key ``job.<status>``), one per state change.

Both carry ``version`` so the schema can grow; unknown fields are refused (a producer bug
should dead-letter loudly, not half-work).
"""

from __future__ import annotations

import time

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.errors import MessageError
from shared.jobs import JOB_ID_PATTERN, JobErrorInfo, JobStatus, MediaFacts

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
    retry: int | None = Field(None, ge=1, description="Which retry of the job this run is; absent for the first run.")


class JobEvent(_Message):
    """A job changed state. ``at`` is Unix seconds; ``attempt`` counts deliveries from 1."""

    job_id: str = Field(pattern=JOB_ID_PATTERN.pattern)
    status: JobStatus
    at: float = Field(default_factory=time.time)
    attempt: int = Field(1, ge=1)
    media: MediaFacts | None = None
    output_size: int | None = None
    output_duration_seconds: float | None = None
    error: JobErrorInfo | None = None
    retry: int | None = Field(None, ge=1, description="The run the event belongs to (its task's ``retry``).")

    @property
    def routing_key(self) -> str:
        return f"job.{self.status.value}"

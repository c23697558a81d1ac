"""What the metadata service stores of a job: :class:`JobRecord`, the JSON under
``<REDIS_PREFIX>job:<job_id>`` and in ``jobs/<job_id>/job.json``.

A record is the :class:`~shared.job_requests.NewJob` its creator sent plus what only metadata
writes: every try at telling the client the job ended (:class:`NotificationRecord`). The gateway and
upload read records through ``GET /jobs/<id>`` and the change feed as plain
:class:`~shared.jobs.Job` values, which ignore these fields. Records stored before the fields moved
here (all of them on ``shared.jobs.Job``) have the same JSON and load unchanged.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from shared.job_requests import NewJob


class NotificationRecord(BaseModel):
    """One attempt at telling the client a job ended (``JobRecord.notifications``); ``at`` is Unix
    seconds, ``attempt`` counts from 1 (at most ``NOTIFY_MAX_ATTEMPTS``), ``status_code`` is the
    webhook's HTTP status (None for an email, or when no answer came).

    ``outcome``: ``delivered``; ``failed`` (a timeout, a refused connection, a 5xx: tried again
    later); ``gave_up`` (failed on the last allowed attempt); ``rejected`` (a 4xx or 3xx, an SMTP 5xx,
    a callback host or address the guard refuses, an SMTP server without STARTTLS when it is
    required: never tried again; ``detail`` says why); ``abandoned`` (the notifier died during the
    attempt: tried again).
    """

    kind: str  # "email" or "webhook"
    attempt: int
    at: float
    outcome: str
    status_code: int | None = None
    detail: str | None = None


class JobRecord(NewJob):
    """A job as the metadata service stores it: the job its creator sent, and ``notifications``,
    every attempt at telling the client it ended, oldest first."""

    notifications: list[NotificationRecord] = Field(default_factory=list)

    def with_notification(self, record: NotificationRecord) -> JobRecord:
        """The record with one more notification attempt noted (the job's state does not change)."""
        return self.model_copy(update={"notifications": [*self.notifications, record]})

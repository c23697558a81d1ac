"""What follows a job's end, decided in the transaction that records the end (a
:class:`~services.metadata.store.RecordObserver`), so none of it is lost or done twice:

* completed or failed, with ``email`` / ``callback_url``: an rq job per notification on the
  notifications queue, queued inside the transition's MULTI (the rq queue is the outbox: the
  transition and its notifications are written together or not at all);
* completed: the job holds its output (``outputs.py``) and an rq job expiring it is scheduled
  ``OUTPUT_TTL`` after ``finished_at``;
* completed, or failed for good: the input is deleted before the transaction commits, so nobody
  sees the job ended with its input still there (a failed delete fails the write, and the event
  comes back);
* failed with a retryable code (``storage_unavailable``, ``disk_full``): the input is kept
  ``OUTPUT_TTL`` for a retry, then deleted by a scheduled rq job.

Only keys under ``jobs/`` are ever deleted: S3-event and queue jobs use their producer's objects.
"""

from __future__ import annotations

from datetime import UTC, datetime

from rq import Retry

from services.metadata.outputs import OutputCache
from services.metadata.records import JobRecord
from services.metadata.rqueues import RqQueues
from shared.config import Settings
from shared.jobs import JOBS_KEY_PREFIX, JobStatus
from shared.storage import Storage

TASKS = "services.metadata.tasks"
LIFECYCLE_RETRY = Retry(max=10, interval=[5, 30, 120, 600])
"""Expiring an output or forgetting an input retries while storage is down (then every 10 min)."""

RESULT_TTL_SECONDS = 3600
"""How long rq keeps a finished rq job (its result), seconds."""

FAILURE_TTL_SECONDS = 7 * 86400
"""How long rq keeps a failed rq job in its FailedJobRegistry, seconds."""


def just_ended(before: JobRecord | None, after: JobRecord) -> bool:
    """Whether this write took the job to ``completed`` or ``failed`` (a new job may be born so)."""
    ended = after.status in (JobStatus.COMPLETED, JobStatus.FAILED)
    return ended and (before is None or before.status is not after.status)


def owned(key: str) -> bool:
    """Whether siphon made the object at ``key`` (and so may delete it)."""
    return key.startswith(JOBS_KEY_PREFIX)


def notification_retry(s: Settings) -> Retry | None:
    """rq's retry policy for one notification: ``NOTIFY_MAX_ATTEMPTS`` tries in all, waiting
    ``NOTIFY_BACKOFF_SECONDS``, then twice that, and so on, between them."""
    retries = s.notify_max_attempts - 1
    return Retry(max=retries, interval=[s.notify_backoff_seconds * 2**i for i in range(retries)]) if retries else None


def notification_timeout(s: Settings) -> int:
    """rq's limit on one delivery, seconds: an SMTP conversation is several timed steps."""
    return int(s.notify_timeout_seconds * 4) + 10


class Followups:
    """Queues a job's notifications and schedules its lifecycle in the write that ends it."""

    def __init__(self, s: Settings, queues: RqQueues, storage: Storage, outputs: OutputCache):
        self.settings = s
        self.queues = queues
        self.storage = storage
        self.outputs = outputs

    def prepare(self, before: JobRecord | None, after: JobRecord) -> None:
        if just_ended(before, after) and not after.is_retryable and owned(after.input_key):
            self.storage.delete_prefix(after.input_key)

    def within(self, pipe, before: JobRecord | None, after: JobRecord) -> None:
        if not just_ended(before, after):
            return
        for kind, target in (("email", after.email), ("webhook", after.callback_url)):
            if target:
                self._notify(pipe, kind, after)
        if after.status is JobStatus.COMPLETED and owned(after.output_key):
            self.outputs.hold_within(pipe, after)
            self._schedule(pipe, "expire_job", "expire", after)
        if after.is_retryable and owned(after.input_key):
            self._schedule(pipe, "forget_input", "forget-input", after, retry=after.retries)

    def forgotten(self, pipe, job_id: str) -> None:
        pass

    def _notify(self, pipe, kind: str, job: JobRecord) -> None:
        self.queues.notifications.enqueue_call(
            f"{TASKS}.deliver_notification",
            args=(kind, job.model_dump_json()),
            job_id=self.queues.job_id(kind, job.job_id, job.retries),
            retry=notification_retry(self.settings),
            timeout=notification_timeout(self.settings),
            result_ttl=RESULT_TTL_SECONDS,
            failure_ttl=FAILURE_TTL_SECONDS,
            meta={"siphon_job_id": job.job_id, "kind": kind},
            pipeline=pipe,
        )

    def _schedule(self, pipe, task: str, what: str, job: JobRecord, retry: int | None = None) -> None:
        at = datetime.fromtimestamp((job.finished_at or job.created_at) + self.settings.output_ttl, tz=UTC)
        self.queues.lifecycle.enqueue_at(
            at,
            f"{TASKS}.{task}",
            args=(job.job_id,) if retry is None else (job.job_id, retry),
            job_id=self.queues.job_id(what, job.job_id, retry),
            retry=LIFECYCLE_RETRY,
            result_ttl=RESULT_TTL_SECONDS,
            failure_ttl=FAILURE_TTL_SECONDS,
            pipeline=pipe,
        )

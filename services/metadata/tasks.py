"""The rq jobs of the metadata service: queued by ``followups.py`` (inside a transition's MULTI),
run by ``notifier.py``. Each takes plain arguments and finds its collaborators in the process's
:class:`Runtime` (wired by :func:`install`, or on first use from the environment).

    deliver_notification(kind, job_json)   one try of an email or a webhook; raising makes rq try
                                           again (its Retry: NOTIFY_MAX_ATTEMPTS, backoff)
    expire_job(job_id)                     completed → expired, then drop the job's hold on its
                                           output (the last holder deletes it)
    forget_input(job_id, retry)            delete the input of a job still failed (retryable code,
                                           same retry) OUTPUT_TTL after it failed
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from rq import get_current_job

from services.metadata.bootstrap import MetadataParts, make_notifier, metadata_parts
from services.metadata.followups import owned
from services.metadata.notifications import Notifier
from services.metadata.records import JobRecord
from shared.config import settings
from shared.errors import JobNotFound, NotificationFailed
from shared.jobs import JobStatus
from shared.logs import job_context
from shared.messages import JobEvent

log = logging.getLogger(__name__)

TRIES_META = "tries"
"""The rq job's ``meta`` key counting the tries begun (saved before each try, so a try the notifier
died in still counts)."""


@dataclass
class Runtime:
    parts: MetadataParts
    notifier: Notifier


_runtime: Runtime | None = None


def install(runtime: Runtime) -> None:
    """Make ``runtime`` the one these jobs use (the notifier does, at start)."""
    global _runtime
    _runtime = runtime


def runtime() -> Runtime:
    """The installed runtime, or one wired from the environment (an rq worker started otherwise)."""
    if _runtime is None:
        s = settings()
        parts = metadata_parts(s)
        install(Runtime(parts, make_notifier(s, parts.store)))
    return _runtime


def begin_try() -> tuple[int, str]:
    """Count one more try on the current rq job; return ``(try number, delivery id)``."""
    rq_job = get_current_job()
    if rq_job is None:  # called directly (a test, a shell): one try
        return 1, "direct"
    rq_job.meta[TRIES_META] = rq_job.meta.get(TRIES_META, 0) + 1
    rq_job.save_meta()
    return rq_job.meta[TRIES_META], rq_job.id


def deliver_notification(kind: str, job_json: str) -> str:
    """One try of notification ``kind`` (``email``/``webhook``) of the job as it was when it ended;
    returns the outcome. Raises :class:`NotificationFailed` when the try failed and another is due."""
    job = JobRecord.model_validate_json(job_json)
    attempt, delivery_id = begin_try()
    with job_context(job.job_id):
        record = runtime().notifier.deliver(kind, job, attempt, delivery_id)
        log.info("%s try %d: %s%s", kind, attempt, record.outcome, f" ({record.detail})" if record.detail else "")
    if record.outcome == "failed":
        raise NotificationFailed(
            f"{kind} try {attempt}: {record.detail}", transient=True, status_code=record.status_code
        )
    return record.outcome


def expire_job(job_id: str) -> str:
    """Move a completed job to ``expired`` and release its output; returns the job's state.
    Idempotent: run again after a failed delete, it only releases (and deletes) again."""
    parts = runtime().parts
    with job_context(job_id):
        try:
            job = parts.store.apply(JobEvent(job_id=job_id, status=JobStatus.EXPIRED)) or parts.store.get(job_id)
        except JobNotFound:
            return "not_found"
        if job.status is JobStatus.EXPIRED:
            parts.outputs.release(job)
            log.info("job expired")
        return job.status.value


def forget_input(job_id: str, retry: int = 0) -> str:
    """Delete the input of a job still failed in retry ``retry`` (0: its first conversion; not
    retried since); returns its state."""
    parts = runtime().parts
    with job_context(job_id):
        try:
            job = parts.store.get(job_id)
        except JobNotFound:
            return "not_found"
        if job.status is JobStatus.FAILED and job.retries == retry and owned(job.input_key):
            parts.store.storage.delete_prefix(job.input_key)
            log.info("input of the failed job deleted")
        return job.status.value

"""The metadata service's rq queues (rq: jobs in Redis, run by ``services/metadata/notifier.py``).

    <REDIS_PREFIX>notifications   emails and webhooks            tasks.deliver_notification
    <REDIS_PREFIX>lifecycle       scheduled: expiring an output,  tasks.expire_job
                                  forgetting a failed job's input tasks.forget_input

rq keeps its own keys under ``rq:`` (``rq:queue:<name>``, ``rq:job:<id>``, ``rq:wip:<name>``, ...).
Every name siphon gives rq (queues, rq job ids, worker names) contains :func:`rq_slug` of
``REDIS_PREFIX``, so deployments and test runs that share one Redis never meet.
"""

from __future__ import annotations

import re

import redis
from rq import Queue

NOTIFICATIONS = "notifications"
LIFECYCLE = "lifecycle"


def rq_slug(prefix: str) -> str:
    """``REDIS_PREFIX`` as rq allows it in job ids (letters, digits, ``_`` and ``-``)."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", prefix).strip("-") or "siphon"


class RqQueues:
    """The two queues on ``connection`` (no connection is made until one is used)."""

    def __init__(self, connection: redis.Redis, prefix: str):
        self.slug = rq_slug(prefix)
        self.notifications = Queue(f"{prefix}{NOTIFICATIONS}", connection=connection)
        self.lifecycle = Queue(f"{prefix}{LIFECYCLE}", connection=connection)

    @property
    def all(self) -> list[Queue]:
        """In the order a worker serves them: notifications first."""
        return [self.notifications, self.lifecycle]

    def job_id(self, what: str, job_id: str, retry: int | None = None) -> str:
        """The rq job id of ``what`` (``email``, ``webhook``, ``expire``, ...) for a siphon job (and
        its ``retry``, as the suffix ``-r<retry>``, the form rq jobs already scheduled have): fixed,
        so the same work is never queued twice under two ids."""
        return f"{self.slug}-{what}-{job_id}" + (f"-r{retry}" if retry is not None else "")

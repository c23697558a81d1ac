"""The job index: job ids by creation time, for ``GET /jobs`` (newest first, by status, in pages).

    <prefix>jobs:index                          sorted set, every job: member job id, score ``created_at``
    <prefix>jobs:index:<status>                 the same, for the jobs in one state
    <prefix>jobs:owner:<owner>[:<status>]       the same, for one owner's jobs (``GET /jobs`` with a key)

A forgotten job (an upload rolled back) leaves the sets it was in; its owner's may keep its id,
which a listing skips like any id whose record is gone.

Kept in step with the records inside each write's transaction (a :class:`RecordObserver` of the
store), and rebuilt from the manifests in storage when Redis lost it (:meth:`JobIndex.rebuild`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

import redis

from shared.errors import JobStoreUnavailable, RequestRejected
from shared.jobs import Job, JobStatus

log = logging.getLogger(__name__)

MAX_PAGE_SIZE = 100
CURSOR = re.compile(r"^([0-9]{1,15}(?:\.[0-9]{1,9})?)_([0-9a-f]{32})$")
"""A page cursor: the last listed job's ``created_at`` (``repr`` of the float) and its id."""

REBUILD_BATCH = 500
"""Jobs added to the index per Redis round trip while rebuilding it."""


@dataclass(frozen=True)
class Page:
    """Job ids, newest first, and the cursor of the next page (None on the last)."""

    job_ids: list[str]
    next_cursor: str | None


DEFAULT_PAGE_SIZE = 20


def page_size(raw: str | None) -> int:
    """``limit`` as a page size: :data:`DEFAULT_PAGE_SIZE` when absent; 400 ``invalid_limit`` unless 1-100."""
    if raw is None or raw == "":
        return DEFAULT_PAGE_SIZE
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE_SIZE:
        raise RequestRejected(f"'limit' must be a whole number from 1 to {MAX_PAGE_SIZE}.", code="invalid_limit")
    return int(raw)


def status_filter(raw: str | None) -> JobStatus | None:
    """``status`` as a state to list, or None for all; 400 ``invalid_status`` for an unknown state."""
    if raw is None or raw == "":
        return None
    try:
        return JobStatus(raw)
    except ValueError:
        raise RequestRejected(
            f"'status' must be one of {', '.join(s.value for s in JobStatus)}.", code="invalid_status"
        ) from None


def parse_cursor(cursor: str) -> tuple[float, str]:
    """``(created_at, job_id)`` from a cursor; raises 400 ``invalid_cursor`` on anything else."""
    match = CURSOR.fullmatch(cursor)
    if not match:
        raise RequestRejected("'cursor' is not one this server gave out.", code="invalid_cursor")
    return float(match[1]), match[2]


class JobIndex:
    """Sorted sets of job ids by ``created_at``: all jobs, and the jobs of each state."""

    def __init__(self, client: redis.Redis, prefix: str):
        self.redis = client
        self.prefix = prefix

    def key(self, status: JobStatus | None = None, owner: str | None = None) -> str:
        """The sorted set of every job, or of those in ``status``, of all owners or of ``owner``."""
        base = f"{self.prefix}jobs:owner:{owner}" if owner is not None else f"{self.prefix}jobs:index"
        return base + (f":{status.value}" if status else "")

    # --- a RecordObserver -----------------------------------------------------------------------
    def prepare(self, before: Job | None, after: Job) -> None:
        pass

    def within(self, pipe, before: Job | None, after: Job) -> None:
        if before is not None and before.status is after.status:
            return
        score = {after.job_id: after.created_at}
        for owner in (None, after.owner) if after.owner is not None else (None,):
            if before is None:
                pipe.zadd(self.key(owner=owner), score)
            else:
                pipe.zrem(self.key(before.status, owner), after.job_id)
            pipe.zadd(self.key(after.status, owner), score)

    def forgotten(self, pipe, job_id: str) -> None:
        for key in (self.key(), *(self.key(status) for status in JobStatus)):
            pipe.zrem(key, job_id)

    # --- reading ------------------------------------------------------------------------------
    def page(self, status: JobStatus | None, limit: int, cursor: str | None = None, owner: str | None = None) -> Page:
        """Up to ``limit`` job ids, newest first, after ``cursor`` (a previous page's ``next_cursor``);
        only ``owner``'s jobs when given.

        A cursor names the last job listed, not a position, so jobs created meanwhile shift nothing:
        each job is listed once while paging. Jobs created in the same microsecond are ordered by id.
        """
        top, after_id = parse_cursor(cursor) if cursor else ("+inf", None)
        found: list[tuple[str, float]] = []
        offset = 0
        try:
            while len(found) <= limit:
                batch = self.redis.zrevrangebyscore(
                    self.key(status, owner), top, "-inf", start=offset, num=limit + 1, withscores=True
                )
                if not batch:
                    break
                offset += len(batch)
                for member, score in batch:
                    job_id = member.decode()
                    # Same score as the cursor: ZREVRANGE lists those by id, descending; skip the seen ones.
                    if after_id is not None and score == top and job_id >= after_id:
                        continue
                    found.append((job_id, score))
        except redis.RedisError as exc:
            raise JobStoreUnavailable(f"redis: {exc}") from exc
        listed = found[:limit]
        more = len(found) > limit
        return Page([job_id for job_id, _ in listed], f"{listed[-1][1]!r}_{listed[-1][0]}" if more and listed else None)

    def count_by_state(self) -> dict[JobStatus, int]:
        """How many jobs are in each state (every state present): one ``ZCARD`` per state, one round trip.

        Raises:
            JobStoreUnavailable: Redis is down.
        """
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                for status in JobStatus:
                    pipe.zcard(self.key(status))
                counts = pipe.execute()
        except redis.RedisError as exc:
            raise JobStoreUnavailable(f"redis: {exc}") from exc
        return dict(zip(JobStatus, counts, strict=True))

    def is_missing(self) -> bool:
        """Whether the index holds nothing at all (a new deployment, or Redis lost its data)."""
        return not self.redis.exists(self.key())

    def rebuild(self, jobs: Iterable[Job]) -> int:
        """Add ``jobs`` (every manifest in storage) to the index; return how many. Idempotent."""
        count = 0
        batch: list[Job] = []
        for job in jobs:
            batch.append(job)
            if len(batch) >= REBUILD_BATCH:
                count += self._add(batch)
                batch = []
        count += self._add(batch)
        if count:
            log.info("job index rebuilt from %d manifests", count)
        return count

    def _add(self, jobs: list[Job]) -> int:
        with self.redis.pipeline() as pipe:
            for job in jobs:
                for owner in (None, job.owner) if job.owner is not None else (None,):
                    pipe.zadd(self.key(owner=owner), {job.job_id: job.created_at})
                    pipe.zadd(self.key(job.status, owner), {job.job_id: job.created_at})
            pipe.execute()
        return len(jobs)

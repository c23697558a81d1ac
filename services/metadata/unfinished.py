"""Each caller's unfinished jobs, for the ``QUOTA_UNFINISHED_JOBS`` limit (docs/security.md#limits-per-caller).

    <prefix>quota:unfinished:<subject>   set of the subject's queued and processing job ids
    <prefix>quota:subjects               hash, job id → subject, of every job in one of those sets

A job names its caller in ``quota_subject`` (``key:<name>`` or ``addr:<ip>``, set by the upload
service from the gateway's header); jobs without one (queue messages, S3 events) are not counted.
Kept in step with the records inside each write's transaction (a :class:`RecordObserver` of the
store), so the count goes down in the same instant a job ends. A forgotten job (an upload's
rollback) is taken out by a small Lua script, the one way to read its subject inside the MULTI.
Both keys disappear when no job is unfinished. :meth:`UnfinishedJobs.count` also drops any member
whose record is gone or over (Redis lost data, a write outside the store), so a count never stays
too high for good; asked against a limit, it does so only once the set reaches the limit, the
one time a member too many could refuse a submission.
"""

from __future__ import annotations

import json

import redis

from services.metadata.records import JobRecord
from shared.errors import JobStoreUnavailable
from shared.job_records import job_record_key
from shared.jobs import JobStatus

FORGET_SCRIPT = """
local subject = redis.call('HGET', KEYS[1], ARGV[1])
if subject then
    redis.call('SREM', ARGV[2] .. subject, ARGV[1])
    redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""
"""KEYS[1]: the subjects hash; ARGV: the job id, the sets' key prefix. (The set's key is built in
the script, so this needs a single Redis, not a cluster: siphon uses one.)"""

LIVE = (JobStatus.QUEUED.value, JobStatus.PROCESSING.value)


class UnfinishedJobs:
    """The per-subject sets of unfinished job ids."""

    def __init__(self, client: redis.Redis, prefix: str):
        self.redis = client
        self.prefix = prefix

    def key(self, subject: str) -> str:
        return f"{self.set_prefix}{subject}"

    @property
    def set_prefix(self) -> str:
        return f"{self.prefix}quota:unfinished:"

    @property
    def subjects_key(self) -> str:
        return f"{self.prefix}quota:subjects"

    # --- a RecordObserver -----------------------------------------------------------------------
    def prepare(self, before: JobRecord | None, after: JobRecord) -> None:
        pass

    def within(self, pipe, before: JobRecord | None, after: JobRecord) -> None:
        subject = after.quota_subject
        if subject is None or (before is not None and before.status is after.status):
            return
        if after.status.is_terminal:
            pipe.srem(self.key(subject), after.job_id)
            pipe.hdel(self.subjects_key, after.job_id)
        else:  # created, or queued again by a retry
            pipe.sadd(self.key(subject), after.job_id)
            pipe.hset(self.subjects_key, after.job_id, subject)

    def forgotten(self, pipe, job_id: str) -> None:
        pipe.eval(FORGET_SCRIPT, 1, self.subjects_key, job_id, self.set_prefix)

    # --- reading ---------------------------------------------------------------------------
    def count(self, subject: str, limit: int | None = None) -> int:
        """How many jobs of ``subject`` are queued or processing; members whose record (the store's
        ``<prefix>job:<job_id>``) is missing or terminal are dropped on the way.

        With a ``limit`` (``QUOTA_UNFINISHED_JOBS``, ≥ 1), a set smaller than it is answered by its
        size alone (one ``SCARD``), without reading each member's record: the size is never below
        the true count, so a size under the limit means a count under it, and the verdict "under
        the limit" is exact. Only a set that reaches the limit is verified, member by member, and
        the exact count returned. Reading every record of the caller on each submission was most
        of the count's CPU (issue #16), and the stale members it drops are rare (Redis lost data).

        Raises:
            JobStoreUnavailable: Redis is down.
        """
        try:
            if limit is not None and (size := self.redis.scard(self.key(subject))) < limit:
                return size
            return self._verified_count(subject)
        except redis.RedisError as exc:
            raise JobStoreUnavailable(f"redis: {exc}") from exc

    def _verified_count(self, subject: str) -> int:
        members = [member.decode() for member in self.redis.smembers(self.key(subject))]
        if not members:
            return 0
        records = self.redis.mget([job_record_key(self.prefix, job_id) for job_id in members])
        stale = [job_id for job_id, raw in zip(members, records, strict=True) if not is_live(raw)]
        if stale:
            with self.redis.pipeline() as pipe:
                pipe.srem(self.key(subject), *stale)
                pipe.hdel(self.subjects_key, *stale)
                pipe.execute()
        return len(members) - len(stale)


def is_live(raw: bytes | None) -> bool:
    """Whether a stored job record is queued or processing (a missing one is not)."""
    return raw is not None and json.loads(raw).get("status") in LIVE

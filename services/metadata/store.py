"""The job store: Redis as the fast cache, a JSON manifest in object storage as the durable copy.

Every write goes to the manifest first, then to Redis; a read that misses Redis rebuilds the
record from the manifest. So losing Redis (restart without persistence, FLUSHDB) loses no job.
Transitions run in a WATCH/MULTI transaction, so concurrent events never overwrite each other.
"""

from __future__ import annotations

import logging
import time

import redis

from shared.errors import JobNotFound, JobStoreUnavailable, ObjectNotFound
from shared.jobs import Job, job_prefix, manifest_key
from shared.messages import JobEvent
from shared.storage import Storage

log = logging.getLogger(__name__)

REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError, redis.ReadOnlyError)

DONE_MARKER_TTL_SECONDS = 3600
"""How long the "job is terminal" marker that wakes long-polls lives, seconds."""

WAIT_SLICE_SECONDS = 2.0
"""Longest single blocking Redis call of :meth:`JobStore.wait_terminal`, seconds; below the client's
socket timeout, so a long wait is a few blocking calls rather than one the socket would cut."""


class JobStore:
    """Jobs keyed ``<prefix>job:<job_id>`` in Redis, each a JSON :class:`~shared.jobs.Job`."""

    def __init__(self, client: redis.Redis, prefix: str, storage: Storage):
        self.redis = client
        self.prefix = prefix
        self.storage = storage

    def _key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def _done_key(self, job_id: str) -> str:
        """A list that holds one element once the job is terminal; long-polls block on it."""
        return f"{self.prefix}job:{job_id}:done"

    def _save_manifest(self, job: Job) -> None:
        self.storage.put_bytes(manifest_key(job.job_id), job.model_dump_json().encode())

    def create(self, job: Job) -> None:
        """Store a new job (manifest, then Redis).

        Raises:
            StorageUnavailable, JobStoreUnavailable: a backend is down; nothing half-written is
                left in Redis (the manifest, if written, is removed by :meth:`delete`).
        """
        self._save_manifest(job)
        try:
            self.redis.set(self._key(job.job_id), job.model_dump_json())
        except REDIS_ERRORS as exc:
            raise JobStoreUnavailable(f"redis: {exc}") from exc

    def get(self, job_id: str) -> Job:
        """The job, from Redis or else rebuilt from its manifest.

        Raises:
            JobNotFound: neither Redis nor storage knows the job.
        """
        try:
            raw = self.redis.get(self._key(job_id))
        except REDIS_ERRORS as exc:
            raise JobStoreUnavailable(f"redis: {exc}") from exc
        if raw is not None:
            return Job.model_validate_json(raw)
        return self._restore(job_id)

    def _restore(self, job_id: str) -> Job:
        try:
            job = Job.model_validate_json(self.storage.get_bytes(manifest_key(job_id)))
        except ObjectNotFound:
            raise JobNotFound("Job not found.") from None
        try:
            self.redis.set(self._key(job_id), job.model_dump_json(), nx=True)
        except REDIS_ERRORS as exc:
            raise JobStoreUnavailable(f"redis: {exc}") from exc
        log.info("job record restored from its manifest", extra={"job_id": job_id})
        return job

    def apply(self, event: JobEvent) -> Job | None:
        """Apply ``event`` atomically; return the new job, or None when it changes nothing.

        Raises:
            JobNotFound: the event names a job nobody knows.
        """
        key = self._key(event.job_id)
        try:
            with self.redis.pipeline() as pipe:
                wrote_manifest = False
                while True:
                    try:
                        pipe.watch(key)
                        raw = pipe.get(key)
                        job = Job.model_validate_json(raw) if raw is not None else self._restore(event.job_id)
                        updated = job.apply(event)
                        if updated is None and not wrote_manifest:
                            return None
                        # After a lost race our manifest may have overwritten the winner's: write the current
                        # state back, under the same WATCH, even when the event no longer changes anything.
                        current = job if updated is None else updated
                        self._save_manifest(current)
                        wrote_manifest = True
                        pipe.multi()
                        pipe.set(key, current.model_dump_json())
                        self._mark_done(pipe, current)
                        pipe.execute()
                        return updated
                    except redis.WatchError:
                        continue
        except REDIS_ERRORS as exc:
            raise JobStoreUnavailable(f"redis: {exc}") from exc

    def _mark_done(self, pipe, job: Job) -> None:
        """Set the done marker of a terminal job; clear it when a retry makes the job live again."""
        if job.status.is_terminal:
            pipe.rpush(self._done_key(job.job_id), b"1")
            pipe.expire(self._done_key(job.job_id), DONE_MARKER_TTL_SECONDS)
        else:
            pipe.delete(self._done_key(job.job_id))

    def wait_terminal(self, job_id: str, timeout: float) -> Job:
        """The job as soon as it is completed or failed, or as it is after ``timeout`` seconds.

        Blocks on the job's done marker (``BLMOVE`` of the list onto itself, so the marker stays
        for every other waiter) instead of polling: a transition wakes every waiter at once.

        Raises:
            JobNotFound: nobody knows the job.
        """
        deadline = time.monotonic() + timeout
        job = self.get(job_id)
        while not job.status.is_terminal and (remaining := deadline - time.monotonic()) > 0:
            done = self._done_key(job_id)
            try:
                self.redis.blmove(done, done, min(remaining, WAIT_SLICE_SECONDS), "LEFT", "RIGHT")
            except REDIS_ERRORS as exc:
                raise JobStoreUnavailable(f"redis: {exc}") from exc
            job = self.get(job_id)
        return job

    def delete(self, job_id: str) -> None:
        """Forget the job's record in Redis and storage (not its media files)."""
        self.storage.delete_prefix(manifest_key(job_id))
        try:
            self.redis.delete(self._key(job_id), self._done_key(job_id))
        except REDIS_ERRORS as exc:
            raise JobStoreUnavailable(f"redis: {exc}") from exc

    def check(self) -> None:
        """Raise :class:`JobStoreUnavailable` or ``StorageUnavailable`` unless both backends answer."""
        try:
            self.redis.ping()
        except REDIS_ERRORS as exc:
            raise JobStoreUnavailable(f"redis: {exc}") from exc
        self.storage.check()

    def purge(self, job_id: str) -> None:
        """Forget the job and delete every file it has (record, input, output)."""
        self.storage.delete_prefix(job_prefix(job_id))
        self.delete(job_id)

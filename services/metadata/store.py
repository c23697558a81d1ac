"""The job store: Redis as the fast cache, a JSON manifest in object storage as the durable copy.

Every write goes to the manifest first, then to Redis; a read that misses Redis rebuilds the
record from the manifest. So losing Redis (restart without persistence, FLUSHDB) loses no job.
Transitions run in a WATCH/MULTI transaction, so concurrent events never overwrite each other.
Observers (:class:`RecordObserver`: the job index, the change feed, what follows a job's end) add
their Redis commands to the same transaction, so they never disagree with the records.
Progress reports (several a second per running job) go to Redis only: losing one costs nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from enum import StrEnum
from typing import Protocol

import redis

from services.metadata.records import JobRecord, NotificationRecord
from shared.errors import JobNotFound, JobStoreUnavailable, ObjectNotFound
from shared.job_records import job_record_key
from shared.jobs import JobStatus, job_prefix, manifest_key
from shared.messages import JobEvent
from shared.storage import Storage

log = logging.getLogger(__name__)

REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError, redis.ReadOnlyError)

DONE_MARKER_TTL_SECONDS = 3600
"""How long the "job is terminal" marker that wakes long-polls lives, seconds."""

WAIT_SLICE_SECONDS = 2.0
"""Longest single blocking Redis call of :meth:`JobStore.wait_terminal`, seconds; below the client's
socket timeout, so a long wait is a few blocking calls rather than one the socket would cut."""


class CatchUp(StrEnum):
    """What :meth:`JobStore.catch_up` did to a job's Redis record."""

    CURRENT = "current"  # it matched the manifest: nothing written
    GONE = "gone"  # the job was forgotten meanwhile (no manifest): nothing written
    RESTORED = "restored"  # it was missing: put back from the manifest
    ADVANCED = "advanced"  # it was behind the manifest: moved on to it, observers included


class RecordObserver(Protocol):
    """Kept in step with the job records (``index.py``, ``feed.py``, ``followups.py``)."""

    def prepare(self, before: JobRecord | None, after: JobRecord) -> None:
        """Before a write's transaction (after its manifest): storage work; raising aborts the write."""

    def within(self, pipe, before: JobRecord | None, after: JobRecord) -> None:
        """Queue Redis commands inside the write's MULTI (``before`` is None for a new job)."""

    def forgotten(self, pipe, job_id: str) -> None:
        """Queue Redis commands inside the MULTI that forgets a job (an upload's rollback)."""


class JobStore:
    """Jobs keyed ``<prefix>job:<job_id>`` in Redis, each a JSON :class:`~services.metadata.records.JobRecord`
    (the key others may read, and how, is ``shared/job_records.py``)."""

    def __init__(self, client: redis.Redis, prefix: str, storage: Storage, observers: Sequence[RecordObserver] = ()):
        self.redis = client
        self.prefix = prefix
        self.storage = storage
        self.observers = tuple(observers)

    def _key(self, job_id: str) -> str:
        return job_record_key(self.prefix, job_id)

    def _done_key(self, job_id: str) -> str:
        """A list that holds one element once the job is terminal; long-polls block on it."""
        return f"{self.prefix}job:{job_id}:done"

    def _save_manifest(self, job: JobRecord) -> None:
        self.storage.put_bytes(manifest_key(job.job_id), job.model_dump_json().encode())

    def create(self, job: JobRecord) -> None:
        """Store a new job (manifest, then Redis).

        Raises:
            StorageUnavailable, JobStoreUnavailable: a backend is down; nothing half-written is
                left in Redis (the manifest, if written, is removed by :meth:`delete`).
        """
        self._save_manifest(job)
        try:
            with self.redis.pipeline() as pipe:
                self._write(pipe, job, (None, job))
        except REDIS_ERRORS as exc:
            raise JobStoreUnavailable(f"redis: {exc}") from exc

    def get(self, job_id: str) -> JobRecord:
        """The job, from Redis or else rebuilt from its manifest.

        Raises:
            JobNotFound: neither Redis nor storage knows the job.
        """
        return JobRecord.model_validate_json(self.get_json(job_id))

    def get_json(self, job_id: str) -> bytes:
        """The job's record as stored: :class:`JobRecord`'s JSON (``JobRecord.model_dump_json``, the only way
        records are written), served as it is rather than parsed and written again.

        Raises:
            JobNotFound: neither Redis nor storage knows the job.
        """
        try:
            raw = self.redis.get(self._key(job_id))
        except REDIS_ERRORS as exc:
            raise JobStoreUnavailable(f"redis: {exc}") from exc
        if raw is not None:
            return raw
        return self._restore(job_id).model_dump_json().encode()

    def _restore(self, job_id: str) -> JobRecord:
        try:
            job = JobRecord.model_validate_json(self.storage.get_bytes(manifest_key(job_id)))
        except ObjectNotFound:
            raise JobNotFound("Job not found.") from None
        try:
            self.redis.set(self._key(job_id), job.model_dump_json(), nx=True)
        except REDIS_ERRORS as exc:
            raise JobStoreUnavailable(f"redis: {exc}") from exc
        log.info("job record restored from its manifest", extra={"job_id": job_id})
        return job

    def apply(self, event: JobEvent) -> JobRecord | None:
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
                        job = JobRecord.model_validate_json(raw) if raw is not None else self._restore(event.job_id)
                        updated = job.apply(event)
                        if updated is None and not wrote_manifest:
                            self._discard_late_output(job, event)
                            return None
                        # After a lost race our manifest may have overwritten the winner's: write the current
                        # state back, under the same WATCH, even when the event no longer changes anything.
                        current = job if updated is None else updated
                        if wrote_manifest or updated is None or not job.differs_only_in_progress(updated):
                            self._save_manifest(current)
                            wrote_manifest = True
                        self._write(pipe, current, (job, updated) if updated is not None else None)
                        return updated
                    except redis.WatchError:
                        continue
        except REDIS_ERRORS as exc:
            raise JobStoreUnavailable(f"redis: {exc}") from exc

    def record_notification(self, job_id: str, record: NotificationRecord) -> JobRecord:
        """Add one notification attempt to the job's record (manifest, then Redis, atomically like a
        transition; the job's state does not change). Returns the job afterwards.

        Raises:
            JobNotFound: nobody knows the job.
        """
        key = self._key(job_id)
        try:
            with self.redis.pipeline() as pipe:
                while True:
                    try:
                        pipe.watch(key)
                        raw = pipe.get(key)
                        job = JobRecord.model_validate_json(raw) if raw is not None else self._restore(job_id)
                        updated = job.with_notification(record)
                        self._save_manifest(updated)
                        pipe.multi()
                        pipe.set(key, updated.model_dump_json())
                        self._observe(pipe, job, updated)
                        pipe.execute()
                        return updated
                    except redis.WatchError:
                        continue
        except REDIS_ERRORS as exc:
            raise JobStoreUnavailable(f"redis: {exc}") from exc

    def catch_up(self, job_id: str) -> CatchUp:
        """Bring the job's Redis record in step with its manifest, after Redis lost writes it had
        acknowledged (a failover to a replica that had not received them: replication is
        asynchronous, https://redis.io/docs/latest/operate/oss_and_stack/management/replication/).

        The manifest is written before Redis on every write, so a record that differs from it in
        more than ``progress`` is behind: it is replaced, and the observers see the transition Redis
        missed (index, change feed, the follow-ups of a job that ended: they were in the same lost
        MULTI). A missing record is put back with its done marker only (as a read that misses Redis
        does); the caller re-adds it to the index (a read may have put it back before, unindexed).
        The manifest is read under WATCH of the record, so a concurrent transition is never
        overwritten with an older state.

        Raises:
            JobStoreUnavailable: Redis is down.
            StorageUnavailable: storage is.
        """
        key = self._key(job_id)
        try:
            with self.redis.pipeline() as pipe:
                while True:
                    try:
                        pipe.watch(key)
                        raw = pipe.get(key)
                        try:
                            manifest = JobRecord.model_validate_json(self.storage.get_bytes(manifest_key(job_id)))
                        except ObjectNotFound:
                            return CatchUp.GONE
                        cached = JobRecord.model_validate_json(raw) if raw is not None else None
                        if cached is not None and manifest.differs_only_in_progress(cached):
                            return CatchUp.CURRENT
                        self._write(pipe, manifest, (cached, manifest) if cached is not None else None)
                        log.info("job record caught up with its manifest", extra={"job_id": job_id})
                        return CatchUp.RESTORED if cached is None else CatchUp.ADVANCED
                    except redis.WatchError:
                        continue
        except REDIS_ERRORS as exc:
            raise JobStoreUnavailable(f"redis: {exc}") from exc

    def _write(self, pipe, record: JobRecord, transition: tuple[JobRecord | None, JobRecord] | None = None) -> None:
        """Store ``record`` and its done marker in one MULTI on ``pipe`` (already WATCHing, or not);
        a ``transition`` (before, after) is prepared first and its observers write in the same MULTI."""
        if transition is not None:
            self._prepare(*transition)
        pipe.multi()
        pipe.set(self._key(record.job_id), record.model_dump_json())
        self._mark_done(pipe, record)
        if transition is not None:
            self._observe(pipe, *transition)
        pipe.execute()

    def _prepare(self, before: JobRecord | None, after: JobRecord) -> None:
        for observer in self.observers:
            observer.prepare(before, after)

    def _observe(self, pipe, before: JobRecord | None, after: JobRecord) -> None:
        for observer in self.observers:
            observer.within(pipe, before, after)

    def cancel(self, job_id: str) -> tuple[JobRecord, bool]:
        """Cancel a job that is not finished and delete its input and any output (its record and
        manifest stay). Returns the job afterwards and whether this call cancelled it; a completed
        or failed job comes back unchanged. Cancelling again is harmless (and deletes again).

        Raises:
            JobNotFound: nobody knows the job.
        """
        updated = self.apply(JobEvent(job_id=job_id, status=JobStatus.CANCELLED))
        job = updated or self.get(job_id)
        if job.status is JobStatus.CANCELLED:
            self._delete_media(job)
        return job, updated is not None

    def _discard_late_output(self, job: JobRecord, event: JobEvent) -> None:
        """A worker that stored its output just after the job was cancelled: delete that output."""
        if job.status is JobStatus.CANCELLED and event.status is JobStatus.COMPLETED:
            log.info("deleting the output of a cancelled job", extra={"job_id": job.job_id})
            self._delete_media(job)

    def _delete_media(self, job: JobRecord) -> None:
        """Delete the job's input and output, where they are the job's own (under its prefix): the
        objects of queue producers and S3 events belong to them, and stay."""
        for key in (job.input_key, job.output_key):
            if key.startswith(job_prefix(job.job_id)):
                self.storage.delete_prefix(key)

    def _mark_done(self, pipe, job: JobRecord) -> None:
        """Set the done marker of a terminal job; clear it when a retry makes the job live again."""
        if job.status.is_terminal:
            pipe.rpush(self._done_key(job.job_id), b"1")
            pipe.expire(self._done_key(job.job_id), DONE_MARKER_TTL_SECONDS)
        else:
            pipe.delete(self._done_key(job.job_id))

    def wait_terminal(self, job_id: str, timeout: float) -> JobRecord:
        """The job as soon as it is completed or failed, or as it is after ``timeout`` seconds.

        Blocks on the job's done marker (``BLMOVE`` of the list onto itself, so the marker stays
        for every other waiter) instead of polling: a transition wakes every waiter at once. A Redis
        lost during the wait (a failover to a replica) is tried again every :data:`WAIT_SLICE_SECONDS`
        until ``timeout``; only a Redis still unreachable then fails the wait.

        Raises:
            JobNotFound: nobody knows the job.
            JobStoreUnavailable: Redis is unreachable at the start, or still at ``timeout``.
        """
        deadline = time.monotonic() + timeout
        job = self.get(job_id)
        while not job.status.is_terminal and (remaining := deadline - time.monotonic()) > 0:
            done = self._done_key(job_id)
            try:
                self.redis.blmove(done, done, min(remaining, WAIT_SLICE_SECONDS), "LEFT", "RIGHT")
                job = self.get(job_id)
            except (*REDIS_ERRORS, JobStoreUnavailable) as exc:
                if deadline - time.monotonic() <= WAIT_SLICE_SECONDS:
                    raise JobStoreUnavailable(f"redis: {exc}") from exc
                time.sleep(WAIT_SLICE_SECONDS)
        return job

    def delete(self, job_id: str) -> None:
        """Forget the job's record in Redis and storage (not its media files)."""
        self.storage.delete_prefix(manifest_key(job_id))
        try:
            with self.redis.pipeline() as pipe:
                pipe.multi()
                pipe.delete(self._key(job_id), self._done_key(job_id))
                for observer in self.observers:
                    observer.forgotten(pipe, job_id)
                pipe.execute()
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

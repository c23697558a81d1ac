"""The output cache: identical content with identical options is converted once, and an output
shared by several jobs is deleted only when the last of them expires (reference counting).

    <prefix>cache:<cache_key>        JSON: the first job that produced this content + options
                                     (``job_id``, ``output_key``, sizes, media facts)
    <prefix>holders:<output_key>     set of the ids of the jobs whose record points at the output

``cache_key`` is the upload's SHA-256 and a digest of its conversion options (the upload service
makes it, ``services/upload/intake.py``). A repeat upload :meth:`claims <OutputCache.claim>` the
entry and becomes a new job, completed at once, ``cached: true``, pointing at the same output key.
Each job holds its output until it expires; :meth:`OutputCache.release` drops the hold, and the
last one out deletes the object and the cache entry in the same transaction that saw the holders
run out, so no new job can claim an output that is being deleted. Outputs outside ``jobs/``
(S3-event and queue jobs write where their producer said) are never held, cached or deleted.

Redis is not the truth about storage: a bucket lifecycle rule, a restored Redis, an operator
deleting objects, or two deployments sharing one Redis under one ``REDIS_PREFIX`` while storing
files in different places can leave an entry naming an object that is not there. So a hit is
served only after one HEAD (``Storage.size``) finds the output; an entry whose output is gone is
dropped, and the upload is converted afresh (its output then becomes the entry).
"""

from __future__ import annotations

import json
import logging
import time

import redis

from services.metadata.records import JobRecord
from shared.errors import JobStoreUnavailable, ObjectNotFound, StorageUnavailable
from shared.jobs import JOBS_KEY_PREFIX, JobStatus, MediaFacts
from shared.storage import Storage

log = logging.getLogger(__name__)


class OutputCache:
    """Claims, holds and releases outputs; ``enabled`` is ``OUTPUT_CACHE`` (holds are kept either way)."""

    def __init__(self, client: redis.Redis, prefix: str, storage: Storage, enabled: bool = True):
        self.redis = client
        self.prefix = prefix
        self.storage = storage
        self.enabled = enabled

    def entry_key(self, cache_key: str) -> str:
        return f"{self.prefix}cache:{cache_key}"

    def holders_key(self, output_key: str) -> str:
        return f"{self.prefix}holders:{output_key}"

    # --- a new upload ---------------------------------------------------------------------------
    def reuse(self, job: JobRecord) -> JobRecord:
        """``job`` completed from the cache (``cached: true``, the earlier job's output) when an
        identical upload's output is still there (in storage, not just in Redis), else ``job``
        unchanged, to be converted. A hit already holds the output; if the job is then not stored,
        :meth:`release` it."""
        if not (self.enabled and job.cache_key and job.status is JobStatus.QUEUED):
            return job
        origin = self.claim(job.cache_key, job.job_id)
        if origin is None or not self._output_present(job, origin["output_key"]):
            return job
        now = time.time()
        log.info(
            "identical upload of job %s: completed from its output", origin["job_id"], extra={"job_id": job.job_id}
        )
        return job.model_copy(
            update={
                "status": JobStatus.COMPLETED,
                "cached": True,
                "started_at": now,
                "finished_at": now,
                "progress": 100,
                "output_key": origin["output_key"],
                "output_size": origin.get("output_size"),
                "output_duration_seconds": origin.get("output_duration_seconds"),
                "media": MediaFacts.model_validate(origin["media"]) if origin.get("media") else None,
            }
        )

    def claim(self, cache_key: str, job_id: str) -> dict | None:
        """Hold the cached output of ``cache_key`` for ``job_id``; return the cache entry, or None."""
        entry = self.entry_key(cache_key)
        try:
            with self.redis.pipeline() as pipe:
                while True:
                    try:
                        pipe.watch(entry)
                        raw = pipe.get(entry)
                        if raw is None:
                            return None
                        origin = json.loads(raw)
                        pipe.multi()
                        pipe.sadd(self.holders_key(origin["output_key"]), job_id)
                        pipe.execute()
                        return origin
                    except redis.WatchError:
                        continue
        except redis.RedisError as exc:
            raise JobStoreUnavailable(f"redis: {exc}") from exc

    def _output_present(self, job: JobRecord, output_key: str) -> bool:
        """Whether the claimed ``output_key`` is in storage. When it is not, ``job``'s hold is
        dropped, and so is the cache entry (if it still names that output); when storage cannot
        say, only the hold: this upload is converted, and the entry is left for the next one."""
        try:
            self.storage.size(output_key)
            return True
        except ObjectNotFound:
            log.warning(
                "cached output %s is gone from storage: converting afresh", output_key, extra={"job_id": job.job_id}
            )
            self._forget(job.cache_key, output_key, job.job_id)
        except StorageUnavailable as exc:
            log.warning(
                "cannot check cached output %s (%s): converting afresh", output_key, exc, extra={"job_id": job.job_id}
            )
            self._forget(None, output_key, job.job_id)
        return False

    def _forget(self, cache_key: str | None, output_key: str, job_id: str) -> None:
        """Drop ``job_id``'s hold on ``output_key`` and, with a ``cache_key``, its entry while it
        still names ``output_key`` (another upload may have replaced it meanwhile)."""
        holders = self.holders_key(output_key)
        try:
            if cache_key is None:
                self.redis.srem(holders, job_id)
                return
            entry = self.entry_key(cache_key)
            with self.redis.pipeline() as pipe:
                while True:
                    try:
                        pipe.watch(entry)
                        cached = json.loads(pipe.get(entry) or "null")
                        pipe.multi()
                        pipe.srem(holders, job_id)
                        if cached and cached.get("output_key") == output_key:
                            pipe.delete(entry)
                        pipe.execute()
                        return
                    except redis.WatchError:
                        continue
        except redis.RedisError as exc:
            raise JobStoreUnavailable(f"redis: {exc}") from exc

    # --- a job completes (inside its transition's MULTI) --------------------------------------------
    def hold_within(self, pipe, job: JobRecord) -> None:
        """Make ``job`` a holder of its output and, if it converted it, the cache entry's source."""
        if not job.output_key.startswith(JOBS_KEY_PREFIX):
            return
        pipe.sadd(self.holders_key(job.output_key), job.job_id)
        if self.enabled and job.cache_key and not job.cached:
            entry = {
                "job_id": job.job_id,
                "output_key": job.output_key,
                "output_size": job.output_size,
                "output_duration_seconds": job.output_duration_seconds,
                "media": job.media.model_dump() if job.media else None,
            }
            pipe.set(self.entry_key(job.cache_key), json.dumps(entry), nx=True)

    # --- a job expires ----------------------------------------------------------------------------
    def release(self, job: JobRecord) -> bool:
        """Drop ``job``'s hold on its output; the last holder deletes the object (and the cache
        entry pointing at it). Returns whether the object was deleted. Idempotent: a retry after a
        failed delete finds no holder left and deletes again.

        Raises:
            StorageUnavailable: the object could not be deleted (retry later).
        """
        if not job.output_key.startswith(JOBS_KEY_PREFIX):
            return False
        holders = self.holders_key(job.output_key)
        entry = self.entry_key(job.cache_key) if job.cache_key else None
        try:
            with self.redis.pipeline() as pipe:
                while True:
                    try:
                        pipe.watch(holders, *([entry] if entry else []))
                        others = {m.decode() for m in pipe.smembers(holders)} - {job.job_id}
                        cached = json.loads(pipe.get(entry) or "null") if entry else None
                        pipe.multi()
                        pipe.srem(holders, job.job_id)
                        if not others and cached and cached.get("output_key") == job.output_key:
                            pipe.delete(entry)
                        pipe.execute()
                        break
                    except redis.WatchError:
                        continue
        except redis.RedisError as exc:
            raise JobStoreUnavailable(f"redis: {exc}") from exc
        if others:
            log.info("output kept: %d other job(s) still hold it", len(others), extra={"job_id": job.job_id})
            return False
        self.storage.delete_prefix(job.output_key)
        log.info("output deleted", extra={"job_id": job.job_id})
        return True

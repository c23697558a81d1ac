"""Catching Redis up with the manifests when the node that serves it changes.

Redis replicates asynchronously: when Sentinel promotes a replica after the primary died, the
writes the old primary acknowledged in its last moments may never have reached the replica
(https://redis.io/docs/latest/operate/oss_and_stack/management/sentinel/#consistency-under-partitions).
A Redis restarted without its data lost everything. Either way the manifests in storage, written
before Redis on every transition (``store.py``), hold what Redis missed.

A node is known by its ``run_id`` (``INFO server``), new each time a Redis server starts. The
notifier asks every :data:`RESYNC_CHECK_SECONDS`; when the answer changes, every manifest is
compared with its record and Redis is caught up (:meth:`JobStore.catch_up`): missing records come
back and are re-indexed, records that fell behind move on with their observers. Not restored: the
per-caller count of unfinished jobs (``unfinished.py``) of a job whose record was missing, and
progress reports (they are not in the manifests).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

import redis

from services.metadata.index import JobIndex
from services.metadata.records import JobRecord
from services.metadata.store import CatchUp, JobStore
from shared.errors import SiphonError

log = logging.getLogger(__name__)

RESYNC_CHECK_SECONDS = 1.0
"""How often the notifier asks which Redis server serves it, seconds (one ``INFO server``)."""


def serving_node(client: redis.Redis) -> str:
    """The ``run_id`` of the Redis server ``client`` reaches now (40 hex digits).

    Raises:
        redis.RedisError: Redis cannot be reached.
    """
    return client.info("server")["run_id"]


def resync(store: JobStore, index: JobIndex) -> Counter[CatchUp]:
    """Catch every job's Redis record up with its manifest; return how many were left as they were,
    restored and advanced. Idempotent, and safe beside live transitions.

    Raises:
        JobStoreUnavailable, StorageUnavailable: a backend is down (some jobs may be done already;
            run it again).
    """
    counts: Counter[CatchUp] = Counter()
    known: list[JobRecord] = []
    for key in store.storage.keys("jobs/"):
        if not key.endswith("/job.json"):
            continue
        job_id = key.split("/")[1]
        outcome = store.catch_up(job_id)
        counts[outcome] += 1
        if outcome is not CatchUp.GONE:
            known.append(store.get(job_id))
    # Every job, not only the restored ones: a read that missed Redis put a record back without
    # its index entries. Adding a job to the sets it is already in changes nothing.
    index.rebuild(known)
    return counts


def keep_in_step(store: JobStore, index: JobIndex, stopping: threading.Event) -> None:
    """Until ``stopping`` is set: notice a change of Redis server and resync after it (a failed
    resync is tried again at the next check). The first server seen is taken as in step."""
    synced: str | None = None
    while not stopping.wait(RESYNC_CHECK_SECONDS):
        try:
            node = serving_node(store.redis)
            if synced is not None and node != synced:
                log.warning("Redis is served by another node (%s): resyncing from the manifests", node[:8])
                counts = resync(store, index)
                log.warning("resync done: %s", {outcome.value: n for outcome, n in counts.items()})
            synced = node
        except (SiphonError, redis.RedisError) as exc:
            log.warning("Redis server check failed: %s", exc)

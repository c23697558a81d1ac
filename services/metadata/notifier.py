"""The metadata service's rq worker: sends notifications and runs the lifecycle's scheduled jobs.

Run: ``python -m services.metadata.notifier`` (one or more; ``./scripts/up`` starts one). It serves
the ``<REDIS_PREFIX>notifications`` and ``<REDIS_PREFIX>lifecycle`` rq queues (``rqueues.py``)
with rq's scheduler (``--with-scheduler``: retries with backoff and expiries are scheduled rq
jobs), and beside it a watchdog thread (``reaper.py``) that takes back what a notifier killed
mid-job left behind and, every :data:`MAINTENANCE_SECONDS`, rebuilds the job index from the
manifests when Redis has lost it; and a resync thread (``resync.py``) that catches Redis up with
the manifests when another Redis server starts serving (a Sentinel failover). SIGTERM finishes
the job in hand, then stops.

Jobs run in the worker's own process (rq's ``SimpleWorker``): they are short and mostly wait on
the network, so forking a process per job would only add its start-up.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

import redis
from rq import SimpleWorker
from rq.job import Job as RqJob

from services.metadata import tasks
from services.metadata.bootstrap import make_notifier, metadata_parts, redis_client
from services.metadata.index import JobIndex
from services.metadata.reaper import Watchdog
from services.metadata.records import JobRecord, NotificationRecord
from services.metadata.resync import keep_in_step
from services.metadata.store import JobStore
from shared.config import settings
from shared.errors import SiphonError
from shared.logs import configure_logging
from shared.storage import Storage

log = logging.getLogger(__name__)

WORKER_TTL_SECONDS = 20
"""rq's worker TTL: the idle worker wakes every 5 s (TTL - 15) for maintenance, so a scheduler
lock freed by the watchdog is taken over within seconds."""

MAINTENANCE_SECONDS = 10
"""How often rq cleans its registries and this worker tries to become the scheduler, seconds."""

INDEX_CHECK_SECONDS = 30.0


def abandoned_recorder(store: JobStore):
    """``on_abandoned`` for the watchdog: record the try a dead notifier was making."""

    def record(rq_job: RqJob, gave_up: bool) -> None:
        job_id, kind, attempt = rq_job.meta.get("siphon_job_id"), rq_job.meta.get("kind"), rq_job.meta.get("tries", 0)
        if not (job_id and kind and attempt):
            return
        record = NotificationRecord(
            kind=kind,
            attempt=attempt,
            at=time.time(),
            outcome="gave_up" if gave_up else "abandoned",
            detail="the notifier stopped during this try",
        )
        try:
            store.record_notification(job_id, record)
        except SiphonError as exc:
            log.warning("could not record an abandoned %s try: %s", kind, exc, extra={"job_id": job_id})

    return record


def rebuild_index_if_lost(index: JobIndex, storage: Storage) -> int:
    """Rebuild the job index from the manifests when Redis has none but storage has jobs; return
    how many jobs were indexed (0 when nothing was missing)."""
    if not index.is_missing():
        return 0
    manifests = (key for key in storage.keys("jobs/") if key.endswith("/job.json"))
    jobs = (JobRecord.model_validate_json(storage.get_bytes(key)) for key in manifests)
    return index.rebuild(jobs)


def keep_index(index: JobIndex, storage: Storage, stopping: threading.Event) -> None:
    while not stopping.wait(INDEX_CHECK_SECONDS):
        try:
            rebuild_index_if_lost(index, storage)
        except (SiphonError, redis.RedisError) as exc:
            log.warning("job index check failed: %s", exc)


def main() -> None:
    s = settings()
    configure_logging("metadata-notifier", s.log_level)
    parts = metadata_parts(s)
    tasks.install(tasks.Runtime(parts, make_notifier(s, parts.store)))
    if not s.webhook_secret:
        log.warning("WEBHOOK_SECRET is not set: webhooks go out unsigned")
    connection = redis_client(s)  # rq's own calls follow a failover too
    worker = SimpleWorker(
        parts.queues.all,
        connection=connection,
        name=f"{parts.queues.slug}-notifier-{socket.gethostname()}-{os.getpid()}",
        worker_ttl=WORKER_TTL_SECONDS,
        maintenance_interval=MAINTENANCE_SECONDS,
    )
    watchdog = Watchdog(connection, worker, parts.queues.all, s.notify_max_attempts, abandoned_recorder(parts.store))
    watchdog.beat()  # alive before taking any job, so no other watchdog takes this one's jobs back
    watchdog.start()
    threading.Thread(
        target=keep_index, args=(parts.index, parts.store.storage, watchdog.stopping), name="index", daemon=True
    ).start()
    threading.Thread(
        target=keep_in_step, args=(parts.store, parts.index, watchdog.stopping), name="resync", daemon=True
    ).start()
    try:
        rebuild_index_if_lost(parts.index, parts.store.storage)
        worker.work(with_scheduler=True, logging_level=s.log_level)
    finally:
        watchdog.stop()


if __name__ == "__main__":
    main()

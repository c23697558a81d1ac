"""Putting back the rq jobs of notifiers that died in the middle of one.

rq does not requeue a job whose worker was killed (SIGKILL, out of memory, a lost machine): the
job stays in its queue's StartedJobRegistry until its execution's TTL (the job's timeout + 60 s)
runs out, and rq then fails it as abandoned, retrying it only if it had retries left. So every
notifier runs a :class:`Watchdog` thread that

* proves its notifier alive: ``rq:worker:<name>:alive`` (and ``rq:scheduler:<name>:alive`` for
  its scheduler) with a TTL of :data:`ALIVE_SECONDS`, refreshed every :data:`HEARTBEAT_SECONDS`,
  whatever the worker is busy with;
* every :data:`REAP_INTERVAL_SECONDS` requeues each started rq job whose worker has no such key,
  in a WATCH/MULTI transaction that also removes it from the registry (two watchdogs never both
  requeue it), and reports it (``on_abandoned``: the notification's try is recorded
  ``abandoned``, or ``gave_up`` when it was the last try allowed, which is then not requeued);
* requeues what rq failed as abandoned itself (``AbandonedJobError`` in the FailedJobRegistry);
* deletes a scheduler lock whose holder is dead, so the live notifier's scheduler takes it at its
  next maintenance instead of after rq's 60-second lock TTL.

Only siphon notifiers may work these queues: a worker without the alive key counts as dead.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis
from rq import Queue, Worker
from rq.executions import Execution
from rq.job import Job as RqJob
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.scheduler import RQScheduler
from rq.scripts import release_lock

from services.metadata.followups import FAILURE_TTL_SECONDS

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 2.0
ALIVE_SECONDS = 8
"""A notifier silent this long counts as dead, seconds (a pause that long risks a duplicate try)."""

REAP_INTERVAL_SECONDS = 2.0


def worker_alive_key(worker_name: str) -> str:
    return f"rq:worker:{worker_name}:alive"


def scheduler_alive_key(scheduler_name: str) -> str:
    return f"rq:scheduler:{scheduler_name}:alive"


OnAbandoned = Callable[[RqJob, bool], None]
"""Called with an rq job taken back from a dead notifier and whether it was given up."""


class Watchdog(threading.Thread):
    """The heartbeat and the reaper of one notifier (a daemon thread)."""

    def __init__(
        self, connection: redis.Redis, worker: Worker, queues: list[Queue], max_tries: int, on_abandoned: OnAbandoned
    ):
        super().__init__(name="watchdog", daemon=True)
        self.connection = connection
        self.worker = worker
        self.queues = queues
        self.max_tries = max_tries
        self.on_abandoned = on_abandoned
        self.stopping = threading.Event()

    def run(self) -> None:
        next_reap = 0.0
        while not self.stopping.is_set():
            try:
                self.beat()
                if time.monotonic() >= next_reap:
                    self.reap()
                    next_reap = time.monotonic() + REAP_INTERVAL_SECONDS
            except redis.RedisError as exc:
                log.warning("watchdog: Redis unavailable (%s)", exc)
            self.stopping.wait(HEARTBEAT_SECONDS)

    def stop(self) -> None:
        self.stopping.set()

    def beat(self) -> None:
        """Refresh this notifier's alive keys."""
        with self.connection.pipeline() as pipe:
            pipe.set(worker_alive_key(self.worker.name), b"1", ex=ALIVE_SECONDS)
            scheduler: RQScheduler | None = getattr(self.worker, "scheduler", None)
            if scheduler is not None:
                pipe.set(scheduler_alive_key(scheduler.name), b"1", ex=ALIVE_SECONDS)
            pipe.execute()

    def reap(self) -> int:
        """Requeue what dead notifiers left; return how many rq jobs were taken back."""
        taken = 0
        for queue in self.queues:
            taken += self._reap_started(queue) + self._reap_failed(queue)
            self._free_scheduler_lock(queue)
        return taken

    def _alive(self, worker_name: str) -> bool:
        return worker_name == self.worker.name or bool(self.connection.exists(worker_alive_key(worker_name)))

    def _reap_started(self, queue: Queue) -> int:
        registry = StartedJobRegistry(queue=queue)
        taken = 0
        for job_id, execution_id in registry.get_job_and_execution_ids(cleanup=False):
            try:
                worker_name = Execution.fetch(execution_id, job_id, self.connection).worker_name
            except ValueError:  # the execution's own record expired: nobody is working on it
                worker_name = ""
            if worker_name and self._alive(worker_name):
                continue
            taken += self._take_back(queue, registry, job_id, f"{job_id}:{execution_id}")
        return taken

    def _take_back(self, queue: Queue, registry: StartedJobRegistry, job_id: str, member: str) -> int:
        with self.connection.pipeline() as pipe:
            try:
                pipe.watch(registry.key)
                if pipe.zscore(registry.key, member) is None:
                    return 0
                try:
                    job = RqJob.fetch(job_id, connection=self.connection)
                except Exception:  # noqa: BLE001 -- rq raises NoSuchJobError or a deserialization error
                    pipe.multi()
                    pipe.zrem(registry.key, member)
                    pipe.execute()
                    return 0
                give_up = job.meta.get("tries", 0) >= self.max_tries
                pipe.multi()
                pipe.zrem(registry.key, member)
                if give_up:
                    queue.failed_job_registry.add(
                        job, ttl=FAILURE_TTL_SECONDS, pipeline=pipe, exc_string="abandoned on its last try"
                    )
                else:
                    queue.enqueue_job(job, pipeline=pipe)
                pipe.execute()
            except redis.WatchError:
                return 0
        log.warning("rq job %s of a dead notifier %s", job.id, "given up" if give_up else "requeued")
        self.on_abandoned(job, give_up)
        return 1

    def _reap_failed(self, queue: Queue) -> int:
        registry = FailedJobRegistry(queue=queue)
        taken = 0
        for job_id in registry.get_job_ids(cleanup=False):
            try:
                job = RqJob.fetch(job_id, connection=self.connection)
            except Exception:  # noqa: BLE001 -- gone meanwhile, or unreadable: not ours to judge
                continue
            if "AbandonedJobError" not in (job.exc_info or "") or job.meta.get("tries", 0) >= self.max_tries:
                continue
            try:
                registry.requeue(job)  # its ZREM decides which of two watchdogs requeues it
            except Exception:  # noqa: BLE001 -- InvalidJobOperation: another watchdog did
                continue
            log.warning("rq job %s, failed by rq as abandoned, requeued", job.id)
            self.on_abandoned(job, False)
            taken += 1
        return taken

    def _free_scheduler_lock(self, queue: Queue) -> None:
        lock = RQScheduler.get_locking_key(queue.name)
        holder = self.connection.get(lock)
        own = getattr(getattr(self.worker, "scheduler", None), "name", None)
        if holder and holder.decode() != own and not self.connection.exists(scheduler_alive_key(holder.decode())):
            if release_lock(self.connection, lock, holder.decode()):
                log.warning("freed the scheduler lock of %s, held by a dead notifier", queue.name)

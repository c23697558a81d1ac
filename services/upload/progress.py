"""The public progress feed: every job's progress and outcome as JSON, for followers without HTTP.

Published to the ``<p>.progress`` fanout exchange, which feeds ``TRANSCODING_PROGRESS_QUEUE``
(a follower that must not share that queue binds a queue of its own to the exchange)::

    {"job_id", "status": "processing", "progress": 0-99, "input_key", "output_key"}    while it runs
    {"job_id", "status": "completed",  "progress": 100, "input_key", "output_key"}     final
    {"job_id", "status": "failed", "error": {"code", "message"}, "input_key", "output_key"}  final
    ("cancelled" is final too; a retry starts over with "queued", then "processing")
    {"job_id": <as sent, or null>, "status": "rejected", "error": {"code", "message"}}
        a queue message that could not become a job at all (no usable job id); it was dead-lettered

:class:`ProgressFollower` makes the job messages from the job change feed (``shared/changes.py``),
the one record of job changes, which the metadata service writes: no state machine and no lookups
of its own here, since each change carries the record after it and the status before it. The queue
intake publishes ``rejected`` itself.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable

import redis

from shared.broker import Publishes
from shared.changes import Change, changes_key
from shared.errors import Unavailable
from shared.jobs import Job, JobStatus
from shared.logs import job_context

log = logging.getLogger(__name__)

REJECTED = "rejected"
"""Status of a queue message that did not become a job."""

MAX_ECHOED_ID_CHARS = 64

GROUP = "progress"
"""The queue intake's consumer group on the change feed; its replicas share it, so each change is
published by one of them."""
BATCH = 100
"""Changes read from the stream at a time."""
BLOCK_SECONDS = 1.0
"""Longest wait for a new change in one read, seconds (also how soon :meth:`ProgressFollower.stop` is heard)."""
CLAIM_IDLE_SECONDS = 30.0
"""A change read by a follower but not acknowledged for this long (its follower died) is taken over
by another, seconds (``XAUTOCLAIM`` min-idle-time)."""
RETRY_SECONDS = 2.0
"""Pause after Redis or RabbitMQ failed, before the follower tries again, seconds."""

Publish = Callable[[dict], None]

REDIS_ERRORS = (redis.RedisError, OSError)


class ProgressFeed:
    """Publishes progress messages, persistent and confirmed, to the progress exchange."""

    def __init__(self, publisher: Publishes):
        self.publisher = publisher

    def __call__(self, message: dict) -> None:
        """Publish ``message`` (a JSON object).

        Raises:
            BrokerUnavailable: RabbitMQ is down or did not confirm.
        """
        self.publisher.publish_progress(message)


def rejected_message(given_job_id: object, code: str, message: str) -> dict:
    """The message for a queue message that could not become a job; echoes the id it carried."""
    job_id = given_job_id[:MAX_ECHOED_ID_CHARS] if isinstance(given_job_id, str) else None
    return {"job_id": job_id, "status": REJECTED, "error": {"code": code, "message": message}}


def job_message(job: Job) -> dict:
    """The public message for a job as it is now: ``progress`` while not finished (0 before the
    worker's first report), 100 once completed, none after another end; ``error`` when it has one."""
    message = {
        "job_id": job.job_id,
        "status": job.status.value,
        "input_key": job.input_key,
        "output_key": job.output_key,
    }
    if job.status is JobStatus.COMPLETED:
        message["progress"] = 100
    elif not job.status.is_terminal:
        message["progress"] = job.progress or 0
    if job.error is not None:
        message["error"] = job.error.model_dump()
    return message


def is_news(before: str | None, after: Job) -> bool:
    """Whether the change from status ``before`` (``""``: a new record; None: not known) to ``after``
    is told to followers. One final message per retry: a retry's end is news only when the job was live
    before it (a later write to an ended job, such as a notification record, is not); a job being
    created ``queued`` is not news, a retry (``queued`` after an end) is; every change of a
    ``processing`` job is (metadata writes one only for a new attempt or higher progress);
    ``expired`` never is (the retry's final message went out at ``completed``).
    """
    status = after.status
    if status is JobStatus.EXPIRED:
        return False
    if before is None:  # an entry older than the ``before`` field: tell all but the expired
        return True
    ended_before = before != "" and JobStatus(before).is_terminal
    if status is JobStatus.QUEUED:
        return ended_before
    if status is JobStatus.PROCESSING:
        return True
    return not ended_before


def progress_message(change: Change) -> dict | None:
    """The public message for one change of the feed, or None when it tells followers nothing
    (a ``deleted`` record, an entry trimmed away, a change that is not news: :func:`is_news`).

    Raises:
        ValueError: the entry's record or ``before`` status is not valid (pydantic's ValidationError
            is one).
    """
    if change.kind != "job":
        return None
    job = Job.model_validate_json(change.data)
    return job_message(job) if is_news(change.before, job) else None


def consumer_name() -> str:
    """This process's name in the consumer group: ``<host>-<pid>``, unique among live replicas."""
    return f"{socket.gethostname()}-{os.getpid()}"


class ProgressFollower:
    """Follows the change feed in the consumer group :data:`GROUP` and publishes each change that
    is news (:func:`progress_message`), acknowledging it (``XACK``) only once RabbitMQ confirmed the
    message. A restarted intake resumes at the first change the group has not acknowledged; changes
    a dead replica read and never acknowledged are taken over after :data:`CLAIM_IDLE_SECONDS`.
    The group starts at the feed's end when it is first created (the history is not replayed).
    Delivery is at least once: a crash between the publish and the ``XACK`` repeats one message.
    """

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        publish: Publish,
        name: str | None = None,
        block_seconds: float = BLOCK_SECONDS,
        claim_idle_seconds: float = CLAIM_IDLE_SECONDS,
        retry_seconds: float = RETRY_SECONDS,
    ):
        self.redis = client
        self.key = changes_key(prefix)
        self.publish = publish
        self.name = name or consumer_name()
        self.block_ms = int(block_seconds * 1000)
        self.claim_idle_ms = int(claim_idle_seconds * 1000)
        self.retry_seconds = retry_seconds
        self._stopping = threading.Event()
        self._has_group = False

    # --- running --------------------------------------------------------------------------------
    def run(self) -> None:
        """Follow until :meth:`stop`; a Redis or RabbitMQ outage is logged and waited out."""
        log.info("progress follower %s following %s", self.name, self.key)
        while not self._stopping.is_set():
            try:
                self.step()
            except (Unavailable, *REDIS_ERRORS) as exc:
                log.warning("progress follower: %r; trying again in %.1f s", exc, self.retry_seconds)
                self._has_group = False  # Redis may have restarted empty
                self._stopping.wait(self.retry_seconds)
        self._leave()

    def stop(self) -> None:
        """Stop after the current read (within :data:`BLOCK_SECONDS`); signal-safe."""
        self._stopping.set()

    def step(self) -> int:
        """One round: the changes this follower read before but did not acknowledge, else those a
        dead replica left, else the new ones (waiting up to ``block_seconds`` for one). Returns how
        many changes were settled.

        Raises:
            redis.RedisError, OSError: Redis is down (nothing is lost: the group keeps its place).
            Unavailable: RabbitMQ did not take a message (it and the changes after it are read again).
        """
        self._join_group()
        entries = self._own_pending() or self._claimed() or self._new()
        for entry_id, fields in entries:
            self._settle(Change.from_entry(entry_id, fields))
        return len(entries)

    # --- the consumer group -----------------------------------------------------------------------
    def _join_group(self) -> None:
        if self._has_group:
            return
        try:
            self.redis.xgroup_create(self.key, GROUP, id="$", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._has_group = True

    def _own_pending(self) -> list:
        return _entries(self.redis.xreadgroup(GROUP, self.name, {self.key: "0"}, count=BATCH))

    def _claimed(self) -> list:
        claimed = self.redis.xautoclaim(self.key, GROUP, self.name, self.claim_idle_ms, "0-0", count=BATCH)
        return list(claimed[1])

    def _new(self) -> list:
        return _entries(self.redis.xreadgroup(GROUP, self.name, {self.key: ">"}, count=BATCH, block=self.block_ms))

    def _settle(self, change: Change) -> None:
        with job_context(change.job_id or None):
            try:
                message = progress_message(change)
            except ValueError as exc:
                log.error("not relaying change %s, which is not valid: %s", change.id, exc)
                message = None
            if message is not None:
                self.publish(message)
        self.redis.xack(self.key, GROUP, change.id)

    def _leave(self) -> None:
        """Leave the group on a clean stop, unless changes wait for this follower (another takes
        them over after :data:`CLAIM_IDLE_SECONDS`)."""
        try:
            if not self._own_pending():
                self.redis.xgroup_delconsumer(self.key, GROUP, self.name)
        except REDIS_ERRORS as exc:
            log.warning("progress follower: could not leave the group: %r", exc)


def _entries(reply) -> list:
    """The ``(id, fields)`` entries of an ``XREADGROUP`` reply on one stream (redis-py's list form)."""
    return list(reply[0][1]) if reply else []

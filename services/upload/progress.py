"""The public progress feed: every job's progress and outcome as JSON, for followers without HTTP.

Published to the ``<p>.progress`` fanout exchange, which feeds ``TRANSCODING_PROGRESS_QUEUE``
(a follower that must not share that queue binds a queue of its own to the exchange)::

    {"job_id", "status": "processing", "progress": 0-100, "input_key", "output_key"}   while it runs
    {"job_id", "status": "completed",  "progress": 100, "input_key", "output_key"}     final
    {"job_id", "status": "failed", "error": {"code", "message"}, "input_key", "output_key"}  final
    ("cancelled" is final too; a retry starts over with "processing")
    {"job_id": <as sent, or null>, "status": "rejected", "error": {"code", "message"}}
        a queue message that could not become a job at all (no usable job id); it was dead-lettered

:class:`ProgressRelay` makes the job messages from the internal job events (``<p>.events``);
one final message goes out per retry (a task converted twice sends its events twice). The queue
intake publishes ``rejected`` itself.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from shared.broker import ACK, Publishes, Settlement
from shared.errors import JobNotFound, MessageError
from shared.jobs import JobStatus
from shared.logs import job_context
from shared.messages import JobEvent
from shared.metadata_client import MetadataClient

log = logging.getLogger(__name__)

REJECTED = "rejected"
"""Status of a queue message that did not become a job."""

MAX_ECHOED_ID_CHARS = 64
JOBS_FOLLOWED = 4096
"""Jobs the relay remembers (keys, retry, whether finished); one metadata lookup per job beyond that."""

Publish = Callable[[dict], None]


class ProgressFeed:
    """Publishes progress messages, persistent and confirmed, to the progress exchange."""

    def __init__(self, publisher: Publishes):
        self.publisher = publisher

    def __call__(self, message: dict) -> None:
        self.publisher.publish_progress(message)


def rejected_message(given_job_id: object, code: str, message: str) -> dict:
    """The message for a queue message that could not become a job; echoes the id it carried."""
    job_id = given_job_id[:MAX_ECHOED_ID_CHARS] if isinstance(given_job_id, str) else None
    return {"job_id": job_id, "status": REJECTED, "error": {"code": code, "message": message}}


def job_message(event: JobEvent, input_key: str, output_key: str) -> dict:
    """The public message for a job event; ``progress`` is forwarded when the event carries it."""
    message = {"job_id": event.job_id, "status": event.status.value, "input_key": input_key, "output_key": output_key}
    progress = getattr(event, "progress", None)
    if event.status is JobStatus.COMPLETED:
        message["progress"] = 100
    elif not event.status.is_terminal:
        message["progress"] = progress if progress is not None else 0
    if event.error is not None:
        message["error"] = event.error.model_dump()
    return message


@dataclass
class Followed:
    """What the relay remembers of a job: its keys (they never change), its current ``retry``
    and whether that retry's final message went out."""

    input_key: str
    output_key: str
    retry: int = 0
    finished: bool = False

    def admits(self, event: JobEvent) -> bool:
        """Whether ``event`` is news to a follower, noting it if so. Only one final message per retry
        goes out: a repeated event (a task delivered twice) or a late one of an earlier retry does not."""
        retry = event.retry or 0
        if event.status == "cancelled":  # ends the job whatever its retry
            news = not self.finished
        elif retry > self.retry:  # a new retry (its "queued" may have gone to metadata over HTTP)
            news = True
        else:  # the current retry until its final message; an earlier retry's late events are not news
            news = retry == self.retry and not self.finished and event.status is not JobStatus.QUEUED
        if news:
            self.retry = max(self.retry, retry)
            self.finished = event.status.is_terminal
        return news


class ProgressRelay:
    """Turns job event bodies into public progress messages."""

    def __init__(self, metadata: MetadataClient, publish: Publish):
        self.metadata = metadata
        self.publish = publish
        self._jobs: OrderedDict[str, Followed] = OrderedDict()

    def handle(self, body: bytes, redelivered: bool = False) -> Settlement:
        """Relay one event body. A malformed event, or one for a job the metadata service does not
        know, is dropped (logged): it is internal, and nobody follows such a job.

        Raises:
            Unavailable: the metadata service or RabbitMQ is down (requeue the event).
        """
        try:
            event = JobEvent.decode(body)
        except MessageError as exc:
            log.error("not relaying a malformed job event: %s", exc)
            return ACK
        with job_context(event.job_id):
            try:
                job = self._followed(event.job_id)
            except JobNotFound:
                log.warning("not relaying a %s event of an unknown job", event.status)
                return ACK
            if job.admits(event):
                self.publish(job_message(event, job.input_key, job.output_key))
        return ACK

    def _followed(self, job_id: str) -> Followed:
        if job_id in self._jobs:
            self._jobs.move_to_end(job_id)
            return self._jobs[job_id]
        job = self.metadata.get_job(job_id)
        self._jobs[job_id] = Followed(job.input_key, job.output_key, retry=job.retries)
        if len(self._jobs) > JOBS_FOLLOWED:
            self._jobs.popitem(last=False)
        return self._jobs[job_id]

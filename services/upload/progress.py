"""The public progress feed: every job's progress and outcome as JSON, for followers without HTTP.

Published to the ``<p>.progress`` fanout exchange, which feeds ``TRANSCODING_PROGRESS_QUEUE``
(a follower that must not share that queue binds a queue of its own to the exchange)::

    {"job_id", "status": "queued",     "progress": 0,   "input_key", "output_key"}
    {"job_id", "status": "processing", "progress": 0-100, "input_key", "output_key"}   while it runs
    {"job_id", "status": "completed",  "progress": 100, "input_key", "output_key"}     final
    {"job_id", "status": "failed", "error": {"code", "message"}, "input_key", "output_key"}  final
    {"job_id": <as sent, or null>, "status": "rejected", "error": {"code", "message"}}
        a queue message that could not become a job at all (no usable job id); it was dead-lettered

:class:`ProgressRelay` makes the job messages from the internal job events (``<p>.events``);
the queue intake publishes ``rejected`` itself.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Callable

from services.upload.verdict import ACK, Verdict
from shared.broker import ConfirmingPublisher, Topology
from shared.errors import JobNotFound, MessageError
from shared.jobs import JobStatus
from shared.logs import job_context
from shared.messages import JobEvent
from shared.metadata_client import MetadataClient

log = logging.getLogger(__name__)

REJECTED = "rejected"
"""Status of a queue message that did not become a job."""

MAX_ECHOED_ID_CHARS = 64
KEYS_CACHED = 4096
"""Jobs whose storage keys the relay remembers (keys never change, so one lookup per job)."""

Publish = Callable[[dict], None]


class ProgressFeed:
    """Publishes progress messages, persistent and confirmed, to the progress exchange."""

    def __init__(self, publisher: ConfirmingPublisher, topology: Topology):
        self.publisher = publisher
        self.exchange = topology.progress_exchange

    def __call__(self, message: dict) -> None:
        self.publisher.publish(self.exchange, "", json.dumps(message).encode())


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


class ProgressRelay:
    """Turns job event bodies into public progress messages."""

    def __init__(self, metadata: MetadataClient, publish: Publish):
        self.metadata = metadata
        self.publish = publish
        self._keys: OrderedDict[str, tuple[str, str]] = OrderedDict()

    def handle(self, body: bytes) -> Verdict:
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
                input_key, output_key = self._keys_of(event.job_id)
            except JobNotFound:
                log.warning("not relaying a %s event of an unknown job", event.status)
                return ACK
            self.publish(job_message(event, input_key, output_key))
        return ACK

    def _keys_of(self, job_id: str) -> tuple[str, str]:
        if job_id in self._keys:
            self._keys.move_to_end(job_id)
            return self._keys[job_id]
        job = self.metadata.get_job(job_id)
        self._keys[job_id] = (job.input_key, job.output_key)
        if len(self._keys) > KEYS_CACHED:
            self._keys.popitem(last=False)
        return self._keys[job_id]

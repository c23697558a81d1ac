"""The upload service's second process, its queue intake: ``python -m services.upload.queue_intake``.

One connection, three queues, each message settled by its handler's :class:`Verdict`:

* ``TRANSCODING_JOBS_QUEUE`` — jobs from producers (``queue_jobs.py``);
* ``<p>.s3-events`` — S3 event notifications from MinIO (``s3_events.py``);
* ``<p>.progress-relay`` — job events, republished on the progress feed (``progress.py``).

A handler that meets an unavailable dependency gets its message back in the queue after a pause;
a refused message is published to ``<p>.dead-letter`` with its reason and acked; nothing loops.
"""

from __future__ import annotations

import functools
import logging
import signal
import time
from collections.abc import Callable

import pika

from services.upload.app import make_intake
from services.upload.progress import ProgressFeed, ProgressRelay
from services.upload.queue_jobs import JobQueueIntake
from services.upload.s3_events import S3EventIntake
from services.upload.verdict import REQUEUE, Settle, Verdict, dead_letter
from shared.broker import (
    DEAD_LETTER_CODE_HEADER,
    DEAD_LETTER_REASON_HEADER,
    PERSISTENT,
    ReconnectingConsumer,
    Topology,
)
from shared.config import Settings, settings
from shared.errors import Unavailable
from shared.logs import configure_logging

log = logging.getLogger(__name__)

PREFETCH = 4
"""Unacked messages per queue; they are handled one at a time, in order of arrival."""

RETRY_DELAY_SECONDS = 1.0
"""Pause before requeueing a message whose handler found a dependency down, seconds."""

SOURCE_QUEUE_HEADER = "x-siphon-queue"
"""Dead-letter header naming the queue the message came from."""

Handler = Callable[[bytes, bool], Verdict]
"""Handles a message body; the flag says whether the broker delivers it again (``redelivered``)."""


def verdict_of(handler: Handler, body: bytes, redelivered: bool = False) -> Verdict:
    """The handler's verdict; requeue when a dependency is down, dead-letter on a bug (logged)."""
    try:
        return handler(body, redelivered)
    except Unavailable as exc:
        log.warning("%s (%s); requeueing the message", exc.code, exc.message)
        return REQUEUE
    except Exception:  # a bug: keep the message for a person, but never let it loop
        log.exception("unexpected error handling a message; dead-lettering it")
        return dead_letter("internal_error", "The queue intake failed on this message; see its log.")


class QueueIntake:
    """Consumes the intake's queues until :meth:`stop`."""

    def __init__(self, s: Settings, topology: Topology, handlers: dict[str, Handler]):
        self.topology = topology
        self.handlers = handlers
        self.consumer = ReconnectingConsumer(s, topology, self._setup, "queue-intake")

    def run(self) -> None:
        self.consumer.run()

    def stop(self) -> None:
        self.consumer.stop()

    def _setup(self, channel) -> None:
        self.topology.declare_intake(channel)
        channel.basic_qos(prefetch_count=PREFETCH)
        channel.confirm_delivery()  # dead letters are confirmed before the original is acked
        for queue, handler in self.handlers.items():
            channel.basic_consume(queue, functools.partial(self._on_message, queue, handler))

    def _on_message(self, queue: str, handler: Handler, channel, method, properties, body: bytes) -> None:
        verdict = verdict_of(handler, body, method.redelivered)
        if verdict.settle is Settle.REQUEUE:
            time.sleep(RETRY_DELAY_SECONDS)
            channel.basic_nack(method.delivery_tag, requeue=True)
            return
        if verdict.settle is Settle.DEAD_LETTER:
            headers = {
                DEAD_LETTER_CODE_HEADER: verdict.code,
                DEAD_LETTER_REASON_HEADER: verdict.reason[:1000],
                SOURCE_QUEUE_HEADER: queue,
            }
            props = pika.BasicProperties(
                content_type=properties.content_type, delivery_mode=PERSISTENT, headers=headers
            )
            channel.basic_publish(self.topology.dead_letter_exchange, "", body, props)
        channel.basic_ack(method.delivery_tag)


def make_queue_intake(s: Settings) -> QueueIntake:
    """The queue intake wired to the real storage, metadata service and RabbitMQ."""
    intake = make_intake(s)
    topology = Topology.from_settings(s)
    feed = ProgressFeed(intake.publisher, topology)
    return QueueIntake(
        s,
        topology,
        {
            topology.jobs_queue: JobQueueIntake(intake, feed).handle,
            topology.s3_events_queue: S3EventIntake(
                intake, feed, s.s3_bucket, s.s3_incoming_prefix, s.s3_output_prefix
            ).handle,
            topology.progress_relay_queue: ProgressRelay(intake.metadata, feed).handle,
        },
    )


def main() -> None:
    s = settings()
    configure_logging("upload-queue-intake", s.log_level)
    queue_intake = make_queue_intake(s)
    signal.signal(signal.SIGTERM, lambda *_: queue_intake.stop())
    signal.signal(signal.SIGINT, lambda *_: queue_intake.stop())
    queue_intake.run()


if __name__ == "__main__":
    main()

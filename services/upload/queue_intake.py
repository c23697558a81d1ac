"""The upload service's second process, its queue intake: ``python -m services.upload.queue_intake``.

One connection, two queues, each message settled by its handler's
:class:`~shared.broker.Settlement`:

* ``TRANSCODING_JOBS_QUEUE`` — jobs from producers (``queue_jobs.py``);
* ``<p>.s3-events`` — S3 event notifications from MinIO (``s3_events.py``).

A handler that meets an unavailable dependency gets its message back in the queue after a pause;
a refused message is published to ``<p>.dead-letter`` with its reason and acked; nothing loops.

And one thread, the progress follower (``progress.py``): the metadata service's change feed in
Redis (``shared/changes.py``) published on ``<p>.progress`` → ``TRANSCODING_PROGRESS_QUEUE``.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable

from services.upload.bootstrap import make_intake, make_progress_follower
from services.upload.progress import ProgressFeed, ProgressFollower
from services.upload.queue_jobs import JobQueueIntake
from services.upload.s3_events import S3EventIntake
from shared.broker import Consumer, Delivery, Settlement, Topology, dead_letter
from shared.config import Settings, settings
from shared.logs import configure_logging

log = logging.getLogger(__name__)

PREFETCH = 4
"""Unacked messages per queue; they are handled one at a time, in order of arrival."""

Handler = Callable[[bytes, bool], Settlement]
"""Handles a message body; the flag says whether the broker delivers it again (``redelivered``)."""

CRASHED = dead_letter("internal_error", "The queue intake failed on this message; see its log.")
"""A handler's bug: keep the message for a person, but never let it loop."""


def make_queue_intake(s: Settings, handlers: dict[str, Handler] | None = None) -> Consumer:
    """The queue intake's consumer: each queue's handler (by default wired to the real storage,
    metadata service and RabbitMQ) gets the body and the ``redelivered`` flag."""
    topology = Topology.from_settings(s)
    consumer = Consumer(s, topology, "queue-intake", prefetch=PREFETCH, intake_queues=True)
    for queue, handler in (handlers if handlers is not None else intake_handlers(s, topology)).items():
        consumer.consume(queue, _by_body(handler), on_crash=CRASHED)
    return consumer


def intake_handlers(s: Settings, topology: Topology) -> dict[str, Handler]:
    """The handler of each of the intake's two queues."""
    intake = make_intake(s)
    feed = ProgressFeed(intake.publisher)
    return {
        topology.jobs_queue: JobQueueIntake(intake, feed).handle,
        topology.s3_events_queue: S3EventIntake(
            intake, feed, s.s3_bucket, s.s3_incoming_prefix, s.s3_output_prefix
        ).handle,
    }


def _by_body(handler: Handler) -> Callable[[Delivery], Settlement]:
    return lambda delivery: handler(delivery.body, delivery.redelivered)


FOLLOWER_STOP_SECONDS = 5.0
"""Longest wait for the progress follower to finish its round at shutdown, seconds."""


def main() -> None:
    s = settings()
    configure_logging("upload-queue-intake", s.log_level)
    consumer = make_queue_intake(s)
    follower = make_progress_follower(s)

    def stop(*_) -> None:
        consumer.stop()
        follower.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    crashed = threading.Event()
    following = threading.Thread(
        target=_follow, args=(follower, consumer, crashed), name="progress-follower", daemon=True
    )
    following.start()
    try:
        consumer.run()
    finally:
        follower.stop()
        following.join(FOLLOWER_STOP_SECONDS)
    if crashed.is_set():
        raise SystemExit(1)


def _follow(follower: ProgressFollower, consumer: Consumer, crashed: threading.Event) -> None:
    """Run the follower; if it fails for a reason it does not wait out (a bug), stop the whole
    intake, so the process exits and is restarted rather than silently publishing no progress."""
    try:
        follower.run()
    except Exception:
        log.exception("the progress follower failed; stopping the queue intake")
        crashed.set()
        consumer.stop()


if __name__ == "__main__":
    main()

"""The job-event consumer: applies ``JobEvent`` messages from the events exchange to the store.

Run: ``python -m services.metadata.consumer``. Acks after the transition is stored; a store that
is down gets the event requeued; a malformed event or one for an unknown job is dropped (logged).
With ``METRICS_PORT`` set it serves ``/metrics``, with the depth of the conversion and dead-letter queues.
"""

from __future__ import annotations

import logging
import signal
import time

from services.metadata.app import make_store
from services.metadata.metrics import queue_depth_collector
from services.metadata.store import JobStore
from shared.broker import ReconnectingConsumer, Topology
from shared.config import settings
from shared.errors import JobNotFound, MessageError, Unavailable
from shared.logs import configure_logging, job_context
from shared.messages import JobEvent
from shared.metrics import start_metrics_server

log = logging.getLogger(__name__)

RETRY_DELAY_SECONDS = 1.0
"""Pause before requeueing an event the store could not take, seconds."""


def handle_event(store: JobStore, body: bytes) -> bool:
    """Apply one event body; return True to ack, False to requeue (store unavailable)."""
    try:
        event = JobEvent.decode(body)
    except MessageError as exc:
        log.error("dropping malformed job event: %s", exc)
        return True
    with job_context(event.job_id):
        try:
            job = store.apply(event)
        except JobNotFound:
            log.warning("dropping %s event for unknown job", event.status)
            return True
        except Unavailable as exc:
            log.warning("job store unavailable (%s); requeueing event", exc)
            return False
        if job is not None and not event.progress:  # progress reports (twice a second) are not worth a line
            log.info("job %s (attempt %d)", job.status, job.attempts)
        return True


def main() -> None:
    s = settings()
    configure_logging("metadata-consumer", s.log_level)
    store = make_store(s)
    topology = Topology.from_settings(s)
    start_metrics_server(s.metrics_port, queue_depth_collector(s, topology), host=s.metrics_host)

    def on_message(channel, method, properties, body):
        if handle_event(store, body):
            channel.basic_ack(method.delivery_tag)
        else:
            time.sleep(RETRY_DELAY_SECONDS)
            channel.basic_nack(method.delivery_tag, requeue=True)

    def setup(channel):
        channel.basic_qos(prefetch_count=16)
        channel.basic_consume(topology.metadata_queue, on_message)

    consumer = ReconnectingConsumer(s, topology, setup, "metadata-consumer")
    signal.signal(signal.SIGTERM, lambda *_: consumer.stop())
    signal.signal(signal.SIGINT, lambda *_: consumer.stop())
    consumer.run()


if __name__ == "__main__":
    main()

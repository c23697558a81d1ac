"""The job-event consumer: applies ``JobEvent`` messages from the events exchange to the store.

Run: ``python -m services.metadata.consumer``. Acks after the transition is stored; a store that
is down gets the event retried a second later; a malformed event or one for an unknown job is
dropped (logged).
With ``METRICS_PORT`` set it serves ``/metrics``, with the depth of the conversion and dead-letter queues.
"""

from __future__ import annotations

import logging
import signal

from services.metadata.bootstrap import metadata_parts
from services.metadata.metrics import queue_depth_collector
from services.metadata.store import JobStore
from shared.broker import ACK, Consumer, Delivery, Settlement, Topology
from shared.config import settings
from shared.errors import JobNotFound, MessageError
from shared.logs import configure_logging, job_context
from shared.messages import JobEvent
from shared.metrics import start_metrics_server

log = logging.getLogger(__name__)

PREFETCH = 16
"""Events in flight to this consumer; they are applied one at a time, in order of arrival."""


def handle_event(store: JobStore, delivery: Delivery) -> Settlement:
    """Apply one event. A store that is down raises ``Unavailable``: the consumer requeues the
    event a second later."""
    try:
        event = JobEvent.decode(delivery.body)
    except MessageError as exc:
        log.error("dropping malformed job event: %s", exc)
        return ACK
    with job_context(event.job_id):
        try:
            job = store.apply(event)
        except JobNotFound:
            log.warning("dropping %s event for unknown job", event.status)
            return ACK
        if job is not None and not event.progress:  # progress reports (twice a second) are not worth a line
            log.info("job %s (attempt %d)", job.status, job.attempts)
        return ACK


def main() -> None:
    s = settings()
    configure_logging("metadata-consumer", s.log_level)
    store = metadata_parts(s).store
    topology = Topology.from_settings(s)
    start_metrics_server(s.metrics_port, queue_depth_collector(s, topology), host=s.metrics_host)
    consumer = Consumer(s, topology, "metadata-consumer", prefetch=PREFETCH)
    consumer.consume(topology.metadata_queue, lambda delivery: handle_event(store, delivery))
    signal.signal(signal.SIGTERM, lambda *_: consumer.stop())
    signal.signal(signal.SIGINT, lambda *_: consumer.stop())
    consumer.run()


if __name__ == "__main__":
    main()

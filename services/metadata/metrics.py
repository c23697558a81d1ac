"""The metadata service's Prometheus metrics, computed when scraped (see ``shared/metrics.py``).

    siphon_jobs{state}                 jobs in each state   (metadata's /metrics: the job index)
    siphon_queue_messages{queue}       ready tasks          (the event consumer's METRICS_PORT)
    siphon_queue_consumers{queue}      consumers attached   (idem)

``queue`` is ``conversion`` or ``dead_letter``. The queue counts come from a passive declare on a
short-lived connection, cached for a few seconds, so a burst of scrapes costs RabbitMQ one look.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping

from prometheus_client.core import GaugeMetricFamily, Metric

from services.metadata.index import JobIndex
from shared.broker import QueueCounts, Topology, queue_counts
from shared.config import Settings
from shared.errors import Unavailable

log = logging.getLogger(__name__)

QUEUE_COUNTS_CACHE_SECONDS = 5.0
"""How long one look at the queues answers scrapes, seconds."""


class JobsByStateCollector:
    """``siphon_jobs{state}`` from the job index's per-state sets (:meth:`JobIndex.count_by_state`:
    one Redis round trip per scrape, nothing on a write's path)."""

    def __init__(self, index: JobIndex):
        self.index = index

    def collect(self) -> Iterator[Metric]:
        try:
            counts = self.index.count_by_state()
        except Unavailable as exc:
            log.warning("jobs by state not reported: %s", exc)
            return
        jobs = GaugeMetricFamily("siphon_jobs", "Jobs in each state.", labels=["state"])
        for status, count in counts.items():
            jobs.add_metric([status.value], count)
        yield jobs


class QueueDepthCollector:
    """``siphon_queue_messages`` and ``siphon_queue_consumers`` of the queues ``queues`` names
    (``{label: queue name}``), read by ``read_counts`` at most once per ``cache_seconds``."""

    def __init__(
        self,
        queues: Mapping[str, str],
        read_counts: Callable[[list[str]], dict[str, QueueCounts]],
        cache_seconds: float = QUEUE_COUNTS_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.queues = dict(queues)
        self.read_counts = read_counts
        self.cache_seconds = cache_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._counts: dict[str, QueueCounts] = {}
        self._read_at = float("-inf")

    def counts(self) -> dict[str, QueueCounts]:
        """The latest counts by queue name; empty while RabbitMQ cannot be reached."""
        with self._lock:
            if self.clock() - self._read_at >= self.cache_seconds:
                try:
                    self._counts = self.read_counts(list(self.queues.values()))
                except Unavailable as exc:
                    log.warning("queue depth not reported: %s", exc)
                    self._counts = {}
                self._read_at = self.clock()
            return self._counts

    def collect(self) -> Iterator[Metric]:
        counts = self.counts()
        if not counts:
            return
        messages = GaugeMetricFamily("siphon_queue_messages", "Messages ready in a queue.", labels=["queue"])
        consumers = GaugeMetricFamily("siphon_queue_consumers", "Consumers attached to a queue.", labels=["queue"])
        for label, queue in self.queues.items():
            if queue in counts:
                messages.add_metric([label], counts[queue].messages)
                consumers.add_metric([label], counts[queue].consumers)
        yield messages
        yield consumers


def queue_depth_collector(s: Settings, topology: Topology) -> QueueDepthCollector:
    """The collector of the conversion and dead-letter queues' depth on the configured RabbitMQ."""
    queues = {"conversion": topology.conversion_queue, "dead_letter": topology.dead_letter_queue}
    return QueueDepthCollector(queues, lambda names: queue_counts(s, names))

"""RabbitMQ adapter: topology, connections, confirmed publishing and a reconnecting consumer.

Topology (every name starts with ``AMQP_PREFIX`` = ``<p>``, but the two public queues, named by
``TRANSCODING_JOBS_QUEUE`` and ``TRANSCODING_PROGRESS_QUEUE``)::

    upload ──> <p>.tasks (direct) ──"conversion"──> <p>.conversion (quorum queue, prefetch 1)
                                                        │ rejected / over the delivery limit
                                                        v
                                   <p>.dead-letter (fanout) ──> <p>.dead-letter (queue)
    conversion ──> <p>.events (topic) ──"job.*"──> <p>.metadata.events (quorum queue)
    metadata ──> <p>.control (fanout) ──> one exclusive auto-delete queue per conversion worker
                                      └──"job.*"──> <p>.progress-relay (quorum queue)

    and for the upload service's queue intake (:meth:`Topology.declare_intake`):

    producers ──> transcoding_jobs (queue) ──> queue intake ──> <p>.tasks, as above
    MinIO ──> <p>.s3-events (fanout) ──> <p>.s3-events (queue) ──> queue intake
    <p>.progress-relay ──> queue intake ──> <p>.progress (fanout) ──> transcoding_progress (queue)

Quorum queues count deliveries (``x-delivery-count``), which is how a worker knows the attempt
number of a task redelivered after its previous worker died. pika's exceptions stop here and come
out as :class:`~shared.errors.BrokerUnavailable`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

import pika
import pika.exceptions

from shared.config import Settings
from shared.errors import BrokerUnavailable

log = logging.getLogger(__name__)

PERSISTENT = pika.DeliveryMode.Persistent
CONVERSION_ROUTING_KEY = "conversion"
DEAD_LETTER_REASON_HEADER = "x-siphon-reason"
DEAD_LETTER_CODE_HEADER = "x-siphon-code"

DELIVERY_LIMIT = 25
"""The broker's backstop on deliveries of one task. Workers dead-letter after MAX_ATTEMPTS (≤ 10)
themselves; this constant never follows config, because RabbitMQ refuses to redeclare a queue
with different arguments (PRECONDITION_FAILED)."""

CONNECTION_ERRORS = (pika.exceptions.AMQPError, OSError)
"""What a dropped or refused broker connection raises inside pika."""


@dataclass(frozen=True)
class Topology:
    """Exchange and queue names under one prefix, and how to declare them."""

    prefix: str
    jobs_queue: str = "transcoding_jobs"
    progress_queue: str = "transcoding_progress"

    @property
    def tasks_exchange(self) -> str:
        return f"{self.prefix}.tasks"

    @property
    def conversion_queue(self) -> str:
        return f"{self.prefix}.conversion"

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.prefix}.dead-letter"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.prefix}.dead-letter"

    @property
    def events_exchange(self) -> str:
        return f"{self.prefix}.events"

    @property
    def metadata_queue(self) -> str:
        return f"{self.prefix}.metadata.events"

    @property
    def control_exchange(self) -> str:
        """Fanout of :class:`~shared.messages.WorkerCommand` (cancel) to every conversion worker."""
        return f"{self.prefix}.control"

    @property
    def progress_exchange(self) -> str:
        return f"{self.prefix}.progress"

    @property
    def progress_relay_queue(self) -> str:
        return f"{self.prefix}.progress-relay"

    @property
    def s3_events_exchange(self) -> str:
        return f"{self.prefix}.s3-events"

    @property
    def s3_events_queue(self) -> str:
        return f"{self.prefix}.s3-events"

    @classmethod
    def from_settings(cls, s: Settings) -> Topology:
        return cls(
            prefix=s.amqp_prefix, jobs_queue=s.transcoding_jobs_queue, progress_queue=s.transcoding_progress_queue
        )

    @property
    def exchanges(self) -> tuple[str, ...]:
        """Every exchange :meth:`declare` and :meth:`declare_intake` make."""
        return (
            self.tasks_exchange,
            self.dead_letter_exchange,
            self.events_exchange,
            self.control_exchange,
            self.progress_exchange,
            self.s3_events_exchange,
        )

    @property
    def queues(self) -> tuple[str, ...]:
        """Every shared queue :meth:`declare` and :meth:`declare_intake` make (not the relay's or
        the workers' exclusive ones)."""
        return (
            self.dead_letter_queue,
            self.conversion_queue,
            self.metadata_queue,
            self.jobs_queue,
            self.progress_queue,
            self.s3_events_queue,
        )

    def declare(self, channel) -> None:
        """Declare every exchange, queue and binding (idempotent)."""
        channel.exchange_declare(self.tasks_exchange, "direct", durable=True)
        channel.exchange_declare(self.dead_letter_exchange, "fanout", durable=True)
        channel.exchange_declare(self.events_exchange, "topic", durable=True)
        channel.exchange_declare(self.control_exchange, "fanout", durable=True)
        channel.queue_declare(self.dead_letter_queue, durable=True, arguments={"x-queue-type": "quorum"})
        channel.queue_bind(self.dead_letter_queue, self.dead_letter_exchange)
        channel.queue_declare(
            self.conversion_queue,
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-dead-letter-exchange": self.dead_letter_exchange,
                "x-delivery-limit": DELIVERY_LIMIT,
            },
        )
        channel.queue_bind(self.conversion_queue, self.tasks_exchange, CONVERSION_ROUTING_KEY)
        channel.queue_declare(self.metadata_queue, durable=True, arguments={"x-queue-type": "quorum"})
        channel.queue_bind(self.metadata_queue, self.events_exchange, "job.*")

    def declare_intake(self, channel) -> None:
        """Declare what the upload service's queue intake uses, after :meth:`declare` (idempotent)."""
        # Plain durable queues, no arguments: producers and followers declare them too
        # (queue_declare(name, durable=True)), and RabbitMQ refuses a redeclaration whose arguments
        # differ. So the intake dead-letters refused jobs itself instead of through x-dead-letter-*.
        channel.queue_declare(self.jobs_queue, durable=True)
        channel.exchange_declare(self.progress_exchange, "fanout", durable=True)
        channel.queue_declare(self.progress_queue, durable=True)
        channel.queue_bind(self.progress_queue, self.progress_exchange)
        # MinIO declares this exchange before each publish with its MINIO_NOTIFY_AMQP_* settings,
        # which must say the same: fanout, durable, not auto-deleted, not internal.
        channel.exchange_declare(self.s3_events_exchange, "fanout", durable=True)
        # Classic, without a delivery limit: events wait out an outage of storage or metadata
        # however long it lasts (the intake requeues them), and the intake dead-letters the bad ones.
        channel.queue_declare(self.s3_events_queue, durable=True)
        channel.queue_bind(self.s3_events_queue, self.s3_events_exchange)
        channel.queue_declare(self.progress_relay_queue, durable=True, arguments={"x-queue-type": "quorum"})
        channel.queue_bind(self.progress_relay_queue, self.events_exchange, "job.*")


def delivery_attempt(properties: pika.BasicProperties) -> int:
    """1 for a first delivery, n+1 after n earlier deliveries (quorum queues' ``x-delivery-count``)."""
    headers = properties.headers or {}
    return int(headers.get("x-delivery-count", 0)) + 1


def connect(s: Settings, *, heartbeat: int | None = None, timeout: float | None = None) -> pika.BlockingConnection:
    """Open a blocking connection to ``AMQP_URL``; ``timeout`` (seconds) bounds the whole opening
    (default: 5 s to connect the socket, pika's 15 s for the handshake).

    Raises:
        BrokerUnavailable: the broker refused or did not answer.
    """
    params = pika.URLParameters(s.amqp_url)
    params.heartbeat = s.amqp_heartbeat_seconds if heartbeat is None else heartbeat
    params.blocked_connection_timeout = 30
    params.socket_timeout = 5
    params.connection_attempts = 1
    if timeout is not None:
        params.socket_timeout = params.stack_timeout = timeout
    try:
        return pika.BlockingConnection(params)
    except CONNECTION_ERRORS as exc:
        raise BrokerUnavailable(f"RabbitMQ unreachable: {exc!r}") from exc


class QueueCounts(NamedTuple):
    """A queue's ready messages (not counting those delivered and not yet acked) and its consumers."""

    messages: int
    consumers: int


def queue_counts(s: Settings, queues: Iterable[str], timeout: float = 2.0) -> dict[str, QueueCounts]:
    """The counts of each named queue, by a passive declare (nothing is created); a queue that does
    not exist yet is left out. One short-lived connection, opened within ``timeout`` seconds.

    Raises:
        BrokerUnavailable: RabbitMQ cannot be reached.
    """
    connection = connect(s, heartbeat=0, timeout=timeout)
    try:
        counts = {}
        for queue in queues:
            channel = connection.channel()
            try:
                declared = channel.queue_declare(queue, passive=True).method
            except pika.exceptions.ChannelClosedByBroker:  # 404: nobody declared it yet
                continue
            counts[queue] = QueueCounts(declared.message_count, declared.consumer_count)
            channel.close()
        return counts
    except CONNECTION_ERRORS as exc:
        raise BrokerUnavailable(f"RabbitMQ dropped the connection: {exc!r}") from exc
    finally:
        if connection.is_open:
            try:
                connection.close()
            except CONNECTION_ERRORS:
                pass


class ConfirmingPublisher:
    """Publishes persistent messages and returns only once the broker confirmed them.

    pika connections are not thread-safe, so either each thread holds its own connection
    (``per_thread=True``: the upload service's gthread workers publish in parallel), or the
    process holds one and publishes one message at a time under a lock (``per_thread=False``:
    the metadata service's rare cancel broadcasts). Under gunicorn's gevent worker a "thread" is
    the greenlet of one HTTP connection, so per-thread connections there would open an AMQP
    connection for every client connection and leave it to the garbage collector. Either way a
    publish that finds its connection dead (heartbeats drop idle ones) reconnects once.
    """

    def __init__(self, s: Settings, topology: Topology, per_thread: bool = True):
        self.settings = s
        self.topology = topology
        self._local = threading.local() if per_thread else types.SimpleNamespace()
        self._turn = contextlib.nullcontext() if per_thread else threading.Lock()

    def _channel(self):
        channel = getattr(self._local, "channel", None)
        if channel is None or channel.is_closed:
            connection = connect(self.settings)
            channel = connection.channel()
            channel.confirm_delivery()
            self.topology.declare(channel)
            self._local.connection, self._local.channel = connection, channel
        return channel

    def _drop(self) -> None:
        connection = getattr(self._local, "connection", None)
        self._local.connection = self._local.channel = None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except CONNECTION_ERRORS:
                pass

    def publish(
        self, exchange: str, routing_key: str, body: bytes, headers: dict | None = None, mandatory: bool = True
    ) -> None:
        """Publish ``body`` (JSON) persistently, with ``mandatory`` set unless told otherwise (a
        broadcast nobody hears is no error); block until confirmed.

        Raises:
            BrokerUnavailable: no connection, the message was unroutable, or not confirmed.
        """
        props = pika.BasicProperties(content_type="application/json", delivery_mode=PERSISTENT, headers=headers)
        with self._turn:
            for attempt in (1, 2):
                try:
                    self._channel().basic_publish(exchange, routing_key, body, props, mandatory=mandatory)
                    return
                except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as exc:
                    raise BrokerUnavailable(f"RabbitMQ did not accept the message: {exc!r}") from exc
                except CONNECTION_ERRORS as exc:
                    self._drop()
                    if attempt == 2:
                        raise BrokerUnavailable(f"RabbitMQ publish failed: {exc!r}") from exc

    def close(self) -> None:
        """Close this thread's connection (``per_thread``) or the process's, if any."""
        with self._turn:
            self._drop()


class ReconnectingConsumer:
    """Runs ``setup(channel)`` on a fresh connection and consumes until :meth:`stop`.

    When the connection drops (broker restart, network), it reconnects with exponential backoff
    from ``min_backoff`` to ``max_backoff`` seconds, without a process restart.
    """

    def __init__(
        self,
        s: Settings,
        topology: Topology,
        setup: Callable,
        name: str,
        min_backoff: float = 0.5,
        max_backoff: float = 15.0,
    ):
        self.settings = s
        self.topology = topology
        self.setup = setup
        self.name = name
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.connection: pika.BlockingConnection | None = None
        self._stopping = threading.Event()

    def run(
        self,
        on_disconnect: Callable[[], None] = lambda: None,
        on_stopping: Callable[[object], None] = lambda channel: None,
        linger: Callable[[], bool] = lambda: False,
    ) -> None:
        """Consume until :meth:`stop` is called.

        Args:
            on_disconnect: runs after each lost connection, before the reconnect.
            on_stopping: runs once in the I/O thread when a stop is noticed (e.g. cancel consuming).
            linger: after a stop, I/O goes on while this returns True (e.g. to ack in-flight work).
        """
        backoff = self.min_backoff
        while not self._stopping.is_set():
            try:
                self.connection = connect(self.settings)
                channel = self.connection.channel()
                self.topology.declare(channel)
                self.setup(channel)
                log.info("%s consuming", self.name)
                backoff = self.min_backoff
                while not self._stopping.is_set():
                    self.connection.process_data_events(time_limit=0.5)
                on_stopping(channel)
                while linger():
                    self.connection.process_data_events(time_limit=0.2)
            except (BrokerUnavailable, *CONNECTION_ERRORS) as exc:
                log.warning("%s lost RabbitMQ (%r); reconnecting in %.1f s", self.name, exc, backoff)
                on_disconnect()
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)
            finally:
                self._close()

    def _close(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except CONNECTION_ERRORS:
                pass

    def stop(self) -> None:
        """Ask :meth:`run` to return after the current event loop turn (≤ 0.5 s)."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

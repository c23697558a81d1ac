"""RabbitMQ adapter, the only module that speaks AMQP: topology, connections, the named publishers
(one per message kind, confirmed) and a reconnecting consumer whose handlers return a
:class:`Settlement` (ack, requeue after a delay, or dead-letter with a reason).

Topology (every name starts with ``AMQP_PREFIX`` = ``<p>``, but the two public queues, named by
``TRANSCODING_JOBS_QUEUE`` and ``TRANSCODING_PROGRESS_QUEUE``)::

    upload ──> <p>.tasks (direct) ──"conversion"──> <p>.conversion (quorum queue, prefetch 1)
                                                        │ rejected / over the delivery limit
                                                        v
                                   <p>.dead-letter (fanout) ──> <p>.dead-letter (queue)
    conversion ──> <p>.events (topic) ──"job.*"──> <p>.metadata.events (quorum queue) ──> metadata
    metadata ──> <p>.control (fanout) ──> one exclusive auto-delete queue per conversion worker

    and for the upload service's queue intake (:meth:`Topology.declare_intake`):

    producers ──> transcoding_jobs (queue) ──> queue intake ──> <p>.tasks, as above
    MinIO ──> <p>.s3-events (fanout) ──> <p>.s3-events (queue) ──> queue intake
    queue intake ──> <p>.progress (fanout) ──> transcoding_progress (queue)

The job events have one consumer, metadata. Every other reader of job changes follows metadata's
change feed in Redis (``shared/changes.py``): the gateway's ``/events``, and the queue intake, which
turns the feed into the ``<p>.progress`` messages (``services/upload/progress.py``).

Quorum queues count deliveries (``x-delivery-count``), which is how a worker knows the attempt
number of a task redelivered after its previous worker died. pika's exceptions stop here and come
out as :class:`~shared.errors.BrokerUnavailable`.

``AMQP_URL`` may name a cluster's nodes: every connection (:func:`connect`) tries them in a random
order, and a consumer or publisher that loses its connection opens the next one the same way, on
whichever node serves. The quorum queues are replicated on the nodes in the cluster when first
declared.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple

import pika
import pika.exceptions

from shared.config import Settings
from shared.errors import BrokerUnavailable, Unavailable
from shared.messages import ConversionTask, JobEvent, WorkerCommand

log = logging.getLogger(__name__)

PERSISTENT = pika.DeliveryMode.Persistent
CONVERSION_ROUTING_KEY = "conversion"
DEAD_LETTER_REASON_HEADER = "x-siphon-reason"
DEAD_LETTER_CODE_HEADER = "x-siphon-code"
SOURCE_QUEUE_HEADER = "x-siphon-queue"
"""Dead-letter header naming the queue the message came from."""

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
    def retired_queues(self) -> tuple[str, ...]:
        """Queues earlier versions declared and nothing consumes any more; :meth:`declare_intake`
        deletes them so an upgraded deployment keeps no queue filling up unread. ``<p>.progress-relay``
        fed the queue intake's old progress relay (job events, ``job.*``), replaced by the change feed."""
        return (f"{self.prefix}.progress-relay",)

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
        """Every shared queue :meth:`declare` and :meth:`declare_intake` make (not the workers'
        exclusive ones)."""
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
        for queue in self.retired_queues:  # RabbitMQ answers delete-ok for a queue that is not there
            channel.queue_delete(queue)


def delivery_attempt(properties: pika.BasicProperties) -> int:
    """1 for a first delivery, n+1 after n earlier deliveries (quorum queues' ``x-delivery-count``)."""
    headers = properties.headers or {}
    return int(headers.get("x-delivery-count", 0)) + 1


def connection_parameters(
    s: Settings, *, heartbeat: int | None = None, timeout: float | None = None
) -> list[pika.URLParameters]:
    """One ``pika.URLParameters`` per URL of ``AMQP_URL``, in a random order, so that the clients
    of a cluster spread over its nodes and none waits on the same dead node first every time.

    Each tries once: the next node is the retry (pika's multiple-host connection parameters, its
    docs' "Connection Parameters"; the RabbitMQ docs' "Clustering and Client Connections").
    """
    every = []
    for url in random.sample(s.amqp_urls, len(s.amqp_urls)):
        params = pika.URLParameters(url)
        params.heartbeat = s.amqp_heartbeat_seconds if heartbeat is None else heartbeat
        params.blocked_connection_timeout = 30
        params.socket_timeout = 5
        params.connection_attempts = 1
        if timeout is not None:
            params.socket_timeout = params.stack_timeout = timeout
        every.append(params)
    return every


def connect(s: Settings, *, heartbeat: int | None = None, timeout: float | None = None) -> pika.BlockingConnection:
    """Open a blocking connection to the first node of ``AMQP_URL`` that answers, trying them in a
    random order; ``timeout`` (seconds) bounds the opening on each node (default: 5 s to connect
    the socket, pika's 15 s for the handshake).

    Raises:
        BrokerUnavailable: every node refused or did not answer.
    """
    try:
        return pika.BlockingConnection(connection_parameters(s, heartbeat=heartbeat, timeout=timeout))
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


class Publishes:
    """The named publishers, one per message kind; a subclass supplies :meth:`publish`, the one way a
    message leaves siphon (persistent JSON; every ``BasicProperties`` is made in :func:`properties`).
    """

    topology: Topology

    def publish(
        self, exchange: str, routing_key: str, body: bytes, headers: dict | None = None, mandatory: bool = True
    ) -> None:
        raise NotImplementedError

    def publish_conversion_task(self, task: ConversionTask) -> None:
        """A task for the conversion workers (``<p>.tasks`` → ``<p>.conversion``)."""
        self.publish(self.topology.tasks_exchange, CONVERSION_ROUTING_KEY, task.encode())

    def publish_job_event(self, event: JobEvent) -> None:
        """A job's change (``<p>.events``, routing key ``job.<status>``) for metadata."""
        self.publish(self.topology.events_exchange, event.routing_key, event.encode())

    def publish_worker_command(self, command: WorkerCommand) -> None:
        """A command to every conversion worker (``<p>.control`` fanout); none listening is no error."""
        self.publish(self.topology.control_exchange, "", command.encode(), mandatory=False)

    def publish_progress(self, message: dict) -> None:
        """A message of the public progress feed (``<p>.progress`` → ``TRANSCODING_PROGRESS_QUEUE``)."""
        self.publish(self.topology.progress_exchange, "", json.dumps(message).encode())

    def publish_dead_letter(self, body: bytes, code: str, reason: str, source_queue: str | None = None) -> None:
        """Park a refused message in ``<p>.dead-letter`` with its ``code``, ``reason`` (≤ 1000
        characters) and, when given, the queue it came from, as headers."""
        headers = {DEAD_LETTER_CODE_HEADER: code, DEAD_LETTER_REASON_HEADER: reason[:1000]}
        if source_queue is not None:
            headers[SOURCE_QUEUE_HEADER] = source_queue
        self.publish(self.topology.dead_letter_exchange, "", body, headers)


def properties(headers: dict | None = None) -> pika.BasicProperties:
    """The properties of every message siphon publishes: persistent JSON, with ``headers``."""
    return pika.BasicProperties(content_type="application/json", delivery_mode=PERSISTENT, headers=headers)


class _Link(NamedTuple):
    """One AMQP connection of a publisher and its confirming channel."""

    connection: pika.BlockingConnection
    channel: object


class ConfirmingPublisher(Publishes):
    """Publishes persistent messages and returns only once the broker confirmed them.

    pika connections are not thread-safe, so a connection serves one publish at a time. With
    ``pooled=True`` (the upload service's gthread workers publish in parallel) each publish borrows
    an idle connection from the publisher's pool and gives it back, opening one only when every
    pooled one is busy: a process keeps as many as it has publishes at once, not one per thread
    (a thread-per-connection upload service opened, and declared the topology on, a connection in
    each of its threads' first upload, ~7 ms of its CPU and more of RabbitMQ's per job in issue
    #16's CPU profile). With ``pooled=False`` (the metadata service's rare cancel broadcasts, the
    progress follower) publishes take turns under a lock, so the process holds one connection.
    Under gunicorn's gevent worker a "thread" is the greenlet of one HTTP connection; the pool
    serves those alike. A publish that finds its connection dead (heartbeats drop idle ones)
    closes the idle ones too, as likely as dead, and tries once more on a new connection. With
    ``intake=True`` each connection also declares the queue intake's topology
    (:meth:`Topology.declare_intake`), which alone makes ``<p>.progress``: for the progress follower.
    """

    def __init__(self, s: Settings, topology: Topology, pooled: bool = True, intake: bool = False):
        self.settings = s
        self.topology = topology
        self.intake = intake
        self.opened = 0
        """Connections opened so far (a pool that works opens few)."""
        self._idle: list[_Link] = []  # last in, first out: the most recently used is the least likely dropped
        self._pool_lock = threading.Lock()
        self._turn = contextlib.nullcontext() if pooled else threading.Lock()

    def _open(self) -> _Link:
        connection = connect(self.settings)
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            self.topology.declare(channel)
            if self.intake:
                self.topology.declare_intake(channel)
        except CONNECTION_ERRORS:
            _close_quietly(connection)
            raise
        with self._pool_lock:
            self.opened += 1
        return _Link(connection, channel)

    def _borrow(self, fresh: bool) -> _Link:
        """An idle pooled link that is still open, or (none, or ``fresh``) a new one."""
        with self._pool_lock:
            while self._idle and not fresh:
                link = self._idle.pop()
                if link.channel.is_open:
                    return link
                _close_quietly(link.connection)
        return self._open()

    def _give_back(self, link: _Link) -> None:
        with self._pool_lock:
            self._idle.append(link)

    def _drop_idle(self) -> None:
        with self._pool_lock:
            idle, self._idle = self._idle, []
        for link in idle:
            _close_quietly(link.connection)

    def publish(
        self, exchange: str, routing_key: str, body: bytes, headers: dict | None = None, mandatory: bool = True
    ) -> None:
        """Publish ``body`` (JSON) persistently, with ``mandatory`` set unless told otherwise (a
        broadcast nobody hears is no error); block until confirmed.

        Raises:
            BrokerUnavailable: no connection, the message was unroutable, or not confirmed.
        """
        with self._turn:
            for attempt in (1, 2):
                link = None
                try:
                    link = self._borrow(fresh=attempt == 2)
                    link.channel.basic_publish(exchange, routing_key, body, properties(headers), mandatory=mandatory)
                except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as exc:
                    self._give_back(link)
                    raise BrokerUnavailable(f"RabbitMQ did not accept the message: {exc!r}") from exc
                except CONNECTION_ERRORS as exc:
                    if link is not None:
                        _close_quietly(link.connection)
                    self._drop_idle()
                    if attempt == 2:
                        raise BrokerUnavailable(f"RabbitMQ publish failed: {exc!r}") from exc
                    continue
                self._give_back(link)
                return

    def close(self) -> None:
        """Close the pooled connections (those not in the middle of a publish)."""
        self._drop_idle()


# --- consuming ----------------------------------------------------------------------------------
class Settle(Enum):
    """What becomes of a delivered message."""

    ACK = "ack"  # done: handled, or nothing to do
    REQUEUE = "requeue"  # back to its queue (after a delay): a dependency is down, or the work was cut short
    DEAD_LETTER = "dead_letter"  # refused for good: parked in <p>.dead-letter with the reason, then acked


@dataclass(frozen=True)
class Settlement:
    """How a handler settles its delivery: ``settle``, and for a dead letter its ``code`` and
    ``reason`` (sent as headers; an ack may note them too, for the record), for a requeue its
    ``delay_seconds``."""

    settle: Settle
    code: str = ""
    reason: str = ""
    delay_seconds: float = 0.0


ACK = Settlement(Settle.ACK)

REQUEUE_DELAY_SECONDS = 1.0
"""Default pause before a message whose handler found a dependency down goes back to its queue, seconds."""


def requeue_later(delay_seconds: float = REQUEUE_DELAY_SECONDS, reason: str = "") -> Settlement:
    """Give the message back to its queue after ``delay_seconds`` (a quorum queue counts the delivery)."""
    return Settlement(Settle.REQUEUE, reason=reason, delay_seconds=delay_seconds)


def dead_letter(code: str, reason: str) -> Settlement:
    """Park the message in ``<p>.dead-letter`` with ``code`` and ``reason``, then ack it."""
    return Settlement(Settle.DEAD_LETTER, code, reason)


def _always_held() -> bool:
    return True


@dataclass(frozen=True)
class Delivery:
    """A message as a handler sees it: where it came from, its body, and which delivery this is
    (``attempt``: 1 for the first, from the quorum queue's ``x-delivery-count``; ``redelivered``:
    the broker's flag for a message delivered before and not acked).

    ``held()`` says whether the delivery is still this consumer's: false once the connection it
    came on closed (a heartbeat timeout after a partition, say), when the broker has given the
    message, or will give it, to another consumer as the next attempt (AMQP 0-9-1: unacked
    deliveries are requeued when their channel closes). A handler that learns so drops its result.
    """

    queue: str
    body: bytes
    attempt: int = 1
    redelivered: bool = False
    held: Callable[[], bool] = field(default=_always_held, compare=False, repr=False)


Handler = Callable[[Delivery], Settlement]
"""Handles one delivery and says how to settle it."""


class ChannelPublisher(Publishes):
    """Publishes on a consumer's channel, from its I/O thread (the channel is in confirm mode)."""

    def __init__(self, channel, topology: Topology):
        self.channel = channel
        self.topology = topology

    def publish(
        self, exchange: str, routing_key: str, body: bytes, headers: dict | None = None, mandatory: bool = True
    ) -> None:
        self.channel.basic_publish(exchange, routing_key, body, properties(headers), mandatory=mandatory)


class ThreadPublisher(Publishes):
    """Publishes on a consumer's channel from another thread, through the connection's I/O thread
    (pika's ``add_callback_threadsafe``, its documented way; see its ``basic_consumer_threaded.py``).

    With ``wait`` (the default) a publish returns once the I/O thread ran it (the channel is in
    confirm mode, so: once the broker confirmed it); without, it is queued and may be lost with the
    connection (a progress report).
    """

    def __init__(self, connection, channel, topology: Topology, wait: bool = True):
        self.connection = connection
        self.on_channel = ChannelPublisher(channel, topology)
        self.topology = topology
        self.wait = wait

    def publish(
        self, exchange: str, routing_key: str, body: bytes, headers: dict | None = None, mandatory: bool = True
    ) -> None:
        """Publish through the I/O thread.

        Raises:
            BrokerUnavailable: (``wait`` only) the connection closed before the publish ran, the
                broker refused it, or the I/O thread did not run it within
                :data:`IO_CALL_TIMEOUT_SECONDS`.
        """

        def send() -> None:
            self.on_channel.publish(exchange, routing_key, body, headers, mandatory)

        if self.wait:
            run_on_io_thread(self.connection, send)
        else:
            post_to_io_thread(self.connection, send)


IO_CALL_TIMEOUT_SECONDS = 30
"""Longest wait for a consumer's I/O thread to run a publish or a settlement, seconds."""


def run_on_io_thread(connection, fn: Callable[[], object]) -> object:
    """Run ``fn`` on ``connection``'s I/O thread; return its result or raise its exception.

    Raises:
        BrokerUnavailable: the connection closed before ``fn`` ran, it did not run in time, or it
            raised one of pika's errors.
    """
    done, box = threading.Event(), {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed back to the calling thread
            box["error"] = exc
        finally:
            done.set()

    try:
        connection.add_callback_threadsafe(run)
    except CONNECTION_ERRORS as exc:
        raise BrokerUnavailable(f"connection closed: {exc!r}") from exc
    deadline = time.monotonic() + IO_CALL_TIMEOUT_SECONDS
    while not done.wait(0.2):
        if not connection.is_open or time.monotonic() > deadline:
            raise BrokerUnavailable("connection closed before the I/O thread ran the call")
    error = box.get("error")
    if isinstance(error, (pika.exceptions.UnroutableError, pika.exceptions.NackError, *CONNECTION_ERRORS)):
        raise BrokerUnavailable(f"RabbitMQ: {error!r}") from error
    if error is not None:
        raise error
    return box.get("value")


def post_to_io_thread(connection, fn: Callable[[], object]) -> None:
    """Run ``fn`` on ``connection``'s I/O thread without waiting; a failure is logged, not raised."""

    def run() -> None:
        try:
            fn()
        except CONNECTION_ERRORS as exc:
            log.info("a fire-and-forget call failed: %r", exc)

    try:
        connection.add_callback_threadsafe(run)
    except CONNECTION_ERRORS as exc:
        log.info("connection closed; call dropped: %r", exc)


@dataclass
class _Consumption:
    queue: str
    handler: Handler
    on_crash: Settlement
    threaded: bool
    tag: str | None = None


class Consumer:
    """Consumes queues on one connection until :meth:`stop`, settling each delivery as its handler says.

    * :meth:`consume` registers a queue's handler. A plain handler runs on the I/O thread; a
      ``threaded`` one (the conversion worker's, minutes long) on a thread of its own while the I/O
      thread keeps heartbeats flowing, one delivery at a time (prefetch 1), its settlement handed
      back to the I/O thread. A handler that raises ``Unavailable`` gets its message requeued after
      :data:`REQUEUE_DELAY_SECONDS`; one that raises anything else, ``on_crash`` (logged).
    * :meth:`subscribe` listens to a fanout exchange through an exclusive queue of its own (auto-ack).
    * A lost connection is reopened with exponential backoff from ``min_backoff`` to ``max_backoff``
      seconds, without a process restart; unacked messages go back to their queues meanwhile.
    * :meth:`stop` stops taking messages; a threaded handler at work gets ``grace_seconds`` to finish.
    """

    def __init__(
        self,
        s: Settings,
        topology: Topology,
        name: str,
        prefetch: int = 1,
        intake_queues: bool = False,
        min_backoff: float = 0.5,
        max_backoff: float = 15.0,
    ):
        self.settings = s
        self.topology = topology
        self.name = name
        self.prefetch = prefetch
        self.intake_queues = intake_queues
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.connection: pika.BlockingConnection | None = None
        self._consumptions: list[_Consumption] = []
        self._subscriptions: list[tuple[str, Callable[[bytes], None]]] = []
        self._stopping = threading.Event()
        self._stop_deadline = float("inf")
        self._work: threading.Thread | None = None

    # --- what to consume ------------------------------------------------------------------------
    def consume(
        self, queue: str, handler: Handler, *, on_crash: Settlement | None = None, threaded: bool = False
    ) -> None:
        """Settle each message of ``queue`` as ``handler`` says (see the class docstring)."""
        if threaded and self.prefetch != 1:
            raise ValueError("a threaded handler takes one delivery at a time: prefetch must be 1")
        crash = on_crash if on_crash is not None else requeue_later(0)
        self._consumptions.append(_Consumption(queue, handler, crash, threaded))

    def subscribe(self, exchange: str, on_body: Callable[[bytes], None]) -> None:
        """Call ``on_body`` (on the I/O thread) with every message published to the fanout ``exchange``
        while connected; a message published while disconnected is not seen."""
        self._subscriptions.append((exchange, on_body))

    def thread_publisher(self, wait: bool = True) -> ThreadPublisher:
        """Named publishers on this consumer's current connection, for a threaded handler."""
        return ThreadPublisher(self.connection, self._channel, self.topology, wait)

    # --- running --------------------------------------------------------------------------------
    def run(self) -> None:
        """Consume until :meth:`stop`, reconnecting as needed; returns once stopped (a threaded
        handler may still be at work if its grace ran out: see :attr:`busy`)."""
        backoff = self.min_backoff
        while not self._stopping.is_set():
            try:
                self._open()
                log.info("%s consuming", self.name)
                backoff = self.min_backoff
                while not self._stopping.is_set():
                    self._raise_if_closed()
                    self.connection.process_data_events(time_limit=0.5)
                self._cancel_consumers()
                while self.busy and time.monotonic() < self._stop_deadline:
                    self._raise_if_closed()
                    self.connection.process_data_events(time_limit=0.2)
            except (BrokerUnavailable, *CONNECTION_ERRORS) as exc:
                log.warning("%s lost RabbitMQ (%r); reconnecting in %.1f s", self.name, exc, backoff)
                self.wait_for_work()  # its settlement is moot: the broker gives the message out again
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)
            finally:
                self._close()

    def _raise_if_closed(self) -> None:
        """Raise if the connection closed inside a callback that swallowed pika's error (a
        fire-and-forget publish when a heartbeat timeout hit): pika's next ``process_data_events``
        would fail with ``ValueError("Timeout closed before call")`` instead, killing the process.

        Raises:
            BrokerUnavailable: the connection is closed.
        """
        if not self.connection.is_open:
            raise BrokerUnavailable("the RabbitMQ connection closed")

    def stop(self, grace_seconds: float = 0.0) -> None:
        """Stop taking messages; give a threaded handler at work ``grace_seconds`` more (signal-safe)."""
        self._stop_deadline = time.monotonic() + grace_seconds
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    @property
    def busy(self) -> bool:
        """Whether a threaded handler is at work."""
        return self._work is not None and self._work.is_alive()

    def wait_for_work(self) -> None:
        """Block until the threaded handler at work, if any, returned."""
        if self._work is not None:
            self._work.join()

    def _open(self) -> None:
        self.connection = connect(self.settings)
        channel = self._channel = self.connection.channel()
        self.topology.declare(channel)
        if self.intake_queues:
            self.topology.declare_intake(channel)
        channel.basic_qos(prefetch_count=self.prefetch)
        channel.confirm_delivery()  # dead letters and events are confirmed before the message is acked
        for consumption in self._consumptions:
            callback = functools.partial(self._on_message, consumption)
            consumption.tag = channel.basic_consume(consumption.queue, callback)
        for exchange, on_body in self._subscriptions:
            queue = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
            channel.queue_bind(queue, exchange)
            channel.basic_consume(queue, lambda _ch, _m, _p, body, on_body=on_body: on_body(body), auto_ack=True)

    def _cancel_consumers(self) -> None:
        channel = self._channel
        for consumption in self._consumptions:
            if consumption.tag is not None and channel.is_open:
                channel.basic_cancel(consumption.tag)

    def _close(self) -> None:
        connection, self.connection = self.connection, None
        _close_quietly(connection)

    # --- one delivery -----------------------------------------------------------------------------
    def _on_message(self, consumption: _Consumption, channel, method, props, body: bytes) -> None:
        connection = self.connection
        delivery = Delivery(
            consumption.queue,
            body,
            delivery_attempt(props),
            bool(method.redelivered),
            held=lambda: connection.is_open and channel.is_open,
        )
        if not consumption.threaded:
            settlement = self._handled(consumption, delivery)
            if settlement.settle is Settle.REQUEUE and settlement.delay_seconds:
                time.sleep(settlement.delay_seconds)  # the I/O thread: a pause of a second at most
            self._settle(channel, method.delivery_tag, delivery, settlement)
            return
        args = (consumption, connection, channel, method.delivery_tag, delivery)
        self._work = threading.Thread(target=self._work_on, args=args, name=self.name, daemon=True)
        self._work.start()

    def _work_on(self, consumption: _Consumption, connection, channel, tag: int, delivery: Delivery) -> None:
        settlement = self._handled(consumption, delivery)
        if settlement.settle is Settle.REQUEUE and settlement.delay_seconds:
            time.sleep(settlement.delay_seconds)
        try:
            run_on_io_thread(connection, lambda: self._settle(channel, tag, delivery, settlement))
        except BrokerUnavailable as exc:
            log.warning("could not settle a message (%s); the broker gives it out again", exc)

    def _handled(self, consumption: _Consumption, delivery: Delivery) -> Settlement:
        """The handler's settlement. A lost connection (``BrokerUnavailable``) is requeued like any
        dependency that is down; if the connection is gone, the broker gives the message out again anyway."""
        try:
            return consumption.handler(delivery)
        except Unavailable as exc:
            log.warning("%s (%s); requeueing the message", exc.code, exc.message)
            return requeue_later(0 if consumption.threaded else REQUEUE_DELAY_SECONDS)
        except Exception:  # a bug: keep the message as on_crash says, never silently
            log.exception("%s failed on a message from %s", self.name, consumption.queue)
            return consumption.on_crash

    def _settle(self, channel, tag: int, delivery: Delivery, settlement: Settlement) -> None:
        if settlement.settle is Settle.REQUEUE:
            channel.basic_nack(tag, requeue=True)
            return
        if settlement.settle is Settle.DEAD_LETTER:
            ChannelPublisher(channel, self.topology).publish_dead_letter(
                delivery.body, settlement.code, settlement.reason, delivery.queue
            )
        channel.basic_ack(tag)


def _close_quietly(connection) -> None:
    if connection is not None and connection.is_open:
        try:
            connection.close()
        except CONNECTION_ERRORS:
            pass

"""The conversion worker: a pika consumer that runs each task on a work thread.

pika's ``BlockingConnection`` is not thread-safe and only sends heartbeats while its I/O loop
runs, so the main thread keeps that loop turning while ffmpeg works on a second thread; the work
thread hands every publish and the final ack back with ``add_callback_threadsafe`` (pika's
documented way; see its ``basic_consumer_threaded.py`` example). Prefetch is 1: one task at a time.

On SIGTERM the worker stops taking tasks, gives the current one ``SHUTDOWN_GRACE_SECONDS`` to
finish, then kills ffmpeg and closes the connection, which returns the task to the queue.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import pika

from services.conversion.converter import Converter
from services.conversion.tasks import Disposition, Outcome, TaskRunner
from shared.broker import (
    CONNECTION_ERRORS,
    DEAD_LETTER_CODE_HEADER,
    DEAD_LETTER_REASON_HEADER,
    PERSISTENT,
    ReconnectingConsumer,
    Topology,
    delivery_attempt,
)
from shared.config import Settings
from shared.errors import BrokerUnavailable
from shared.messages import JobEvent
from shared.storage import Storage

log = logging.getLogger(__name__)

IO_CALL_TIMEOUT_SECONDS = 30
"""Longest wait for the I/O thread to run a publish or an ack, seconds."""


class IoThreadCall:
    """Runs callables on the connection's I/O thread and waits for their result."""

    def __init__(self, connection: pika.BlockingConnection):
        self.connection = connection

    def __call__(self, fn: Callable[[], object]) -> object:
        """Run ``fn`` in the I/O thread; return its result or raise its exception.

        Raises:
            BrokerUnavailable: the connection closed before ``fn`` ran, or it did not run in time.
        """
        done, box = threading.Event(), {}

        def run() -> None:
            try:
                box["value"] = fn()
            except BaseException as exc:  # handed back to the calling thread as is
                box["error"] = exc
            finally:
                done.set()

        try:
            self.connection.add_callback_threadsafe(run)
        except CONNECTION_ERRORS as exc:
            raise BrokerUnavailable(f"connection closed: {exc!r}") from exc
        deadline = time.monotonic() + IO_CALL_TIMEOUT_SECONDS
        while not done.wait(0.2):
            if not self.connection.is_open or time.monotonic() > deadline:
                raise BrokerUnavailable("connection closed before the I/O thread ran the call")
        if "error" in box:
            raise box["error"]
        return box.get("value")


class ConversionWorker:
    """Consumes the conversion queue, one task at a time."""

    def __init__(self, s: Settings, storage: Storage, converter: Converter | None = None):
        self.settings = s
        self.storage = storage
        self.converter = converter or Converter(s)
        self.topology = Topology.from_settings(s)
        self.consumer = ReconnectingConsumer(s, self.topology, self._setup, "conversion-worker")
        self._work: threading.Thread | None = None
        self._consumer_tag: str | None = None
        self._stop_deadline = float("inf")

    def run(self) -> None:
        """Consume until :meth:`stop`; then finish or requeue the task in hand and return."""
        self.consumer.run(on_disconnect=self._wait_for_work, on_stopping=self._cancel, linger=self._lingering)
        if self.busy:
            log.warning("grace period over; aborting the conversion in progress (its task is requeued)")
            self.converter.abort()
            self._wait_for_work()

    def stop(self) -> None:
        """Stop taking tasks (signal-safe: only sets flags)."""
        self._stop_deadline = time.monotonic() + self.settings.shutdown_grace_seconds
        self.consumer.stop()

    @property
    def busy(self) -> bool:
        return self._work is not None and self._work.is_alive()

    def _setup(self, channel) -> None:
        channel.basic_qos(prefetch_count=1)
        channel.confirm_delivery()
        self._consumer_tag = channel.basic_consume(self.topology.conversion_queue, self._on_message)

    def _cancel(self, channel) -> None:
        if self._consumer_tag is not None and channel.is_open:
            channel.basic_cancel(self._consumer_tag)

    def _lingering(self) -> bool:
        return self.busy and time.monotonic() < self._stop_deadline

    def _wait_for_work(self) -> None:
        if self._work is not None:
            self._work.join()

    def _on_message(self, channel, method, properties, body: bytes) -> None:
        io = IoThreadCall(self.consumer.connection)
        args = (io, channel, method.delivery_tag, body, delivery_attempt(properties))
        self._work = threading.Thread(target=self._process, args=args, name="conversion", daemon=True)
        self._work.start()

    def _process(self, io: IoThreadCall, channel, delivery_tag: int, body: bytes, attempt: int) -> None:
        def publish(event: JobEvent) -> None:
            props = pika.BasicProperties(content_type="application/json", delivery_mode=PERSISTENT)
            io(lambda: channel.basic_publish(self.topology.events_exchange, event.routing_key, event.encode(), props))

        try:
            outcome = TaskRunner(self.settings, self.storage, self.converter, publish).handle(body, attempt)
            io(lambda: self._settle(channel, delivery_tag, body, outcome))
        except BrokerUnavailable as exc:
            log.warning("lost RabbitMQ mid-task (%s); the broker will redeliver it", exc)
        except Exception:
            log.exception("unexpected error in a conversion task; requeueing it")
            try:
                io(lambda: channel.basic_nack(delivery_tag, requeue=True))
            except BrokerUnavailable:
                pass

    def _settle(self, channel, delivery_tag: int, body: bytes, outcome: Outcome) -> None:
        if outcome.disposition is Disposition.REQUEUE:
            channel.basic_nack(delivery_tag, requeue=True)
            return
        if outcome.disposition is Disposition.DEAD_LETTER:
            headers = {DEAD_LETTER_CODE_HEADER: outcome.code, DEAD_LETTER_REASON_HEADER: outcome.reason[:1000]}
            props = pika.BasicProperties(content_type="application/json", delivery_mode=PERSISTENT, headers=headers)
            channel.basic_publish(self.topology.dead_letter_exchange, "", body, props)
        channel.basic_ack(delivery_tag)

"""The conversion worker: a pika consumer that runs each task on a work thread.

pika's ``BlockingConnection`` is not thread-safe and only sends heartbeats while its I/O loop
runs, so the main thread keeps that loop turning while ffmpeg works on a second thread; the work
thread hands every publish and the final ack back with ``add_callback_threadsafe`` (pika's
documented way; see its ``basic_consumer_threaded.py`` example). Prefetch is 1: one task at a time.

On SIGTERM the worker stops taking tasks, gives the current one ``SHUTDOWN_GRACE_SECONDS`` to
finish, then kills ffmpeg and closes the connection, which returns the task to the queue.

Each worker also binds an exclusive, auto-delete queue of its own to the ``<p>.control`` fanout
exchange and consumes it on the I/O thread: a ``cancel`` command for the job in hand sets the
task's ``cancelled`` flag and kills ffmpeg at once; the task then ends with an ack. Commands for
other jobs are remembered for a while, so a task delivered just after its cancel is skipped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import pika

from services.conversion.converter import Converter
from services.conversion.tasks import Disposition, JobLookup, Outcome, TaskRunner, job_id_in
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
from shared.errors import BrokerUnavailable, MessageError
from shared.messages import JobEvent, WorkerCommand
from shared.metadata_client import MetadataClient
from shared.storage import Storage

log = logging.getLogger(__name__)

IO_CALL_TIMEOUT_SECONDS = 30
"""Longest wait for the I/O thread to run a publish or an ack, seconds."""

JOB_CHECK_TIMEOUT_SECONDS = 2.0
"""How long a worker waits for the metadata service when asking whether a job was cancelled, seconds."""

REMEMBERED_CANCELS = 1024
"""How many cancelled job ids a worker remembers (to skip their tasks if they come later)."""


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

    def post(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` in the I/O thread without waiting for it; a failure is logged, not raised
        (for what may be lost, like a progress report)."""

        def run() -> None:
            try:
                fn()
            except CONNECTION_ERRORS as exc:
                log.info("a fire-and-forget call failed: %r", exc)

        try:
            self.connection.add_callback_threadsafe(run)
        except CONNECTION_ERRORS as exc:
            log.info("connection closed; call dropped: %r", exc)


@dataclass
class TaskInHand:
    """The task a worker is working on: its job id (None if unreadable) and its cancel flag."""

    job_id: str | None
    cancelled: threading.Event = field(default_factory=threading.Event)


class ConversionWorker:
    """Consumes the conversion queue, one task at a time."""

    def __init__(
        self, s: Settings, storage: Storage, converter: Converter | None = None, jobs: JobLookup | None = None
    ):
        self.settings = s
        self.storage = storage
        self.converter = converter or Converter(s)
        self.jobs = jobs or MetadataClient(s.metadata_url, min(JOB_CHECK_TIMEOUT_SECONDS, s.http_timeout_seconds))
        self.topology = Topology.from_settings(s)
        self.consumer = ReconnectingConsumer(s, self.topology, self._setup, "conversion-worker")
        self._task: TaskInHand | None = None
        self._cancels: deque[str] = deque(maxlen=REMEMBERED_CANCELS)
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
        control = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
        channel.queue_bind(control, self.topology.control_exchange)
        channel.basic_consume(control, self._on_command, auto_ack=True)

    def _cancel(self, channel) -> None:
        if self._consumer_tag is not None and channel.is_open:
            channel.basic_cancel(self._consumer_tag)

    def _lingering(self) -> bool:
        return self.busy and time.monotonic() < self._stop_deadline

    def _wait_for_work(self) -> None:
        if self._work is not None:
            self._work.join()

    def _on_command(self, channel, method, properties, body: bytes) -> None:
        """A control command (I/O thread): cancel the task in hand if it is the job's."""
        try:
            command = WorkerCommand.decode(body)
        except MessageError as exc:
            log.error("ignoring a malformed control command: %s", exc)
            return
        self._cancels.append(command.job_id)
        task = self._task
        if task is not None and task.job_id == command.job_id:
            log.info("cancel: stopping the conversion", extra={"job_id": command.job_id})
            task.cancelled.set()
            self.converter.abort_current()

    def _on_message(self, channel, method, properties, body: bytes) -> None:
        io = IoThreadCall(self.consumer.connection)
        task = self._task = TaskInHand(job_id_in(body))
        if task.job_id in self._cancels:
            task.cancelled.set()
        args = (io, channel, method.delivery_tag, body, delivery_attempt(properties), task)
        self._work = threading.Thread(target=self._process, args=args, name="conversion", daemon=True)
        self._work.start()

    def _process(
        self, io: IoThreadCall, channel, delivery_tag: int, body: bytes, attempt: int, task: TaskInHand
    ) -> None:
        props = pika.BasicProperties(content_type="application/json", delivery_mode=PERSISTENT)

        def publish(event: JobEvent) -> None:
            io(lambda: channel.basic_publish(self.topology.events_exchange, event.routing_key, event.encode(), props))

        def report_progress(event: JobEvent) -> None:  # not waited for: ffmpeg's progress pipe keeps flowing
            io.post(
                lambda: channel.basic_publish(self.topology.events_exchange, event.routing_key, event.encode(), props)
            )

        try:
            runner = TaskRunner(
                self.settings,
                self.storage,
                self.converter,
                publish,
                report_progress=report_progress,
                cancelled=task.cancelled,
                jobs=self.jobs,
            )
            outcome = runner.handle(body, attempt)
            io(lambda: self._settle(channel, delivery_tag, body, outcome))
        except BrokerUnavailable as exc:
            log.warning("lost RabbitMQ mid-task (%s); the broker will redeliver it", exc, extra={"job_id": task.job_id})
        except Exception:
            log.exception("unexpected error in a conversion task; requeueing it", extra={"job_id": task.job_id})
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

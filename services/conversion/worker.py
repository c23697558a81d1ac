"""The conversion worker: consumes the conversion queue, one task at a time (prefetch 1).

Each task runs on a work thread (``shared.broker.Consumer``'s threaded handler) while the
connection's I/O thread keeps heartbeats flowing; the task's events go out through that I/O thread,
and its :class:`~shared.broker.Settlement` is applied only after all of them were confirmed.

On SIGTERM the worker stops taking tasks, gives the current one ``SHUTDOWN_GRACE_SECONDS`` to
finish, then kills ffmpeg and closes the connection, which returns the task to the queue.

Each worker also subscribes to the ``<p>.control`` fanout exchange: a ``cancel`` command for the
job in hand sets the task's ``cancelled`` flag and kills ffmpeg at once; the task then ends with an
ack. Commands for other jobs are remembered for a while, so a task delivered just after its cancel
is skipped.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass, field

from services.conversion.converter import Converter
from services.conversion.job_lookup import JobLookup, job_lookup
from services.conversion.tasks import TaskRunner, job_id_in
from shared.broker import Consumer, Delivery, Settlement, Topology, requeue_later
from shared.config import Settings
from shared.errors import MessageError
from shared.messages import WorkerCommand
from shared.storage import Storage

log = logging.getLogger(__name__)

REMEMBERED_CANCELS = 1024
"""How many cancelled job ids a worker remembers (to skip their tasks if they come later)."""


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
        self.jobs = jobs or job_lookup(s)
        self.topology = Topology.from_settings(s)
        self.consumer = Consumer(s, self.topology, "conversion-worker", prefetch=1)
        self.consumer.consume(self.topology.conversion_queue, self._process, threaded=True, on_crash=requeue_later(0))
        self.consumer.subscribe(self.topology.control_exchange, self._on_command)
        self._task: TaskInHand | None = None
        self._cancels: deque[str] = deque(maxlen=REMEMBERED_CANCELS)

    def run(self) -> None:
        """Consume until :meth:`stop`; then finish or requeue the task in hand and return."""
        self.consumer.run()
        if self.busy:
            log.warning("grace period over; aborting the conversion in progress (its task is requeued)")
            self.converter.abort()
            self.consumer.wait_for_work()

    def stop(self) -> None:
        """Stop taking tasks (signal-safe: only sets flags)."""
        self.consumer.stop(grace_seconds=self.settings.shutdown_grace_seconds)

    @property
    def busy(self) -> bool:
        return self.consumer.busy

    def _on_command(self, body: bytes) -> None:
        """A control command (I/O thread): cancel the task in hand if it is the job's."""
        try:
            command = WorkerCommand.decode(body)
        except MessageError as exc:
            log.error("ignoring a malformed control command: %s", exc)
            return
        self._cancels.append(command.job_id)  # before reading the task: see _process
        task = self._task
        if task is not None and task.job_id == command.job_id:
            log.info("cancel: stopping the conversion", extra={"job_id": command.job_id})
            task.cancelled.set()
            self.converter.abort_current()

    def _process(self, delivery: Delivery) -> Settlement:
        """One task (work thread): run it, its events confirmed before the settlement is returned."""
        task = self._task = TaskInHand(job_id_in(delivery.body))
        if task.job_id in self._cancels:  # after setting the task: a cancel in between is seen either way
            task.cancelled.set()
        runner = TaskRunner(
            self.settings,
            self.storage,
            self.converter,
            self.consumer.thread_publisher().publish_job_event,
            report_progress=self.consumer.thread_publisher(wait=False).publish_job_event,
            cancelled=task.cancelled,
            jobs=self.jobs,
            still_held=delivery.held,
        )
        return runner.handle(delivery.body, delivery.attempt)

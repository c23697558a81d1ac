"""Handling one conversion task, from message body to outcome, independent of pika.

Per task: skip it if the job was cancelled; send ``processing`` (unconfirmed); fetch the input into a fresh
temp dir (the local backend's file is read in place); probe; encode as the task's options ask,
publishing ``processing`` progress reports; store the output; publish ``completed`` (or ``failed``
with a stable code); remove the temp dir. The worker settles the message with the returned
:class:`~shared.broker.Settlement` only after all of that.

A cancel (the worker sets ``cancelled`` and kills ffmpeg) ends the task with an ack and no more
events: the metadata service recorded ``cancelled`` before telling the workers, and deletes any
output that a worker stores just after it.
"""

from __future__ import annotations

import errno
import json
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tenacity import Retrying, before_sleep_log, retry_if_exception_type, stop_after_attempt, wait_exponential

from services.conversion import media_codes as codes
from services.conversion import metrics
from services.conversion.converter import Converter
from services.conversion.encode import ConversionInterrupted
from services.conversion.job_lookup import JobLookup
from services.conversion.probe import ProbeResult
from shared.broker import ACK, Settle, Settlement, requeue_later
from shared.broker import dead_letter as dead_letter_with
from shared.config import Settings
from shared.errors import MediaError, MessageError, ObjectNotFound, SandboxFailed, SiphonError, StorageUnavailable
from shared.jobs import JOB_ID_PATTERN, JobErrorInfo, JobStatus, MediaFacts
from shared.logs import job_context
from shared.messages import ConversionTask, JobEvent
from shared.options import ConversionOptions
from shared.storage import Storage

log = logging.getLogger(__name__)


CANCELLED = Settlement(Settle.ACK, "cancelled", "The job was cancelled.")
"""A cancelled job's task: acked, no event (the metadata service recorded the cancel)."""

PROGRESS_INTERVAL_SECONDS = 0.5
"""Least time between two progress reports of one task, seconds."""


class ProgressReports:
    """Turns the converter's fraction done into ``processing`` events carrying ``progress`` (0-99 %):
    at most one every :data:`PROGRESS_INTERVAL_SECONDS`, and only when the percentage rose.

    The task's ``processing`` event (0 %), sent just before, counts as the first report: the next
    comes no sooner than :data:`PROGRESS_INTERVAL_SECONDS` after these reports were made (the
    conversion's start). A report at once repeated that event a few percent later, and cost as
    much as any (a persistent message, a transaction in metadata's store: ~2.4 ms of CPU across
    the stack, issue #16): a conversion now sends one report fewer, one quicker than the interval
    none.
    """

    def __init__(
        self,
        send: Callable[[JobEvent], None],
        job_id: str,
        attempt: int,
        retry: int | None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.send = send
        self.event = JobEvent(job_id=job_id, status=JobStatus.PROCESSING, attempt=attempt, retry=retry, progress=0)
        self.clock = clock
        self.last_percent = 0
        self.last_at = clock()

    def __call__(self, fraction: float) -> None:
        percent = min(99, int(fraction * 100))
        now = self.clock()
        if percent <= self.last_percent or now - self.last_at < PROGRESS_INTERVAL_SECONDS:
            return
        self.last_percent, self.last_at = percent, now
        self.send(self.event.model_copy(update={"progress": percent, "at": time.time()}))


class TaskRunner:
    """Runs conversion tasks; ``publish`` sends a result event (completed, failed) and returns once
    it is confirmed."""

    def __init__(
        self,
        s: Settings,
        storage: Storage,
        converter: Converter,
        publish: Callable[[JobEvent], None],
        *,
        report_progress: Callable[[JobEvent], None] | None = None,
        cancelled: threading.Event | None = None,
        jobs: JobLookup | None = None,
        still_held: Callable[[], bool] = lambda: True,
        clock: Callable[[], float] = time.monotonic,
    ):
        """``report_progress`` sends the ``processing`` event and the progress reports (default:
        ``publish``; they need no confirm);
        ``cancelled`` is set (by the worker) when the client cancels this task's job; ``jobs``, if
        given, is asked before the work starts whether the job was cancelled while queued;
        ``still_held`` says whether the task's delivery is still this worker's (broker.Delivery.held):
        once it is not, another worker has the task as the next attempt, and this one stores and
        publishes nothing more; ``clock`` (seconds) spaces the progress reports."""
        self.settings = s
        self.storage = storage
        self.converter = converter
        self.publish = publish
        self.report_progress = report_progress or publish
        self.cancelled = cancelled or threading.Event()
        self.jobs = jobs
        self.still_held = still_held
        self.clock = clock
        self.with_storage_retries = Retrying(
            stop=stop_after_attempt(s.storage_retries),
            wait=wait_exponential(multiplier=0.5, max=5),
            retry=retry_if_exception_type(StorageUnavailable),
            before_sleep=before_sleep_log(log, logging.WARNING),
            reraise=True,
        )

    def handle(self, body: bytes, attempt: int) -> Settlement:
        """Process one message body delivered for the ``attempt``-th time (1-based)."""
        try:
            task = ConversionTask.decode(body)
        except MessageError as exc:
            return self._refuse_malformed(body, attempt, exc)
        with job_context(task.job_id):
            if self._was_cancelled(task.job_id):
                log.info("job cancelled before its conversion started; skipping it")
                return CANCELLED
            if attempt > self.settings.max_attempts:
                message = f"The conversion was interrupted {attempt - 1} times; giving up."
                return self._fail(task.job_id, task.retry, attempt, codes.TOO_MANY_ATTEMPTS, message, dead_letter=True)
            # Unconfirmed, like a progress report: the work starts without waiting ~3 ms for the
            # broker (issue #16). A lost one loses nothing: the job reads queued until a later event
            # (a report, completed, failed) moves it on, and a broker that is gone fails the
            # confirmed result event, which requeues the task.
            self.report_progress(
                JobEvent(job_id=task.job_id, status=JobStatus.PROCESSING, attempt=attempt, retry=task.retry, progress=0)
            )
            self.settings.work_dir.mkdir(parents=True, exist_ok=True)
            _remove_leftovers(self.settings.work_dir, task.job_id)
            with tempfile.TemporaryDirectory(dir=self.settings.work_dir, prefix=f"{task.job_id}-") as tmp:
                return self._convert(task, attempt, Path(tmp))

    def _convert(self, task: ConversionTask, attempt: int, tmp: Path) -> Settlement:
        probe: ProbeResult | None = None
        options = task.options or ConversionOptions()
        try:
            target = tmp / f"output.{options.output_format.extension}"
            source = self._fetch(task.input_key, tmp / "input")
            probed = self.converter.probe_for(source, options, picture_to=target.with_suffix(".cover"))
            probe = probed.result
            progress = ProgressReports(self.report_progress, task.job_id, attempt, task.retry, self.clock)
            started = time.monotonic()
            result = self.converter.convert(
                probe, source, target, options, progress, self.cancelled, early_picture=probed.early_picture
            )
            converted_in = time.monotonic() - started
            if self.cancelled.is_set():
                return self._cancelled_midway()
            if not self.still_held():
                return self._delivery_lost()
            self.with_storage_retries(self.storage.put_file, task.output_key, target)
            if self.cancelled.is_set():
                self.with_storage_retries(self.storage.delete_prefix, task.output_key)
                return self._cancelled_midway()
        except MediaError as exc:
            return self._fail(task.job_id, task.retry, attempt, exc.code, exc.message, probe)
        except SandboxFailed as exc:
            log.error("the sandbox failed: %s", exc.message)  # the worker's host, not the file: an operator's problem
            return self._fail(
                task.job_id,
                task.retry,
                attempt,
                codes.SANDBOX_FAILED,
                "The conversion sandbox could not be applied; the job can be retried later.",
                probe,
            )
        except StorageUnavailable as exc:
            log.warning("storage unavailable after %d tries: %s", self.settings.storage_retries, exc)
            return self._fail(
                task.job_id,
                task.retry,
                attempt,
                codes.STORAGE_UNAVAILABLE,
                "Object storage is unavailable; the job can be retried later.",
                probe,
            )
        except ObjectNotFound:
            if self._output_stored(task):
                log.info("input gone, output stored: a redelivery of a task that finished; nothing to do")
                return ACK
            return self._fail(
                task.job_id,
                task.retry,
                attempt,
                codes.INPUT_MISSING,
                "The uploaded file no longer exists.",
                probe,
                dead_letter=True,
            )
        except ConversionInterrupted as exc:
            if self.cancelled.is_set():
                return self._cancelled_midway()
            return self._interrupted(task, attempt, exc, probe)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            return self._fail(
                task.job_id,
                task.retry,
                attempt,
                codes.DISK_FULL,
                "The conversion worker ran out of disk space; the job can be retried later.",
                probe,
            )
        if not self.still_held():
            return self._delivery_lost()
        self.publish(
            JobEvent(
                job_id=task.job_id,
                status=JobStatus.COMPLETED,
                attempt=attempt,
                media=_facts(probe),
                output_size=result.size_bytes,
                output_duration_seconds=round(result.duration_seconds, 3),
                retry=task.retry,
                speed=result.speed,
            )
        )
        log.info("converted %.2f s of audio into %d bytes", result.duration_seconds, result.size_bytes)
        metrics.observe_conversion(converted_in, result.duration_seconds, result.size_bytes)
        return ACK

    def _output_stored(self, task: ConversionTask) -> bool:
        """Whether the task's output exists. With the input gone, the job ended after an earlier
        delivery stored it (the worker died before its ack): the redelivery must change nothing."""
        try:
            self.storage.size(task.output_key)
        except (ObjectNotFound, StorageUnavailable):
            return False
        return True

    def _fetch(self, key: str, copy: Path) -> Path:
        """The input as a local file: the stored file itself when the backend keeps files (read
        in place, no copy), else a download into ``copy``."""
        stored = self.storage.local_path(key)
        if stored is not None:
            return stored
        self.with_storage_retries(self.storage.download, key, copy)
        return copy

    def _was_cancelled(self, job_id: str) -> bool:
        """Whether the job was cancelled (the worker heard it, or the job record says so: read from
        Redis, else asked of the metadata service, ``job_lookup.py``). A job store that cannot
        answer does not stop the work: the conversion runs, and its output is deleted when the
        cancel is already recorded."""
        if self.cancelled.is_set():
            return True
        if self.jobs is None:
            return False
        try:
            return self.jobs.get_job(job_id).status is JobStatus.CANCELLED
        except SiphonError as exc:
            log.info("could not ask whether the job was cancelled (%s); converting it", exc.code)
            return False

    def _cancelled_midway(self) -> Settlement:
        log.info("job cancelled during its conversion; dropped")
        return CANCELLED

    def _delivery_lost(self) -> Settlement:
        """The task's delivery is no longer this worker's (its connection closed): the broker gives
        the task to another worker, whose result counts; this one's is dropped unstored and unsent."""
        log.warning("the task's delivery was lost with its broker connection; dropping this attempt's result")
        return requeue_later(0, reason="delivery lost")

    def _interrupted(
        self, task: ConversionTask, attempt: int, exc: ConversionInterrupted, probe: ProbeResult | None
    ) -> Settlement:
        if attempt >= self.settings.max_attempts:
            message = f"FFmpeg stopped abnormally on every one of {attempt} attempts ({exc})."
            return self._fail(task.job_id, task.retry, attempt, codes.DECODE_FAILED, message, probe, dead_letter=True)
        log.warning("conversion interrupted (%s); requeueing", exc)
        return requeue_later(0, reason=str(exc))

    def _fail(
        self,
        job_id: str,
        retry: int | None,
        attempt: int,
        code: str,
        message: str,
        probe: ProbeResult | None = None,
        *,
        dead_letter: bool = False,
    ) -> Settlement:
        """Publish the ``failed`` event of ``job_id``'s retry ``retry`` (None: its first conversion),
        attempt ``attempt``; then ack, or dead-letter when ``dead_letter``."""
        if not self.still_held():
            return self._delivery_lost()
        log.info("job failed: %s: %s", code, message)
        self.publish(
            JobEvent(
                job_id=job_id,
                status=JobStatus.FAILED,
                attempt=attempt,
                media=_facts(probe),
                error=JobErrorInfo(code=code, message=message),
                retry=retry,
            )
        )
        metrics.count_failure(code)
        return dead_letter_with(code, message) if dead_letter else Settlement(Settle.ACK, code, message)

    def _refuse_malformed(self, body: bytes, attempt: int, exc: MessageError) -> Settlement:
        job_id = job_id_in(body)
        if job_id is None:
            log.error("dead-lettering a malformed task: %s", exc)
            return dead_letter_with(codes.INVALID_TASK, exc.message)
        with job_context(job_id):
            return self._fail(
                job_id,
                None,  # a malformed task's retry is unknown: the event counts for the job's first conversion
                attempt,
                codes.INVALID_TASK,
                f"The conversion task is malformed: {exc.message}",
                dead_letter=True,
            )


def _remove_leftovers(work_dir: Path, job_id: str) -> None:
    """Delete the temp dirs of earlier attempts at this job whose worker was killed: a task is
    delivered to one worker at a time, so no live attempt owns them."""
    for stale in work_dir.glob(f"{job_id}-*"):
        shutil.rmtree(stale, ignore_errors=True)


def _facts(probe: ProbeResult | None) -> MediaFacts | None:
    if probe is None:
        return None
    try:
        return probe.facts(probe.default_audio())
    except MediaError:
        return probe.facts()


def job_id_in(body: bytes) -> str | None:
    """The job id a task body names, if one can be read from it (also from a body that fails validation)."""
    try:
        job_id = json.loads(body).get("job_id")
    except (ValueError, AttributeError):
        return None
    return job_id if isinstance(job_id, str) and JOB_ID_PATTERN.fullmatch(job_id) else None

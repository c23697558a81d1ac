"""Accepting an upload: store the file, create the queued job, publish its conversion task.

All or nothing: if any step fails, what earlier steps made is removed, so a 503 leaves no job
and no object behind. Files that are already in storage (queue messages, S3 events, direct
uploads) enter through :meth:`Intake.queue_stored` and :meth:`Intake.record_refused`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import BinaryIO

from services.upload.screen import refuse_unless_media
from shared.broker import Publishes, Topology
from shared.errors import JobNotFound, JobNotRetryable, RequestRejected, SiphonError
from shared.filenames import clean_filename
from shared.job_requests import NewJob
from shared.jobs import Job, JobErrorInfo, JobStatus, input_key, job_prefix, new_job_id
from shared.logs import job_context
from shared.messages import ConversionTask, JobEvent
from shared.metadata_client import MetadataClient
from shared.notifications import NotificationTargets
from shared.options import ConversionOptions
from shared.storage import Storage

log = logging.getLogger(__name__)


class Intake:
    """Turns an uploaded file stream into a queued job."""

    def __init__(
        self,
        storage: Storage,
        metadata: MetadataClient,
        publisher: Publishes,
        topology: Topology,
        max_upload_bytes: int,
        intake_owner: str = "intake",
        video_codecs: tuple[str, ...] = (),
    ):
        self.storage = storage
        self.metadata = metadata
        self.publisher = publisher
        self.topology = topology
        self.max_upload_bytes = max_upload_bytes
        self.intake_owner = intake_owner
        self.video_codecs = video_codecs
        """The video codecs offered (``shared.video_codecs``); a job asking for another is refused."""

    def submit(
        self,
        stream: BinaryIO,
        filename: str | None,
        options: ConversionOptions | None = None,
        targets: NotificationTargets | None = None,
        content_sha256: str | None = None,
        owner: str | None = None,
        quota_subject: str | None = None,
        head: bytes | None = None,
    ) -> Job:
        """Store ``stream`` and queue its conversion with ``options`` (default: the plain MP3);
        return the ``queued`` job, owned by ``owner`` (a key name; None in open mode). ``targets``
        are told when it ends; it counts in ``quota_subject``'s unfinished jobs. With the upload's
        ``content_sha256``, an identical earlier upload's output may serve it: the job then comes
        back ``completed`` and ``cached``, and no conversion is queued. With the file's ``head``
        (its first bytes, as the receiver kept them), an empty file or one that is clearly not
        media is refused before anything is stored.

        Raises:
            RequestRejected: the file is empty (400 ``empty_file``), not media by its head (415
                ``not_media``) or larger than ``MAX_UPLOAD_BYTES`` (413 ``file_too_large``).
            Unavailable: storage, the metadata service or RabbitMQ is down (503); nothing is kept.
        """
        job_id = new_job_id()
        with job_context(job_id):
            if head is not None:
                refuse_unless_media(head)
            try:
                size = self.storage.put_stream(input_key(job_id), stream)
                self._check_size(size)
                options = options or ConversionOptions()
                job = with_intake_facts(
                    new_job(job_id, clean_filename(filename), size, options, owner),
                    targets or NotificationTargets(),
                    content_sha256,
                    options,
                    quota_subject,
                )
                job = self._record_and_publish(job)
            except SiphonError:
                self.storage.delete_prefix(job_prefix(job_id))
                raise
            log.info("job %s (%d bytes)", "completed from the output cache" if job.cached else "queued", size)
            return job

    def retry(self, job_id: str) -> Job:
        """Queue once more a job that failed for a retryable reason (``RETRYABLE_ERROR_CODES``:
        storage down, disk full, sandbox failed); return it ``queued``. It is retry ``retries + 1``,
        its attempts counted again from 1; events of the failed retry are ignored.

        Raises:
            JobNotFound: no such job.
            JobNotRetryable: the job is not failed, or failed for a reason a retry cannot cure.
            Unavailable: the metadata service or RabbitMQ is down; the job stays failed.
        """
        with job_context(job_id):
            failed = self.metadata.get_job(job_id)
            retry = failed.retries + 1
            queued = self.metadata.apply_event(JobEvent(job_id=job_id, status=JobStatus.QUEUED, retry=retry))
            if queued is None:
                raise JobNotRetryable(
                    f"The job is {failed.status.value}"
                    f"{f' ({failed.error.code})' if failed.error else ''}; it cannot be retried."
                )
            task = ConversionTask(
                job_id=job_id,
                input_key=queued.input_key,
                output_key=queued.output_key,
                retry=retry,
                options=task_options(queued),
            )
            try:
                self.publisher.publish_conversion_task(task)
            except SiphonError:
                self.metadata.apply_event(
                    JobEvent(job_id=job_id, status=JobStatus.FAILED, retry=retry, error=failed.error)
                )
                raise
            log.info("job queued again (retry %d)", retry)
            return queued

    def stored_size(self, key: str) -> int:
        """The size of the object already stored at ``key``, checked against the limits.

        Raises:
            ObjectNotFound: there is no such object.
            RequestRejected: it is empty (400 ``empty_file``) or larger than ``MAX_UPLOAD_BYTES``
                (413 ``file_too_large``).
        """
        size = self.storage.size(key)
        self._check_size(size)
        return size

    def queue_stored(self, job: Job, redelivered: bool = False) -> Job:
        """Queue the conversion of an object already in storage at ``job.input_key`` (a queue
        message's, an S3 event's, a direct upload's); return the job as it is now. The object is
        not the intake's to delete: nothing here removes it.

        Idempotent per job id, because messages arrive at least once: a job that exists with the
        same keys is returned as it is. Only for a ``redelivered`` message (the broker's second
        delivery of one whose handling was cut short, maybe between creating the job and
        publishing its task) is the task of a still ``queued`` job published again; a message
        merely sent twice does not convert the file twice.

        Raises:
            RequestRejected: a job with this id exists for other keys (409 ``duplicate_job_id``).
            Unavailable: the metadata service or RabbitMQ is down; no new job is kept.
        """
        with job_context(job.job_id):
            existing = self._existing(job.job_id)
            if existing is None:
                self._record_and_publish(job)
                log.info("job queued for %s (%d bytes)", job.input_key, job.input_size)
                return job
            if (existing.input_key, existing.output_key) != (job.input_key, job.output_key):
                raise RequestRejected(
                    f"A job with id {job.job_id} already exists, for another file.", code="duplicate_job_id", status=409
                )
            if redelivered and existing.status is JobStatus.QUEUED:
                self._publish_task(existing)
            return existing

    def record_refused(self, job: Job, error: JobErrorInfo) -> Job | None:
        """Record ``job`` as ``failed`` with ``error`` before any conversion (its input is missing,
        empty, too large or not media; its message is malformed) and publish its ``failed`` event,
        so /status and every consumer of job events see it like any other failure. Returns the
        failed job, or None when a job with its id exists already (a redelivered message).

        Raises:
            Unavailable: the metadata service or RabbitMQ is down; no job is kept.
        """
        with job_context(job.job_id):
            if self._existing(job.job_id) is not None:
                return None
            failed = job.model_copy(update={"status": JobStatus.FAILED, "finished_at": time.time(), "error": error})
            self.metadata.create_job(failed)
            event = JobEvent(job_id=job.job_id, status=JobStatus.FAILED, error=error)
            try:
                self.publisher.publish_job_event(event)
            except SiphonError:
                self.metadata.delete_job(job.job_id)
                raise
            log.info("job refused: %s: %s", error.code, error.message)
            return failed

    def owned_by_intake(self, job: Job) -> Job:
        """``job`` owned by ``INTAKE_OWNER``: the owner of every queue message's and S3 event's job."""
        return job.model_copy(update={"owner": self.intake_owner})

    def _existing(self, job_id: str) -> Job | None:
        try:
            return self.metadata.get_job(job_id)
        except JobNotFound:
            return None

    def _check_size(self, size: int) -> None:
        if size == 0:
            raise RequestRejected("The uploaded file is empty.", code="empty_file", status=400)
        if size > self.max_upload_bytes:
            raise RequestRejected(
                f"The file is larger than the {self.max_upload_bytes}-byte limit.", code="file_too_large", status=413
            )

    def _record_and_publish(self, job: Job) -> Job:
        """Create the job and publish its task; return the job as created (the metadata service
        completes a repeat of a cached upload at once, and then there is nothing to publish)."""
        created = self.metadata.create_job(job) or job
        if created.status is not JobStatus.QUEUED:
            return created
        try:
            self._publish_task(created)
        except SiphonError:
            self.metadata.delete_job(job.job_id)
            raise
        return created

    def _publish_task(self, job: Job) -> None:
        task = ConversionTask(
            job_id=job.job_id, input_key=job.input_key, output_key=job.output_key, options=task_options(job)
        )
        self.publisher.publish_conversion_task(task)


def new_job(job_id: str, filename: str, size: int, options: ConversionOptions, owner: str | None = None) -> NewJob:
    """A queued job of ``owner`` recording the options the client set, its output named for their
    format; ``size`` is the input's, bytes."""
    return NewJob.new(
        job_id, filename, size, options=options.recorded(), extension=options.output_format.extension, owner=owner
    )


def with_intake_facts(
    job: NewJob,
    targets: NotificationTargets,
    content_sha256: str | None,
    options: ConversionOptions,
    quota_subject: str | None = None,
) -> NewJob:
    """``job`` with who to notify, the upload's digest and output cache key when it was hashed, and
    the caller whose unfinished jobs it counts in (``quota_subject``)."""
    return job.model_copy(
        update={
            "email": targets.email,
            "callback_url": targets.callback_url,
            "content_sha256": content_sha256,
            "cache_key": output_cache_key(content_sha256, options) if content_sha256 else None,
            "quota_subject": quota_subject,
        }
    )


def output_cache_key(content_sha256: str, options: ConversionOptions) -> str:
    """The output cache's key (``services/metadata/outputs.py``): the upload's SHA-256 and a digest
    of the options the client set (their canonical JSON), so only identical content converted
    alike shares an output. The notification fields are no part of it."""
    options_json = json.dumps(options.recorded(), sort_keys=True, separators=(",", ":"), default=str)
    return f"{content_sha256}-{hashlib.sha256(options_json.encode()).hexdigest()[:16]}"


def task_options(job: Job) -> ConversionOptions | None:
    """The options a job's conversion task carries: None for the plain MP3, so such a task is the
    same message as before options existed."""
    return ConversionOptions.model_validate(job.options) if job.options else None

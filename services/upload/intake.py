"""Accepting an upload: store the file, create the queued job, publish its conversion task.

All or nothing: if any step fails, what earlier steps made is removed, so a 503 leaves no job
and no object behind.
"""

from __future__ import annotations

import logging
from typing import BinaryIO

from shared.broker import CONVERSION_ROUTING_KEY, ConfirmingPublisher, Topology
from shared.errors import JobNotRetryable, RequestRejected, SiphonError
from shared.filenames import clean_filename
from shared.jobs import Job, JobStatus, input_key, job_prefix, new_job_id
from shared.logs import job_context
from shared.messages import ConversionTask, JobEvent
from shared.metadata_client import MetadataClient
from shared.storage import Storage

log = logging.getLogger(__name__)


class Intake:
    """Turns an uploaded file stream into a queued job."""

    def __init__(self, storage: Storage, metadata: MetadataClient, publisher: ConfirmingPublisher,
                 topology: Topology, max_upload_bytes: int):
        self.storage = storage
        self.metadata = metadata
        self.publisher = publisher
        self.topology = topology
        self.max_upload_bytes = max_upload_bytes

    def submit(self, stream: BinaryIO, filename: str | None) -> Job:
        """Store ``stream`` and queue its conversion; return the ``queued`` job.

        Raises:
            RequestRejected: the file is empty (400 ``empty_file``) or larger than
                ``MAX_UPLOAD_BYTES`` (413 ``file_too_large``).
            Unavailable: storage, the metadata service or RabbitMQ is down (503); nothing is kept.
        """
        job_id = new_job_id()
        with job_context(job_id):
            try:
                size = self.storage.put_stream(input_key(job_id), stream)
                self._check_size(size)
                job = Job.new(job_id, clean_filename(filename), size)
                self._record_and_publish(job)
            except SiphonError:
                self.storage.delete_prefix(job_prefix(job_id))
                raise
            log.info("job queued (%d bytes)", size)
            return job

    def retry(self, job_id: str) -> Job:
        """Queue once more a job that failed for a retryable reason (storage down, disk full);
        return it ``queued``. Its new run is ``retries + 1``; events of the failed run are ignored.

        Raises:
            JobNotFound: no such job.
            JobNotRetryable: the job is not failed, or failed for a reason a retry cannot cure.
            Unavailable: the metadata service or RabbitMQ is down; the job stays failed.
        """
        with job_context(job_id):
            failed = self.metadata.get_job(job_id)
            run = failed.retries + 1
            queued = self.metadata.apply_event(JobEvent(job_id=job_id, status=JobStatus.QUEUED, retry=run))
            if queued is None:
                raise JobNotRetryable(f"The job is {failed.status.value}"
                                      f"{f' ({failed.error.code})' if failed.error else ''}; it cannot be retried.")
            task = ConversionTask(job_id=job_id, input_key=queued.input_key, output_key=queued.output_key, retry=run)
            try:
                self.publisher.publish(self.topology.tasks_exchange, CONVERSION_ROUTING_KEY, task.encode())
            except SiphonError:
                self.metadata.apply_event(JobEvent(job_id=job_id, status=JobStatus.FAILED, retry=run,
                                                   error=failed.error))
                raise
            log.info("job queued again (retry %d)", run)
            return queued

    def _check_size(self, size: int) -> None:
        if size == 0:
            raise RequestRejected("The uploaded file is empty.", code="empty_file", status=400)
        if size > self.max_upload_bytes:
            raise RequestRejected(f"The file is larger than the {self.max_upload_bytes}-byte limit.",
                                  code="file_too_large", status=413)

    def _record_and_publish(self, job: Job) -> None:
        self.metadata.create_job(job)
        task = ConversionTask(job_id=job.job_id, input_key=job.input_key, output_key=job.output_key)
        try:
            self.publisher.publish(self.topology.tasks_exchange, CONVERSION_ROUTING_KEY, task.encode())
        except SiphonError:
            self.metadata.delete_job(job.job_id)
            raise

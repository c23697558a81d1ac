"""How a worker reads a job before starting its task, to skip it when it was cancelled while queued.

The job's record in Redis first (``shared/job_records.py``: one ``GET`` of the primary, nothing
written), and the metadata service's ``GET /jobs/<id>`` only when that read gives nothing (no
record in Redis, Redis unreachable or failing, a record that does not load). The HTTP call it
replaces was ~10 % of a worker's CPU outside ffmpeg per job (issue #16's py-spy profile); the
answer is the same, because metadata answers from that very key and writes it only forward.
"""

from __future__ import annotations

from typing import Protocol

from shared.config import Settings
from shared.job_records import JobRecords
from shared.jobs import Job
from shared.metadata_client import MetadataClient
from shared.redis_client import redis_client

RECORD_READ_TIMEOUT_SECONDS = 1.0
"""How long a worker waits on Redis for a job's record (connect, then answer), seconds, without
trying again: a read Redis does not answer in time goes to the metadata service, as a miss does."""

METADATA_TIMEOUT_SECONDS = 2.0
"""How long a worker waits for the metadata service when Redis gave no record, seconds."""


class JobLookup(Protocol):
    """Reads a job (the metadata client's ``get_job``).

    Raises:
        SiphonError: the job is unknown (``JobNotFound``) or could not be read (``JobStoreUnavailable``).
    """

    def get_job(self, job_id: str) -> Job: ...


class RecordsThenMetadata:
    """A :class:`JobLookup` that reads the job's record in Redis, else asks the metadata service.

    Args:
        records: the job records in Redis.
        metadata: asked when ``records`` gives nothing (it restores a record Redis lost from its
            manifest, or says the job does not exist).
    """

    def __init__(self, records: JobRecords, metadata: JobLookup):
        self.records = records
        self.metadata = metadata

    def get_job(self, job_id: str) -> Job:
        """The job, as its record in Redis says, else as the metadata service answers.

        Raises:
            SiphonError: from the metadata service (see :class:`JobLookup`).
        """
        return self.records.get(job_id) or self.metadata.get_job(job_id)


def job_lookup(s: Settings) -> RecordsThenMetadata:
    """The lookup on the configured Redis (``REDIS_URL``, ``REDIS_SENTINELS``, ``REDIS_PREFIX``) and
    metadata service (``METADATA_URL``); nothing connects before the first read."""
    client = redis_client(
        s, socket_timeout=RECORD_READ_TIMEOUT_SECONDS, connect_timeout=RECORD_READ_TIMEOUT_SECONDS, retries=0
    )
    metadata = MetadataClient(s.metadata_url, min(METADATA_TIMEOUT_SECONDS, s.http_timeout_seconds))
    return RecordsThenMetadata(JobRecords(client, s.redis_prefix), metadata)

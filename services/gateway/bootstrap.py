"""The gateway's parts, built once from the settings (real adapters by default; tests pass fakes),
and where a request's route finds them: :func:`parts`."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from services.gateway.access import JobAccess
from services.gateway.events import ChangeRelay
from services.gateway.quotas import SubmissionLimits
from services.gateway.status_cache import StatusCache
from services.gateway.status_reads import StatusReader
from services.gateway.upstream import UploadService
from shared.auth import Authenticator
from shared.config import Settings
from shared.job_records import JobRecords
from shared.links import LinkSigner, link_signer
from shared.metadata_client import MetadataClient
from shared.quotas import Quotas
from shared.redis_client import redis_client
from shared.storage import Storage, make_storage

MULTIPART_SLACK_BYTES = 64 * 1024
"""Room for multipart boundaries and small fields above MAX_UPLOAD_BYTES, bytes."""

UPLOAD_READ_TIMEOUT_SECONDS = 300
"""How long the gateway waits on the upload service between bytes, seconds."""

RECORD_READ_TIMEOUT_SECONDS = 2.0
"""How long ``/status`` waits on Redis for a job record (connect, then answer), seconds, without
trying again: a read Redis does not answer in time goes to the metadata service, as a miss does."""

EXTENSION = "siphon.gateway"
"""The key of :class:`GatewayParts` in ``app.extensions``."""


@dataclass(frozen=True)
class GatewayParts:
    """Everything the gateway's routes use: settings, the clients of the other services, storage,
    the change relay, the caller's authentication, the link signer (None in open mode without a
    secret), the submission limits, the jobs as the caller may see them, and ``/status`` answers
    given without the metadata service (``status_reads.py``)."""

    settings: Settings
    metadata: MetadataClient
    storage: Storage
    upload: UploadService
    relay: ChangeRelay
    auth: Authenticator
    links: LinkSigner | None
    limits: SubmissionLimits
    jobs: JobAccess
    status: StatusReader

    @property
    def body_limit(self) -> int:
        """The largest request body ``POST /convert`` takes, bytes."""
        return self.settings.max_upload_bytes + MULTIPART_SLACK_BYTES


def gateway_parts(
    s: Settings,
    metadata: MetadataClient | None = None,
    storage: Storage | None = None,
    upload: UploadService | None = None,
    relay: ChangeRelay | None = None,
    auth: Authenticator | None = None,
    quotas: Quotas | None = None,
    records: JobRecords | None = None,
) -> GatewayParts:
    """The parts on the configured services (nothing connects before its first use); any given
    part is used instead of the real one.

    Raises:
        ConfigError: the keys file cannot be read.
    """
    metadata = metadata or MetadataClient(s.metadata_url, s.http_timeout_seconds)
    records = records or make_job_records(s)
    links = link_signer(s)
    limits = SubmissionLimits(
        quotas or Quotas.from_settings(s),
        metadata,
        s.trusted_proxies,
        s.quota_unfinished_jobs,
        s.max_upload_bytes + MULTIPART_SLACK_BYTES,
    )
    return GatewayParts(
        settings=s,
        metadata=metadata,
        storage=storage or make_storage(s),
        upload=upload or UploadService(s.upload_url, s.http_timeout_seconds, UPLOAD_READ_TIMEOUT_SECONDS),
        relay=relay or make_relay(s),
        auth=auth or Authenticator.from_path(s.api_keys_file),
        links=links,
        limits=limits,
        jobs=JobAccess(metadata),
        status=StatusReader(StatusCache(s.output_ttl), records, links),
    )


def make_job_records(s: Settings) -> JobRecords:
    """The job records in the configured Redis (connects on the first read)."""
    client = redis_client(
        s, socket_timeout=RECORD_READ_TIMEOUT_SECONDS, connect_timeout=RECORD_READ_TIMEOUT_SECONDS, retries=0
    )
    return JobRecords(client, s.redis_prefix)


def make_relay(s: Settings) -> ChangeRelay:
    """The change relay on the configured Redis (connects when the first stream opens)."""
    client = redis_client(s, socket_timeout=10, connect_timeout=2)
    return ChangeRelay(
        client, s.redis_prefix, s.events_heartbeat_seconds, s.events_max_stream_seconds, s.events_max_clients
    )


def parts() -> GatewayParts:
    """The parts of the app serving the current request."""
    return current_app.extensions[EXTENSION]

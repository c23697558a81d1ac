"""Wiring the metadata service's real adapters (cosmicpython's ``bootstrap``): one place that
knows which Redis, storage, rq queues, SMTP server and HTTP client each part gets. Nothing here
connects; every client connects on first use."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from services.metadata.control import WorkerControl
from services.metadata.feed import ChangeFeed
from services.metadata.followups import Followups
from services.metadata.index import JobIndex
from services.metadata.notifications import Mailer, Notifier, SmtpSettings, WebhookSender
from services.metadata.outputs import OutputCache
from services.metadata.rqueues import RqQueues
from services.metadata.store import JobStore
from services.metadata.unfinished import UnfinishedJobs
from shared.broker import ConfirmingPublisher, Topology
from shared.callbacks import CallbackGuard
from shared.config import Settings
from shared.links import link_signer
from shared.redis_client import redis_client as make_redis_client
from shared.storage import Storage, make_storage


def redis_client(s: Settings) -> redis.Redis:
    """The job store's Redis client (the Sentinels' primary when ``REDIS_SENTINELS`` is set)."""
    # A few quick retries, about 1 s in all: enough to ride out a Sentinel failover's switch of
    # primary, short enough that a dead Redis becomes a 503 within seconds.
    return make_redis_client(s, socket_timeout=5, connect_timeout=2, retries=3)


@dataclass
class MetadataParts:
    """The job store and what is kept in step with it."""

    store: JobStore
    index: JobIndex
    outputs: OutputCache
    queues: RqQueues


def metadata_parts(s: Settings, client: redis.Redis | None = None, storage: Storage | None = None) -> MetadataParts:
    """A job store whose writes also keep the index, the change feed and the follow-ups."""
    client = client or redis_client(s)
    storage = storage or make_storage(s)
    index = JobIndex(client, s.redis_prefix)
    outputs = OutputCache(client, s.redis_prefix, storage, enabled=s.output_cache)
    queues = RqQueues(client, s.redis_prefix)
    observers = (
        index,
        ChangeFeed(s.redis_prefix, s.events_history),
        Followups(s, queues, storage, outputs),
        UnfinishedJobs(client, s.redis_prefix),
    )
    return MetadataParts(JobStore(client, s.redis_prefix, storage, observers), index, outputs, queues)


def make_control(s: Settings) -> WorkerControl:
    """Commands to the conversion workers over RabbitMQ (connects on first use): one connection
    per process, whatever the number of greenlets (gevent worker) that cancel at once."""
    return WorkerControl(ConfirmingPublisher(s, Topology.from_settings(s), pooled=False))


def make_notifier(s: Settings, store: JobStore) -> Notifier:
    """The notifier, on the configured SMTP server, webhook secret and limits."""
    smtp = SmtpSettings(
        s.smtp_host,
        s.smtp_port,
        s.smtp_from,
        s.smtp_starttls,
        s.smtp_username,
        s.smtp_password,
        s.notify_timeout_seconds,
        str(s.smtp_ca_file) if s.smtp_ca_file else None,
    )
    webhooks = WebhookSender(s.webhook_secret, s.notify_timeout_seconds, CallbackGuard(s.callback_allowed_hosts))
    return Notifier(
        store,
        Mailer(smtp),
        webhooks,
        s.smtp_from,
        s.public_url,
        s.output_ttl,
        s.notify_max_attempts,
        links=link_signer(s),
    )

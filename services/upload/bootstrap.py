"""The upload service's parts, built once from the settings; its web app and its queue intake both
start here (neither imports the other). The web app's routes find its parts with :func:`parts`; the
queue intake also gets its progress follower here (:func:`make_progress_follower`)."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from services.upload.direct import DirectUploads
from services.upload.intake import Intake
from services.upload.progress import ProgressFeed, ProgressFollower
from shared.auth import Authenticator
from shared.broker import ConfirmingPublisher, Topology
from shared.callbacks import CallbackGuard
from shared.config import Settings
from shared.metadata_client import MetadataClient
from shared.quotas import Quotas
from shared.redis_client import redis_client
from shared.storage import make_storage
from shared.video_codecs import offered_video_codecs

EXTENSION = "siphon.upload"
"""The key of :class:`UploadParts` in ``app.extensions``."""


def make_intake(s: Settings) -> Intake:
    """An intake wired to the real storage, metadata service and RabbitMQ (connects on first use)."""
    topology = Topology.from_settings(s)
    return Intake(
        storage=make_storage(s),
        metadata=MetadataClient(s.metadata_url, s.http_timeout_seconds),
        publisher=ConfirmingPublisher(s, topology),
        topology=topology,
        max_upload_bytes=s.max_upload_bytes,
        intake_owner=s.intake_owner,
        video_codecs=offered_video_codecs(s.video_codecs, s.ffmpeg_path),
    )


def make_progress_follower(s: Settings) -> ProgressFollower:
    """The queue intake's progress follower: the change feed in the metadata service's Redis (``REDIS_URL``
    or the Sentinels' primary) under ``REDIS_PREFIX``, published on the progress exchange by a
    connection of its own."""
    # The socket timeout outlasts the follower's blocking read (XREADGROUP BLOCK, 1 s).
    client = redis_client(s, socket_timeout=10)
    publisher = ConfirmingPublisher(s, Topology.from_settings(s), pooled=False, intake=True)
    return ProgressFollower(client, s.redis_prefix, ProgressFeed(publisher))


@dataclass(frozen=True)
class UploadParts:
    """What the web app's routes use: the intake, direct uploads, the caller's authentication, the
    per-caller limits, the callback guard and the settings."""

    settings: Settings
    intake: Intake
    direct: DirectUploads
    auth: Authenticator
    quotas: Quotas
    callbacks: CallbackGuard


def upload_parts(
    s: Settings, intake: Intake | None = None, auth: Authenticator | None = None, quotas: Quotas | None = None
) -> UploadParts:
    """The parts on the configured services (nothing connects before its first use); any given
    part is used instead of the real one.

    Raises:
        ConfigError: the keys file cannot be read.
    """
    intake = intake or make_intake(s)
    auth = auth or Authenticator.from_path(s.api_keys_file)
    quotas = quotas or Quotas.from_settings(s)
    direct = DirectUploads(
        intake,
        s.presigned_url_expiry_seconds,
        quotas,
        secret=s.download_link_secret.get_secret_value().encode() if s.download_link_secret else b"",
        key_names=auth.key_names,
    )
    return UploadParts(s, intake, direct, auth, quotas, CallbackGuard(s.callback_allowed_hosts))


def parts() -> UploadParts:
    """The parts of the app serving the current request."""
    return current_app.extensions[EXTENSION]

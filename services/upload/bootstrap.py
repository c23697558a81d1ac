"""The upload service's parts, built once from the settings; its web app and its queue intake both
start here (neither imports the other)."""

from __future__ import annotations

from services.upload.intake import Intake
from shared.broker import ConfirmingPublisher, Topology
from shared.config import Settings
from shared.metadata_client import MetadataClient
from shared.storage import make_storage


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
    )

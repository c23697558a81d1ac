"""What the metadata service's HTTP routes share: the parts they work on (:class:`ApiParts`, found
with :func:`parts`), and the checks of a job id and an ``owner`` filter."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from services.metadata.control import WorkerControl
from services.metadata.index import JobIndex
from services.metadata.outputs import OutputCache
from services.metadata.store import JobStore
from services.metadata.unfinished import UnfinishedJobs
from shared.auth import KEY_NAME
from shared.config import Settings
from shared.errors import JobNotFound, RequestRejected
from shared.jobs import is_valid_job_id

EXTENSION = "siphon.metadata"
"""The key of :class:`ApiParts` in ``app.extensions``."""


@dataclass(frozen=True)
class ApiParts:
    """The job store and the views kept in step with it (index, output cache, unfinished jobs per
    caller), the workers' control channel, and the settings."""

    settings: Settings
    store: JobStore
    index: JobIndex
    outputs: OutputCache
    unfinished: UnfinishedJobs
    control: WorkerControl


def parts() -> ApiParts:
    """The parts of the app serving the current request."""
    return current_app.extensions[EXTENSION]


def checked(job_id: str) -> str:
    """``job_id`` if it is shaped like one.

    Raises:
        JobNotFound: it is not (404, before any Redis or storage lookup).
    """
    if not is_valid_job_id(job_id):
        raise JobNotFound("Job not found.")
    return job_id


def owner_filter(raw: str | None) -> str | None:
    """``owner`` as a key name to list the jobs of, or None for every owner's.

    Raises:
        RequestRejected: not a key name (400 ``invalid_owner``).
    """
    if raw is None:
        return None
    if not KEY_NAME.fullmatch(raw):
        raise RequestRejected("'owner' must be an API key's name.", code="invalid_owner")
    return raw

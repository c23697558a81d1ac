"""Who may see which job, at the gateway: every API route learns its caller from the request's
API key (``shared/auth.py``), and a job is looked up for that caller only.

A job another key owns is answered exactly as a job that does not exist (404), so no answer tells
that it exists. Free of any key: the health checks, ``/metrics``, the web page, the API docs,
static files, and a download whose link carries a signature (checked by the download itself).
"""

from __future__ import annotations

from flask import Flask, Request, g, request

from shared.auth import OPEN, Authenticator, Principal
from shared.errors import JobNotFound
from shared.jobs import Job, is_valid_job_id
from shared.metadata_client import MetadataClient

PUBLIC_ENDPOINTS = frozenset({"health.healthz", "health.readyz", "metrics", "static"})
"""Flask endpoints any caller reaches (the ``pages`` blueprint's too: ``/``, ``/docs``, ``/openapi.json``)."""


def install_authentication(app: Flask, auth: Authenticator) -> None:
    """Set ``g.principal`` before every request that needs a key; answer 401 ``unauthorized``
    when it has none, or one the keys file does not hold."""

    @app.before_request
    def _authenticate():
        if not is_public(request):
            g.principal = auth.principal(request.headers.get("Authorization"))


def is_public(req: Request) -> bool:
    """Whether ``req`` needs no key: a public endpoint, or a signed download link."""
    endpoint = req.endpoint or ""
    if endpoint in PUBLIC_ENDPOINTS or endpoint.startswith("pages."):
        return True
    return endpoint == "downloads.download" and "signature" in req.args


def caller() -> Principal:
    """The principal of the request being served (:data:`~shared.auth.OPEN` on a public route)."""
    return g.get("principal", OPEN)


class JobAccess:
    """Reads jobs from the metadata service on behalf of the caller."""

    def __init__(self, metadata: MetadataClient):
        self.metadata = metadata

    def get(self, job_id: str, wait: float = 0.0) -> Job:
        """The job, if the caller may see it; with ``wait`` (seconds), once it is terminal or the
        wait is over (the metadata service's long-poll).

        Raises:
            JobNotFound: a malformed id, no such job, or another key's job (all 404 alike).
            JobStoreUnavailable: the metadata service cannot be reached (503).
        """
        if not is_valid_job_id(job_id):
            raise JobNotFound("Job not found.")
        principal = caller()
        if principal is OPEN:  # every job is everyone's: one read, waiting or not
            return self.metadata.get_job(job_id, wait=wait) if wait else self.metadata.get_job(job_id)
        job = self.metadata.get_job(job_id)
        if not principal.may_see(job.owner):
            raise JobNotFound("Job not found.")
        if wait and not job.status.is_terminal:  # seen to be the caller's before it is waited on
            job = self.metadata.get_job(job_id, wait=wait)
        return job

    def check(self, job_id: str) -> None:
        """Pass if the caller may act on the job (cancel, retry); open mode asks nothing.

        Raises:
            JobNotFound: as :meth:`get`.
        """
        if caller() is not OPEN:
            self.get(job_id)

"""Client of the metadata service's internal HTTP API (used by upload and gateway).

    POST   /jobs            create a queued job (body: a Job)      → 201 Job
    GET    /jobs/<id>       read a job                             → 200 Job | 404
           ?wait=<seconds>  ... answering as soon as it is terminal (a long-poll)
    DELETE /jobs/<id>       forget a job (upload rollback)         → 204
    POST   /jobs/<id>/events  apply a JobEvent (a retry)          → 200 Job, X-Siphon-Applied | 404

requests' exceptions stop here: a dead or failing metadata service raises
:class:`~shared.errors.JobStoreUnavailable`, an unknown job :class:`~shared.errors.JobNotFound`.
"""

from __future__ import annotations

import requests

from shared.errors import JobNotFound, JobStoreUnavailable, SiphonError
from shared.jobs import Job
from shared.messages import JobEvent


class MetadataClient:
    """Talks to ``METADATA_URL`` with a pooled session and a timeout of ``timeout`` seconds."""

    def __init__(self, base_url: str, timeout: float):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()

    def _request(self, method: str, path: str, timeout: float | tuple[float, float] | None = None,
                 **kwargs) -> requests.Response:
        try:
            response = self.session.request(method, self.base_url + path, timeout=timeout or self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise JobStoreUnavailable(f"metadata service unreachable: {exc.__class__.__name__}") from exc
        if response.status_code == 404:
            raise JobNotFound("Job not found.")
        if response.status_code >= 500:
            raise JobStoreUnavailable(f"metadata service answered {response.status_code}")
        if response.status_code >= 400:
            raise _remote_error(response)
        return response

    def create_job(self, job: Job) -> None:
        """Store a new ``queued`` job."""
        self._request("POST", "/jobs", data=job.model_dump_json(), headers={"Content-Type": "application/json"})

    def get_job(self, job_id: str, wait: float = 0.0) -> Job:
        """The job with ``job_id``; raises :class:`JobNotFound` if there is none.

        With ``wait`` above 0, answers as soon as the job is completed or failed, or after ``wait``
        seconds with the job as it is then (the metadata service blocks; nothing polls).
        """
        if wait <= 0:
            return Job.model_validate_json(self._request("GET", f"/jobs/{job_id}").content)
        response = self._request("GET", f"/jobs/{job_id}", params={"wait": f"{wait:g}"},
                                 timeout=(self.timeout, self.timeout + wait))
        return Job.model_validate_json(response.content)

    def apply_event(self, event: JobEvent) -> Job | None:
        """Apply ``event`` to its job; return the changed job, or None when it changed nothing."""
        response = self._request("POST", f"/jobs/{event.job_id}/events", data=event.encode(),
                                 headers={"Content-Type": "application/json"})
        return Job.model_validate_json(response.content) if response.headers.get("X-Siphon-Applied") == "true" else None

    def delete_job(self, job_id: str) -> None:
        """Forget a job (its record, not its files); absent jobs are not an error."""
        try:
            self._request("DELETE", f"/jobs/{job_id}")
        except JobNotFound:
            pass


def _remote_error(response: requests.Response) -> SiphonError:
    """The metadata service's JSON error (``{"error": {"code", "message"}}``) as a :class:`SiphonError`."""
    try:
        error = response.json()["error"]
        return SiphonError(str(error["message"]), code=str(error["code"]), status=response.status_code)
    except (ValueError, KeyError, TypeError):
        return SiphonError(f"metadata service answered {response.status_code}", code="metadata_error",
                           status=response.status_code)

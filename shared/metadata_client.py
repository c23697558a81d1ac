"""Client of the metadata service's internal HTTP API (used by upload and gateway).

    POST   /jobs            create a queued job (body: a Job)      → 201 Job
    GET    /jobs/<id>       read a job                             → 200 Job | 404
    DELETE /jobs/<id>       forget a job (upload rollback)         → 204

requests' exceptions stop here: a dead or failing metadata service raises
:class:`~shared.errors.JobStoreUnavailable`, an unknown job :class:`~shared.errors.JobNotFound`.
"""

from __future__ import annotations

import requests

from shared.errors import JobNotFound, JobStoreUnavailable
from shared.jobs import Job


class MetadataClient:
    """Talks to ``METADATA_URL`` with a pooled session and a timeout of ``timeout`` seconds."""

    def __init__(self, base_url: str, timeout: float):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()

    def _request(self, method: str, path: str, **kwargs) -> requests.Response:
        try:
            response = self.session.request(method, self.base_url + path, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise JobStoreUnavailable(f"metadata service unreachable: {exc.__class__.__name__}") from exc
        if response.status_code == 404:
            raise JobNotFound("Job not found.")
        if response.status_code >= 500:
            raise JobStoreUnavailable(f"metadata service answered {response.status_code}")
        response.raise_for_status()
        return response

    def create_job(self, job: Job) -> None:
        """Store a new ``queued`` job."""
        self._request("POST", "/jobs", data=job.model_dump_json(), headers={"Content-Type": "application/json"})

    def get_job(self, job_id: str) -> Job:
        """The job with ``job_id``; raises :class:`JobNotFound` if there is none."""
        return Job.model_validate_json(self._request("GET", f"/jobs/{job_id}").content)

    def delete_job(self, job_id: str) -> None:
        """Forget a job (its record, not its files); absent jobs are not an error."""
        try:
            self._request("DELETE", f"/jobs/{job_id}")
        except JobNotFound:
            pass

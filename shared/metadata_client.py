"""Client of the metadata service's internal HTTP API (used by upload and gateway).

    POST   /jobs            create a queued job (body: a NewJob)   → 201 Job (maybe completed: cached)
    GET    /jobs            ?status=&limit=&cursor=: newest first  → 200 {"jobs": [Job], "next_cursor"}
    GET    /jobs/<id>       read a job                             → 200 Job | 404
           ?wait=<seconds>  ... answering as soon as it is terminal (a long-poll)
    DELETE /jobs/<id>       forget a job (upload rollback)         → 204
    POST   /jobs/<id>/events  apply a JobEvent (a retry)          → 200 Job, X-Siphon-Applied | 404
    POST   /jobs/<id>/cancel  cancel a live job, delete its media  → 200 Job (cancelled, or as it
                              was when already finished) | 404
    GET    /unfinished      ?subject=[&limit=]: a caller's queued and processing jobs → 200 {"subject", "count"}

urllib3's exceptions stop here: a dead or failing metadata service raises
:class:`~shared.errors.JobStoreUnavailable`, an unknown job :class:`~shared.errors.JobNotFound`.
"""

from __future__ import annotations

from urllib.parse import urlencode

import urllib3

from shared.errors import JobNotFound, JobStoreUnavailable, SiphonError
from shared.jobs import Job
from shared.messages import JobEvent

POOL_CONNECTIONS = 1000
"""Keep-alive connections kept per process: one per request the gateway's gevent worker serves at
once (``WEB_CONNECTIONS``' default), since each may be a long-poll holding its connection. They are
opened as needed; past this many, a connection is closed after its call (urllib3 logs a warning)."""


class MetadataClient:
    """Talks to ``METADATA_URL`` over pooled keep-alive connections, with a timeout of ``timeout``
    seconds. urllib3 rather than requests: /status makes one call per request, and requests' own
    layers cost about 0.3 ms of CPU per call, a third of the gateway's work (docs/performance.md)."""

    def __init__(self, base_url: str, timeout: float):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        # One host, so one connection pool, asked directly: PoolManager would parse the URL and look
        # the pool up again on every call (a third of the client's CPU per /status).
        self.pool = urllib3.connection_from_url(self.base_url, maxsize=POOL_CONNECTIONS, retries=False)
        self._prefix = urllib3.util.parse_url(self.base_url).path or ""
        self._timeout = urllib3.Timeout(connect=timeout, read=timeout)

    def _request(
        self,
        method: str,
        path: str,
        data: bytes | str | None = None,
        headers: dict | None = None,
        params: dict | None = None,
        wait: float = 0.0,
    ) -> urllib3.BaseHTTPResponse:
        """Send one request; ``wait`` seconds are added to the read timeout (a long-poll)."""
        timeout = urllib3.Timeout(connect=self.timeout, read=self.timeout + wait) if wait else self._timeout
        url = self._prefix + path + (f"?{urlencode(params)}" if params else "")
        try:
            response = self.pool.urlopen(method, url, body=data, headers=headers, timeout=timeout)
        except urllib3.exceptions.HTTPError as exc:
            raise JobStoreUnavailable(f"metadata service unreachable: {exc.__class__.__name__}") from exc
        if response.status == 404:
            raise JobNotFound("Job not found.")
        if response.status >= 500:
            raise JobStoreUnavailable(f"metadata service answered {response.status}")
        if response.status >= 400:
            raise _remote_error(response)
        return response

    def create_job(self, job: Job) -> Job:
        """Store a new job: a :class:`~shared.job_requests.NewJob` with the facts only the metadata
        service acts on (who to notify, the content hash, the quota subject), or a plain
        :class:`Job` without them. Return it as stored (a ``queued`` upload identical to an earlier
        one comes back ``completed`` from the output cache, ``cached: true``).

        Raises:
            SiphonError: the metadata service refused the job (its 4xx code and status).
            JobStoreUnavailable: the metadata service is down or failing.
        """
        response = self._request(
            "POST", "/jobs", data=job.model_dump_json(), headers={"Content-Type": "application/json"}
        )
        return Job.model_validate_json(response.data)

    def list_jobs(
        self, status: str | None = None, limit: int | None = None, cursor: str | None = None, owner: str | None = None
    ) -> dict:
        """A page of jobs, newest first: ``{"jobs": [Job JSON, ...], "next_cursor": str | None}``;
        only ``owner``'s (a key name) when given.

        Raises:
            SiphonError: 400 ``invalid_status``, ``invalid_limit``, ``invalid_cursor`` or ``invalid_owner``.
        """
        given = (("status", status), ("limit", limit), ("cursor", cursor), ("owner", owner))
        params = {k: v for k, v in given if v not in (None, "")}
        return self._request("GET", "/jobs", params=params).json()

    def get_job(self, job_id: str, wait: float = 0.0) -> Job:
        """The job with ``job_id``; raises :class:`JobNotFound` if there is none.

        With ``wait`` above 0, answers as soon as the job is completed or failed, or after ``wait``
        seconds with the job as it is then (the metadata service blocks; nothing polls).
        """
        if wait <= 0:
            return Job.model_validate_json(self._request("GET", f"/jobs/{job_id}").data)
        response = self._request("GET", f"/jobs/{job_id}", params={"wait": f"{wait:g}"}, wait=wait)
        return Job.model_validate_json(response.data)

    def apply_event(self, event: JobEvent) -> Job | None:
        """Apply ``event`` to its job; return the changed job, or None when it changed nothing."""
        response = self._request(
            "POST", f"/jobs/{event.job_id}/events", data=event.encode(), headers={"Content-Type": "application/json"}
        )
        return Job.model_validate_json(response.data) if response.headers.get("X-Siphon-Applied") == "true" else None

    def cancel_job(self, job_id: str) -> Job:
        """Cancel the job: ``cancelled`` with its media deleted and every worker told, or, when it had
        already completed or failed, the job as it is (the caller tells the two apart by status)."""
        return Job.model_validate_json(self._request("POST", f"/jobs/{job_id}/cancel").data)

    def count_unfinished(self, subject: str, limit: int | None = None) -> int:
        """How many jobs of quota subject ``subject`` (``key:<name>``, ``addr:<ip>``) are queued or
        processing. With a ``limit`` (≥ 1), only whether the count reaches it is exact: a count
        under it may be too high, but stays under it (the metadata service then skips reading
        every job's record)."""
        params = {"subject": subject} if limit is None else {"subject": subject, "limit": str(limit)}
        return int(self._request("GET", "/unfinished", params=params).json()["count"])

    def delete_job(self, job_id: str) -> None:
        """Forget a job (its record, not its files); absent jobs are not an error."""
        try:
            self._request("DELETE", f"/jobs/{job_id}")
        except JobNotFound:
            pass


def _remote_error(response: urllib3.BaseHTTPResponse) -> SiphonError:
    """The metadata service's JSON error (``{"error": {"code", "message"}}``) as a :class:`SiphonError`."""
    try:
        error = response.json()["error"]
        return SiphonError(str(error["message"]), code=str(error["code"]), status=response.status)
    except (ValueError, KeyError, TypeError):
        return SiphonError(
            f"metadata service answered {response.status}", code="metadata_error", status=response.status
        )

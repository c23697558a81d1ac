"""A job's state and its controls: ``GET /status/<id>`` (long-poll with ``?wait=``), ``GET /jobs``,
``DELETE /jobs/<id>`` and ``POST /cancel/<id>``, ``POST /jobs/<id>/retry``.

Every route reads jobs for its caller (``access.py``): another key's job is answered as unknown.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from services.gateway.access import caller
from services.gateway.bootstrap import parts
from services.gateway.status_cache import StatusAnswer, answer_key, etag_matches
from services.gateway.submissions import authorization, upload_answer
from services.gateway.views import not_found_body, status_body
from shared.errors import JobAlreadyFinished, JobNotFound, RequestRejected
from shared.job_views import job_summary
from shared.jobs import Job, JobStatus, is_valid_job_id

MAX_STATUS_WAIT_SECONDS = 30.0
"""Longest ``GET /status/<id>?wait=`` long-poll, seconds; a larger ``wait`` is cut to this."""

jobs = Blueprint("jobs", __name__)


@jobs.get("/status/<path:job_id>")
def status(job_id: str):
    """The job's status body with an ``ETag``; ``304`` when ``If-None-Match`` names it. A final
    answer comes from this process's :class:`~services.gateway.status_cache.StatusCache` while it
    is fresh (its owner checked as for a fresh read); any other is read from the metadata service.
    Most asks never get here: ``status_reads.py`` answers them in front of Flask, from that cache
    or the job's record in Redis."""
    wait = status_wait_seconds(request.args.get("wait"))
    gateway = parts()
    key = answer_key(request.environ, job_id)
    answer = gateway.status.cache.get(key)
    if answer is not None and not caller().may_see(answer.owner):
        return jsonify(not_found_body(job_id)), 404
    if answer is None:
        try:
            job = gateway.jobs.get(job_id, wait)
        except JobNotFound:
            return jsonify(not_found_body(job_id)), 404
        answer = gateway.status.cache.answer(job, key, status_body(job, request.host_url, gateway.links))
    return status_response(answer)


def status_response(answer: StatusAnswer) -> Response:
    """``answer`` as 200 JSON, or as ``304 Not Modified`` without a body when the request's
    ``If-None-Match`` lists its ETag (RFC 9110 §13.1.2: weak comparison, ``*`` matches).
    ``Cache-Control: no-cache`` makes every cache revalidate (RFC 9111 §5.2.2.4)."""
    headers = {"ETag": answer.etag, "Cache-Control": "no-cache"}
    if etag_matches(request.headers.get("If-None-Match"), answer.etag):
        return Response(status=304, headers=headers)
    return Response(answer.body, status=200, mimetype="application/json", headers=headers)


@jobs.get("/jobs")
def list_jobs():
    for name in ("status", "limit", "cursor"):
        if request.args.get(name) == "":
            raise RequestRejected(f"'{name}' is empty; leave it out instead.", code=f"invalid_{name}")
    gateway = parts()
    page = gateway.metadata.list_jobs(
        request.args.get("status"), request.args.get("limit"), request.args.get("cursor"), visible_owner()
    )
    listed = [job_summary(Job.model_validate(job), request.host_url, gateway.links) for job in page["jobs"]]
    return jsonify(jobs=listed, next_cursor=page["next_cursor"])


@jobs.delete("/jobs/<job_id>")  # not <path:>: that would also claim /jobs/<id>/retry for DELETE
@jobs.post("/cancel/<path:job_id>")
def cancel(job_id: str):
    gateway = parts()
    try:
        gateway.jobs.check(job_id)
        job = gateway.metadata.cancel_job(job_id) if is_valid_job_id(job_id) else None
    except JobNotFound:
        job = None
    if job is None:
        return jsonify(not_found_body(job_id)), 404
    if job.status is not JobStatus.CANCELLED:
        raise JobAlreadyFinished(f"The job is {job.status.value}; it can no longer be cancelled.")
    return jsonify(status_body(job, request.host_url, gateway.links))


@jobs.post("/jobs/<path:job_id>/retry")
def retry(job_id: str):
    try:
        if not is_valid_job_id(job_id):
            raise JobNotFound("Job not found.")
        parts().jobs.check(job_id)
    except JobNotFound:
        return jsonify(not_found_body(job_id)), 404
    return upload_answer(parts().upload.post_json(f"/jobs/{job_id}/retry", b"{}", authorization()))


def status_wait_seconds(raw: str | None) -> float:
    """The ``wait`` query parameter in seconds: 0 when absent, at most :data:`MAX_STATUS_WAIT_SECONDS`.

    Raises:
        RequestRejected: not a finite number ≥ 0 (400 ``invalid_wait``).
    """
    if raw is None:
        return 0.0
    try:
        wait = float(raw)
    except ValueError:
        wait = -1.0
    if not 0 <= wait < float("inf"):
        raise RequestRejected("'wait' must be a number of seconds, 0 or more.", code="invalid_wait")
    return min(wait, MAX_STATUS_WAIT_SECONDS)


def visible_owner() -> str | None:
    """Whose jobs the caller lists and streams: its key's name, or None (every job) for an admin
    and in open mode."""
    principal = caller()
    return None if principal.admin else principal.name

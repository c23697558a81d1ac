"""The job records: create, list, read (or wait for the end), apply an event, cancel, forget.

POST   /jobs                  a NewJob → 201 the job as stored (completed at once from the output cache)
GET    /jobs                  ?status=&limit=&cursor=&owner= → {"jobs": [JobRecord], "next_cursor"}, newest first
GET    /jobs/<id>             ?wait=<s> answers once the job is terminal → the JobRecord
POST   /jobs/<id>/events      a JobEvent (a retry's queued, or its rollback) → the JobRecord, X-Siphon-Applied
POST   /jobs/<id>/cancel      → the JobRecord afterwards (cancelled, or completed/failed: too late)
DELETE /jobs/<id>             → 204 (an upload rolled back)
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from services.metadata.api import checked, owner_filter, parts
from services.metadata.index import page_size, status_filter
from services.metadata.records import JobRecord
from shared.errors import JobNotFound, MessageError, RequestRejected, SiphonError
from shared.jobs import JobStatus
from shared.messages import JobEvent

MAX_WAIT_SECONDS = 60.0
"""Longest ``GET /jobs/<id>?wait=`` long-poll, seconds (a greenlet of the gevent worker is held meanwhile)."""

jobs = Blueprint("jobs", __name__)


@jobs.post("/jobs")
def create_job():
    try:
        job = JobRecord.model_validate_json(request.get_data())
    except ValueError as exc:
        raise RequestRejected(f"invalid job: {exc}") from None
    outputs = parts().outputs
    job = outputs.reuse(job)  # an identical earlier upload: completed at once, from its output
    try:
        parts().store.create(job)
    except SiphonError:
        if job.cached:
            outputs.release(job)
        raise
    return Response(job.model_dump_json(), status=201, mimetype="application/json")


@jobs.get("/jobs")
def list_jobs():
    """``?status=&limit=&cursor=&owner=``: ``{"jobs": [JobRecord, ...], "next_cursor"}``, newest first
    (only ``owner``'s jobs when given)."""
    page = parts().index.page(
        status_filter(request.args.get("status")),
        page_size(request.args.get("limit")),
        request.args.get("cursor") or None,
        owner_filter(request.args.get("owner")),
    )
    listed = []
    for job_id in page.job_ids:
        try:
            listed.append(parts().store.get(job_id).model_dump(mode="json"))
        except JobNotFound:  # forgotten between the index read and now
            continue
    return jsonify(jobs=listed, next_cursor=page.next_cursor)


@jobs.get("/jobs/<job_id>")
def get_job(job_id: str):
    """``?wait=<seconds>`` (at most :data:`MAX_WAIT_SECONDS`) answers once the job is terminal."""
    wait = min(request.args.get("wait", 0.0, type=float), MAX_WAIT_SECONDS)
    store = parts().store
    if wait > 0:
        return Response(store.wait_terminal(checked(job_id), wait).model_dump_json(), mimetype="application/json")
    return Response(store.get_json(checked(job_id)), mimetype="application/json")


@jobs.post("/jobs/<job_id>/events")
def apply_event(job_id: str):
    """Apply a :class:`JobEvent` sent over HTTP (a retry's ``queued``, or its rollback);
    answers the job as it is afterwards, with ``X-Siphon-Applied: true|false``."""
    try:
        event = JobEvent.decode(request.get_data())
    except MessageError as exc:
        raise RequestRejected(exc.message) from None
    if event.job_id != checked(job_id):
        raise RequestRejected("The event names another job.")
    updated = parts().store.apply(event)
    job = updated or parts().store.get(job_id)
    return Response(
        job.model_dump_json(), mimetype="application/json", headers={"X-Siphon-Applied": "true" if updated else "false"}
    )


@jobs.post("/jobs/<job_id>/cancel")
def cancel_job(job_id: str):
    """Cancel a queued or processing job (its input and output deleted, its worker told to stop);
    answers the job afterwards: ``cancelled``, or ``completed``/``failed`` when it was too late."""
    job, _ = parts().store.cancel(checked(job_id))
    if job.status is JobStatus.CANCELLED:  # again on a repeated cancel: the first broadcast may have failed
        parts().control.cancel(job_id)
    return Response(job.model_dump_json(), mimetype="application/json")


@jobs.delete("/jobs/<job_id>")
def delete_job(job_id: str):
    parts().store.delete(checked(job_id))
    return "", 204

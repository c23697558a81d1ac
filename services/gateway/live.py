"""Live updates as Server-Sent Events, relayed from the metadata service's change feed
(``events.py``): ``GET /events`` (the caller's jobs; every job for an admin) and
``GET /events/<job_id>`` (one job, until it ends). ``Last-Event-ID`` resumes either."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from services.gateway.bootstrap import parts
from services.gateway.events import event_stream_response, sse_event
from services.gateway.jobs import visible_owner
from services.gateway.views import not_found_body
from shared.changes import Change, stream_id_key
from shared.errors import JobNotFound, RequestRejected
from shared.job_views import job_summary
from shared.jobs import is_valid_job_id
from shared.links import LinkSigner

live = Blueprint("live", __name__)


@live.get("/events")
def events():
    relay, links = parts().relay, parts().links
    last_id = last_event_id(request.headers.get("Last-Event-ID") or request.args.get("last_event_id"))
    subscription = relay.open()
    try:
        replay = relay.history(last_id) if last_id else []
    except BaseException:
        relay.close(subscription)
        raise
    host_url, owner = request.host_url, visible_owner()
    body = relay.stream(
        subscription, replay, lambda change: render_change(change, host_url, links=links, owner=owner), last_id
    )
    return event_stream_response(body, lambda: relay.close(subscription), request.environ)


@live.get("/events/<path:job_id>")
def job_events(job_id: str):
    if not is_valid_job_id(job_id):
        return jsonify(not_found_body(job_id)), 404
    relay, links = parts().relay, parts().links
    last_id = last_event_id(request.headers.get("Last-Event-ID") or request.args.get("last_event_id"))
    subscription = relay.open()  # before reading the job: no change can fall in between
    try:
        start_id = relay.latest_id()
        job = parts().jobs.get(job_id)
        if last_id:
            replay = [change for change in relay.history(last_id) if change.job_id == job_id]
            if not replay and job.status.is_terminal:  # it ended and the client saw it: stop reconnecting
                relay.close(subscription)
                return Response(status=204)
        else:  # start with the job as it is, under the newest change's id
            replay = [Change(start_id or "", "job", job_id, job.model_dump_json())]
    except JobNotFound:
        relay.close(subscription)
        return jsonify(not_found_body(job_id)), 404
    except BaseException:
        relay.close(subscription)
        raise
    host_url = request.host_url
    body = relay.stream(
        subscription,
        replay,
        lambda change: render_change(change, host_url, job_id, links),
        last_id,
        ends=lambda change: change.job_id == job_id and ends_job_stream(change),
    )
    return event_stream_response(body, lambda: relay.close(subscription), request.environ)


def last_event_id(raw: str | None) -> str | None:
    """The ``Last-Event-ID`` a reconnecting client sent (a change feed id), or None.

    Raises:
        RequestRejected: it is not one this server sends (400 ``invalid_last_event_id``).
    """
    if not raw:
        return None
    if stream_id_key(raw) is None:
        raise RequestRejected("'Last-Event-ID' is not an event id this server sent.", code="invalid_last_event_id")
    return raw.strip()


def render_change(
    change: Change, host_url: str, job_id: str | None = None, links: LinkSigner | None = None, owner: str | None = None
) -> str | None:
    """A change as an SSE event (``job``: the job's summary; ``deleted``: its id), or None when
    the stream is about another job, or (``owner`` given: a caller who is no admin) another
    owner's; such a caller is not told of deletions (a rolled-back upload, whose id no client got)."""
    if job_id is not None and change.job_id != job_id:
        return None
    if change.kind == "deleted":
        return sse_event(change.id, "deleted", {"job_id": change.job_id}) if owner is None else None
    job = change.job
    if owner is not None and job.owner != owner:
        return None
    return sse_event(change.id or None, "job", job_summary(job, host_url, links))


def ends_job_stream(change: Change) -> bool:
    """Whether ``/events/<job_id>`` ends after this change: the job is over (or was rolled back)."""
    return change.kind == "deleted" or change.job.status.is_terminal

"""Following a job until it ends, as a stream of its bodies (``status``, ``progress``, ``error``,
``download_url``: the fields ``GET /status`` and the job summaries of ``GET /events`` share).

:func:`stream_or_poll` listens to the job's Server-Sent Events (``GET /events/<job_id>``, the
WHATWG HTML "server-sent events" format) and falls back to polling ``GET /status`` when the server
has no stream or the stream breaks off.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import requests

from siphon_cli.api import CliError, SiphonClient

TERMINAL_STATES = frozenset({"completed", "failed", "cancelled", "expired"})
"""States a job never leaves."""

POLL_INTERVAL_SECONDS = 0.5
"""Pause between two ``GET /status`` calls, seconds."""

Follower = Callable[[SiphonClient, str], Iterator[dict]]
"""Yields a job's status bodies (at least every few seconds, so timeouts are seen); the last is terminal."""


class FollowTimeout(CliError):
    exit_code = 5


def poll_status(client: SiphonClient, job_id: str, interval: float = POLL_INTERVAL_SECONDS) -> Iterator[dict]:
    """Yield the status body every ``interval`` seconds until the job ends."""
    while True:
        body = client.status(job_id)
        yield body
        if body.get("status") in TERMINAL_STATES:
            return
        time.sleep(interval)


def sse_job_bodies(response: requests.Response) -> Iterator[dict | None]:
    """The ``job`` events of an SSE response as dicts; None for each keep-alive comment (so the
    caller can check its own deadline while the job is quiet). Ends when the server ends the stream."""
    event, data = "message", []
    for line in response.iter_lines(decode_unicode=True):
        if line == "":  # a blank line dispatches the event
            if event == "job" and data:
                yield json.loads("\n".join(data))
            event, data = "message", []
        elif line.startswith(":"):
            yield None
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)


def stream_or_poll(client: SiphonClient, job_id: str) -> Iterator[dict]:
    """The job's bodies from its event stream; by polling when there is none or it breaks off."""
    last: dict | None = None
    try:
        response = client.job_events(job_id)
        if response is not None:
            with response:
                for body in sse_job_bodies(response):
                    if body is None:
                        if last is not None:
                            yield last  # a keep-alive: the same state again, for the deadline check
                        continue
                    last = body
                    yield body
                    if body.get("status") in TERMINAL_STATES:
                        return
    except (requests.RequestException, ValueError):
        pass  # a broken stream: polling picks up where it stopped
    yield from poll_status(client, job_id)


def follow_job(
    client: SiphonClient, job_id: str, timeout: float, follower: Follower = stream_or_poll
) -> Iterator[dict]:
    """The job's status bodies until it ends.

    Raises:
        FollowTimeout: the job had not ended after ``timeout`` seconds (it goes on on the server).
    """
    deadline = time.monotonic() + timeout
    for body in follower(client, job_id):
        yield body
        if body.get("status") not in TERMINAL_STATES and time.monotonic() > deadline:
            raise FollowTimeout(
                f"Job {job_id} had not finished after {timeout:g} s; it goes on on the server (siphon status {job_id})."
            )

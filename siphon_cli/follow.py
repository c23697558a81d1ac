"""Following a job until it ends, as a stream of its status bodies (the JSON of ``GET /status``).

The server offers only polling today. When it streams job changes (Server-Sent Events on
``GET /events/<job_id>``), add a follower here that yields the same bodies and let
:func:`follow_job` prefer it; the commands and the progress bars stay as they are.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

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


def follow_job(client: SiphonClient, job_id: str, timeout: float, follower: Follower = poll_status) -> Iterator[dict]:
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

"""The job change feed: every change of a job record, as the metadata service publishes it and the
gateway relays it to Server-Sent Events clients.

    <REDIS_PREFIX>changes  (stream)   one entry per change, capped at EVENTS_HISTORY entries
                                      (XADD MAXLEN ~); fields ``kind``, ``job_id``, ``data``. The
                                      entry id (``1712345678901-0``) is the SSE event id, so a client
                                      reconnecting with ``Last-Event-ID`` is replayed what it missed.
    <REDIS_PREFIX>changes  (channel)  the same entries live: ``<id>\\n<kind>\\n<job_id>\\n<data>``.

``kind`` is ``job`` (``data``: the job record's JSON, a :class:`~shared.jobs.Job`) or ``deleted``
(an upload rolled back; ``data`` is empty). The metadata service writes the entry and the message
in one Lua script inside the transition's MULTI/EXEC, so a change is in both or in neither
(``services/metadata/feed.py``); the gateway reads (``services/gateway/events.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.jobs import Job

STREAM_ID = re.compile(r"^([0-9]{1,20})(?:-([0-9]{1,20}))?$")
"""A stream id ``<milliseconds>-<sequence>``; like Redis, ``<milliseconds>`` alone means sequence 0."""


def changes_key(prefix: str) -> str:
    """The stream's key, and the channel's name (Redis keeps the two namespaces apart)."""
    return f"{prefix}changes"


@dataclass(frozen=True)
class Change:
    """One change: its stream ``id``, ``kind`` (``job`` or ``deleted``) and the job it concerns."""

    id: str
    kind: str
    job_id: str
    data: str

    @property
    def job(self) -> Job | None:
        """The job record after the change (None for ``deleted``)."""
        return Job.model_validate_json(self.data) if self.kind == "job" else None

    @classmethod
    def from_message(cls, message: bytes | str) -> Change:
        """A change from a pub/sub message ``<id>\\n<kind>\\n<job_id>\\n<data>``."""
        text = message.decode() if isinstance(message, bytes) else message
        change_id, kind, job_id, data = text.split("\n", 3)
        return cls(change_id, kind, job_id, data)

    @classmethod
    def from_entry(cls, entry_id: bytes | str, fields: dict) -> Change:
        """A change from a stream entry as redis-py returns it (``XRANGE``/``XREAD``)."""

        def text(value) -> str:
            return value.decode() if isinstance(value, bytes) else str(value)

        values = {text(k): text(v) for k, v in fields.items()}
        return cls(text(entry_id), values.get("kind", ""), values.get("job_id", ""), values.get("data", ""))


def stream_id_key(change_id: str) -> tuple[int, int] | None:
    """``(milliseconds, sequence)`` of a stream id, for ordering; None if it is not one."""
    match = STREAM_ID.fullmatch(change_id.strip())
    return (int(match[1]), int(match[2] or 0)) if match else None

"""The job change feed: siphon's one mechanism by which job changes reach their readers. The
metadata service, the only writer of job records, appends every change here; every other process
that follows jobs reads it (the gateway's ``GET /events``, the queue intake's ``transcoding_progress``
follower). This docstring is the feed's contract, and these two keys are the only Redis keys of the
metadata service that another service may read.

    <REDIS_PREFIX>changes  (stream)   one entry per change, in the order the changes were made,
                                      capped at ``EVENTS_HISTORY`` entries (``XADD MAXLEN ~``: Redis
                                      keeps at least that many, trimming whole nodes). Fields:
                                        ``kind``    ``job`` or ``deleted``
                                        ``job_id``  32 hex digits
                                        ``data``    for ``job``, the job record after the change
                                                    (:class:`~shared.jobs.Job` as JSON); empty for
                                                    ``deleted`` (an upload rolled back)
                                        ``before``  the job's ``status`` before the change; empty
                                                    when the change created the record (and for
                                                    ``deleted``). Absent from entries written
                                                    before it was added (read as unknown).
                                      The entry id (``1712345678901-0``, milliseconds-sequence) orders
                                      the feed; it is the SSE event id, so a client reconnecting with
                                      ``Last-Event-ID`` is replayed what it missed.
    <REDIS_PREFIX>changes  (channel)  the same entries live: ``<id>\\n<kind>\\n<job_id>\\n<data>``
                                      (without ``before``).

Rules for readers:

* Read-only. Only the metadata service writes entries, in one Lua script inside the transaction
  that writes the record (``services/metadata/feed.py``), so a change is in the feed if and only if
  it was stored. A reader may create a consumer group on the stream (``XGROUP CREATE ... MKSTREAM``)
  and acknowledge its entries (``XACK``), which changes no entry; it never adds, edits or deletes one.
* Entries are kept while they are among the newest ``EVENTS_HISTORY``; a reader further behind than
  that loses the oldest (a consumer group then reads them as entries without fields: skip them).
* Delivery to a consumer group is at least once: an entry read but not acknowledged (its reader
  died) is read again, so a reader's effects should be idempotent or harmless when repeated.

Why the feed rather than the AMQP job events: the events are what the workers *report*, before the
state machine (``Job.apply``) has judged them; a reader of events needs its own copy of that state
machine, and HTTP lookups for what an event does not carry (the storage keys, the retry), to tell
news from a late or repeated event. The feed carries only changes that happened, in their order,
with the whole record; it can be replayed, and metadata already writes it.

The consumer groups are ``progress`` (the queue intake, ``services/upload/progress.py``).
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
    """One change: its stream ``id``, ``kind`` (``job`` or ``deleted``), the job it concerns, the
    record after it (``data``) and the status before it (``before``: ``""`` for a new record, None
    when not known: pub/sub messages and entries written before the field existed)."""

    id: str
    kind: str
    job_id: str
    data: str
    before: str | None = None

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
        """A change from a stream entry as redis-py returns it (``XRANGE``, ``XREAD``, ``XREADGROUP``);
        an entry trimmed while pending in a consumer group comes without fields: its ``kind`` is ``""``."""

        def text(value) -> str:
            return value.decode() if isinstance(value, bytes) else str(value)

        values = {text(k): text(v) for k, v in (fields or {}).items()}
        return cls(
            text(entry_id),
            values.get("kind", ""),
            values.get("job_id", ""),
            values.get("data", ""),
            values.get("before"),
        )


def stream_id_key(change_id: str) -> tuple[int, int] | None:
    """``(milliseconds, sequence)`` of a stream id, for ordering; None if it is not one."""
    match = STREAM_ID.fullmatch(change_id.strip())
    return (int(match[1]), int(match[2] or 0)) if match else None

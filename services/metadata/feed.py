"""Publishing every change of a job record to the change feed (``shared/changes.py``, which is its
contract): one stream entry (capped at ``EVENTS_HISTORY``) and one pub/sub message, written by one
Lua script queued in the write's own MULTI, so the feed never tells of a change that did not happen,
nor misses one."""

from __future__ import annotations

from shared.changes import changes_key
from shared.jobs import Job

PUBLISH_CHANGE = """
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*',
    'kind', ARGV[2], 'job_id', ARGV[3], 'data', ARGV[4], 'before', ARGV[5])
redis.call('PUBLISH', KEYS[1], id .. '\\n' .. ARGV[2] .. '\\n' .. ARGV[3] .. '\\n' .. ARGV[4])
return id
"""
"""KEYS[1] the stream (and channel); ARGV: max length, kind, job id, data, status before ("" if
none). Returns the entry id. The channel's message leaves ``before`` out (its format predates it)."""


class ChangeFeed:
    """A :class:`~services.metadata.store.RecordObserver` that publishes each job record written."""

    def __init__(self, prefix: str, history: int):
        self.key = changes_key(prefix)
        self.history = history

    def prepare(self, before: Job | None, after: Job) -> None:
        pass

    def within(self, pipe, before: Job | None, after: Job) -> None:
        """Queue the change's entry: the record ``after`` it, and ``before``'s status (``""`` for a new record)."""
        status_before = before.status.value if before is not None else ""
        pipe.eval(
            PUBLISH_CHANGE, 1, self.key, self.history, "job", after.job_id, after.model_dump_json(), status_before
        )

    def forgotten(self, pipe, job_id: str) -> None:
        """Queue a ``deleted`` entry: the record is gone (an upload rolled back)."""
        pipe.eval(PUBLISH_CHANGE, 1, self.key, self.history, "deleted", job_id, "", "")

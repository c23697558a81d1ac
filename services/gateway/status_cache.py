"""``GET /status`` answers of finished jobs, kept for a moment in the gateway process that gave them.

A poller asks for the same job again and again; once the job is finished its answer no longer
changes, yet each ask crossed gateway → metadata → Redis (about 1.2 ms of CPU per request,
docs/performance.md). This cache keeps the rendered answer (the JSON bytes and their ETag) of a job
whose status is final, per gateway worker process, for :data:`STATUS_CACHE_SECONDS`:

* **Only final answers.** ``completed``, ``cancelled``, ``expired``, and ``failed`` with a code no
  retry may cure (``Job.is_retryable``: a retryable failure can become ``queued`` again). A
  ``queued`` or ``processing`` job is always read afresh, so its answer never goes backwards and
  a job never reads ``completed`` before the metadata service says so (which it does only once the
  output is stored, hence downloadable).
* **Not past the output's life.** A ``completed`` job turns ``expired`` ``OUTPUT_TTL`` seconds after
  it finished; an answer whose job expires within the cache's lifetime is not kept, so a cached
  ``completed`` never outlives its download.
* **Owner checked on every hit.** The entry carries the job's owner; a caller whose key may not
  see it gets the same 404 as for an unknown job (``shared/auth.py``, ``Principal.may_see``).
* **Per host URL.** The body's ``download_url`` is built from the request's host URL, so entries
  are keyed by job id and the WSGI environ fields that URL comes from (:func:`answer_key`). A
  signed link in a cached body is at most :data:`STATUS_CACHE_SECONDS` older than a fresh one
  (links live for hours).

A hit is served in front of Flask (``status_reads.py``); an answer read afresh, from Redis there
or from the metadata service by Flask's ``GET /status`` route, fills the cache.

ETags (RFC 9110 §8.8.3, strong validators over the body bytes) let a poller send
``If-None-Match`` and get ``304 Not Modified`` without a body (RFC 9110 §13.1.2, §15.4.5).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass

from shared.jobs import Job, JobStatus

STATUS_CACHE_SECONDS = 2.0
"""How long a final answer is served from a gateway process's memory, seconds. It bounds how
stale a cached answer can be after an operator's change behind the API (a deleted record)."""

STATUS_CACHE_ENTRIES = 10_000
"""Most answers one gateway process keeps (a few hundred bytes each); past it the cache is emptied."""

FINAL = frozenset({JobStatus.COMPLETED, JobStatus.CANCELLED, JobStatus.EXPIRED, JobStatus.FAILED})


@dataclass(frozen=True)
class StatusAnswer:
    """One rendered ``GET /status`` answer: the JSON ``body`` (bytes), its ``etag`` (a quoted
    strong validator, RFC 9110 §8.8.3), the job's ``owner`` (None: no key owns it) and the
    ``time.monotonic()`` second until which it may be served from the cache."""

    body: bytes
    etag: str
    owner: str | None
    until: float


AnswerKey = tuple[str, str, str, str]
"""``(job_id, wsgi.url_scheme, Host, SCRIPT_NAME)``: what a status answer's bytes depend on."""


def answer_key(environ: dict, job_id: str) -> AnswerKey:
    """The cache key of ``job_id``'s answer to a request with WSGI ``environ`` (PEP 3333): the job
    and the fields the request's host URL is built from."""
    host = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME', '')}:{environ.get('SERVER_PORT', '')}"
    return job_id, environ.get("wsgi.url_scheme", "http"), host, environ.get("SCRIPT_NAME", "")


_COMPACT_SORTED = json.JSONEncoder(separators=(",", ":"), sort_keys=True)
"""Made once: ``json.dumps`` makes a new encoder on every call that sets an option."""


def render_status(body: dict) -> bytes:
    """``body`` as the compact JSON Flask's ``jsonify`` writes (keys sorted, trailing newline), bytes."""
    return _COMPACT_SORTED.encode(body).encode() + b"\n"


def etag_of(body: bytes) -> str:
    """A strong ETag of ``body``: 16 hex digits of its BLAKE2b digest, quoted (RFC 9110 §8.8.3)."""
    return '"' + hashlib.blake2b(body, digest_size=8).hexdigest() + '"'


class StatusCache:
    """Final ``/status`` answers by :func:`answer_key` for :data:`STATUS_CACHE_SECONDS`.

    Args:
        output_ttl: ``OUTPUT_TTL``, seconds an output stays downloadable after its job finished.
        seconds: how long an answer is kept (0 turns the cache off: :meth:`answer` keeps nothing).
        entries: the most answers kept.
    """

    def __init__(self, output_ttl: float, seconds: float = STATUS_CACHE_SECONDS, entries: int = STATUS_CACHE_ENTRIES):
        self.output_ttl = output_ttl
        self.seconds = seconds
        self.entries = entries
        self._answers: dict[AnswerKey, StatusAnswer] = {}

    def get(self, key: AnswerKey) -> StatusAnswer | None:
        """The kept answer under ``key`` (:func:`answer_key`) while it is fresh, else None."""
        answer = self._answers.get(key)
        if answer is None:
            return None
        if answer.until <= time.monotonic():
            self._answers.pop(key, None)
            return None
        return answer

    def answer(self, job: Job, key: AnswerKey, body: dict) -> StatusAnswer:
        """``body`` (the status of ``job`` for the request ``key`` names) rendered, and kept when
        :meth:`cacheable` says its job can no longer change within the cache's lifetime."""
        rendered = render_status(body)
        now = time.monotonic()
        answer = StatusAnswer(rendered, etag_of(rendered), job.owner, now + self.seconds)
        if self.cacheable(job):
            if len(self._answers) >= self.entries:
                self._answers.clear()
            self._answers[key] = answer
        return answer

    def cacheable(self, job: Job) -> bool:
        """Whether ``job``'s status is final and stays so for :attr:`seconds`: not queued or
        processing, not a retryable failure, not a completed job whose output expires that soon."""
        if self.seconds <= 0 or job.status not in FINAL or job.is_retryable:
            return False
        if job.status is JobStatus.COMPLETED:
            finished = job.finished_at if job.finished_at is not None else job.created_at
            return finished + self.output_ttl - time.time() > self.seconds
        return True


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header value lists ``etag`` (weak comparison: a ``W/`` prefix is
    ignored) or is ``*`` (RFC 9110 §13.1.2)."""
    if not if_none_match:
        return False
    for tag in if_none_match.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False

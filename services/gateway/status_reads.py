"""``GET /status`` without the metadata service on the way, when it can be answered so.

Each ask used to cross gateway → metadata → Redis (about 1.8 ms of CPU across the two services
for a job still running, docs/performance.md). Two shortcuts, both in front of Flask
(:class:`StatusMiddleware`: routing, request context and hooks were half of a hit's CPU):

* a final answer this process gave a moment ago (``status_cache.py``);
* else the job's record read straight from Redis (:class:`JobRecords`, one ``GET``, under the
  contract of ``shared/job_records.py``): the same bytes metadata would have answered, written only
  by metadata under ``WATCH``/``MULTI``, so the answer is as exact as metadata's.

Everything else goes to Flask's ``GET /status`` route unchanged: a long-poll ``?wait=`` (metadata
blocks until the job ends), a record missing from Redis (metadata restores it from the manifest,
or answers 404), a malformed id, an unknown or refused key (401), another key's job (404), and any
error on the way (the route answers it as JSON).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from urllib.parse import parse_qs

import redis
from redis.connection import AbstractConnection
from werkzeug.wsgi import get_current_url

from services.gateway.status_cache import AnswerKey, StatusAnswer, StatusCache, answer_key, etag_matches
from services.gateway.views import status_body
from shared.auth import Authenticator, Principal
from shared.errors import SiphonError
from shared.job_records import job_record_key
from shared.jobs import Job, is_valid_job_id
from shared.links import LinkSigner

log = logging.getLogger(__name__)

STATUS_PREFIX = "/status/"


def waits(query_string: str) -> bool:
    """Whether a query string has a ``wait`` parameter (even an empty or malformed one: the route
    answers it, or refuses it 400). Other parameters (a poller's cache-buster) change nothing."""
    return bool(query_string) and "wait" in parse_qs(query_string, keep_blank_values=True)


class JobRecords:
    """Job records read from Redis, as ``shared/job_records.py`` allows a reader: one ``GET`` of
    the primary, nothing written.

    Each ``GET`` goes over a connection this reader keeps (a last-in, first-out list; one per
    concurrent read at most, as redis-py's own pool would keep), not through the client's pool: the
    pool's checkout asks the socket whether it has unread bytes (a ``select`` each time, which under
    gevent arms and disarms a watcher) and records its observability counters, ~70 of the ~120 us
    of CPU a ``client.get`` took in-process, against ~45 us for the same ``GET`` on a held
    connection (redis-py 7.4, gevent 26). Under ``wrk -t2 -c64`` on a processing job the gateway's
    CPU per request went from ~0.70 to ~0.54 ms (medians of 5 runs alternating with the pool's
    read, on a loaded 2-core machine). A connection is never handed back with unread bytes: any
    error or interruption (a gevent timeout) while it was in use disconnects and drops it.

    The connections are the client pool's kind, made with its settings (``connection_class`` and
    ``connection_kwargs``), so a Sentinel client's find the primary through the Sentinels; one
    is kept after a read only while the pool would keep it (``owns_connection``: made in this
    process and, under Sentinel, still on the address the Sentinels last named the primary), so
    reads move to a new primary as they would through the pool. None is made before the first
    read.

    Args:
        client: a Redis client of the primary (``shared/redis_client.py``).
        prefix: ``REDIS_PREFIX``.
    """

    def __init__(self, client: redis.Redis, prefix: str):
        self.redis = client
        self.prefix = prefix
        self._idle: list[AbstractConnection] = []

    def get(self, job_id: str) -> Job | None:
        """The job as its record in Redis says, or None: no record there (the metadata service
        may restore it from the manifest), a malformed id, Redis unreachable or failing, or a
        record that does not load (all of them for the metadata service to answer)."""
        if not is_valid_job_id(job_id):
            return None
        try:
            raw = self._read(job_record_key(self.prefix, job_id))
        except redis.RedisError as exc:
            log.debug("job record not read from redis: %s", exc, extra={"job_id": job_id})
            return None
        if raw is None:
            return None
        try:
            return Job.model_validate_json(raw)
        except ValueError:
            return None

    def _read(self, key: str) -> bytes | None:
        """``GET key`` on a kept connection, else on a new one; once more on a new one when the
        kept one was closed meanwhile (Redis restarted, or dropped it as idle: what the pool's
        checkout would have noticed).

        Raises:
            redis.RedisError: connecting, sending or reading failed (the connection is dropped).
        """
        try:
            kept = self._idle.pop()  # one step, so threads (a gthread worker) cannot take the same one
        except IndexError:
            return self._get_on(self._connection(), key)
        try:
            return self._get_on(kept, key)
        except redis.ConnectionError:
            return self._get_on(self._connection(), key)

    def _get_on(self, connection: AbstractConnection, key: str) -> bytes | None:
        try:
            connection.send_command("GET", key)
            raw = connection.read_response()
        except BaseException:
            connection.disconnect()
            raise
        if self.redis.connection_pool.owns_connection(connection):
            self._idle.append(connection)
        else:
            connection.disconnect()
        return raw

    def _connection(self) -> AbstractConnection:
        pool = self.redis.connection_pool
        return pool.connection_class(**pool.connection_kwargs)


class StatusReader:
    """Answers to ``GET /status/<job_id>`` for a request's WSGI ``environ`` (PEP 3333), from the
    cache of final answers, else from the record in Redis (the answer is then kept when final).
    The caller checks the answer's ``owner``.

    Args:
        cache: this process's final answers.
        records: the records in Redis.
        links: the download link signer (None: unsigned links).
    """

    def __init__(self, cache: StatusCache, records: JobRecords, links: LinkSigner | None):
        self.cache = cache
        self.records = records
        self.links = links

    def answer(self, environ: dict, job_id: str) -> StatusAnswer | None:
        """The answer without the metadata service, or None when it takes the metadata service."""
        key = answer_key(environ, job_id)
        return self.cache.get(key) or self._read(environ, job_id, key)

    def _read(self, environ: dict, job_id: str, key: AnswerKey) -> StatusAnswer | None:
        job = self.records.get(job_id)
        if job is None:
            return None
        return self.cache.answer(job, key, status_body(job, host_url(environ), self.links))


def host_url(environ: dict) -> str:
    """``scheme://host/`` of a request, as Flask's ``request.host_url`` gives it (werkzeug's
    ``get_current_url(host_only=True)``), remembered per scheme and host: working it out (IRI
    decoding) was ~30 of the ~100 us an answer read from Redis took in-process, and pollers ask
    through the same few hosts."""
    return _host_url(
        environ.get("wsgi.url_scheme", "http"),
        environ.get("HTTP_HOST"),
        environ.get("SERVER_NAME"),
        environ.get("SERVER_PORT"),
    )


@functools.lru_cache(maxsize=64)
def _host_url(scheme: str, http_host: str | None, server_name: str | None, server_port: str | None) -> str:
    environ = {"wsgi.url_scheme": scheme, "SERVER_NAME": server_name, "SERVER_PORT": server_port}
    if http_host is not None:
        environ["HTTP_HOST"] = http_host
    return get_current_url(environ, host_only=True)


class StatusMiddleware:
    """WSGI middleware (PEP 3333) that answers ``GET /status/<id>`` (without ``wait``) with
    :class:`StatusReader`'s answer when there is one and the request's key may see the job; every
    other request goes to ``app`` unchanged (which answers 401/404 exactly as without it).

    An answer is 200 with its body, or 304 without one when ``If-None-Match`` lists its ETag;
    both carry ``ETag`` and ``Cache-Control: no-cache``, as the route's answers do.
    """

    def __init__(self, app: Callable, reader: StatusReader, auth: Authenticator):
        self.app = app
        self.reader = reader
        self.auth = auth

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if (
            environ.get("REQUEST_METHOD") == "GET"
            and path.startswith(STATUS_PREFIX)
            and not waits(environ.get("QUERY_STRING", ""))
            and (principal := self._principal(environ)) is not None
        ):
            answer = self.reader.answer(environ, path[len(STATUS_PREFIX) :])
            if answer is not None and principal.may_see(answer.owner):
                headers = [("ETag", answer.etag), ("Cache-Control", "no-cache")]
                if etag_matches(environ.get("HTTP_IF_NONE_MATCH"), answer.etag):
                    start_response("304 Not Modified", headers)
                    return []
                headers += [("Content-Type", "application/json"), ("Content-Length", str(len(answer.body)))]
                start_response("200 OK", headers)
                return [answer.body]
        return self.app(environ, start_response)

    def _principal(self, environ: dict) -> Principal | None:
        """The request's caller, or None when it has no key or a refused one (the app answers its 401)."""
        try:
            return self.auth.principal(environ.get("HTTP_AUTHORIZATION"))
        except SiphonError:
            return None

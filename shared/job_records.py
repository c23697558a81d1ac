"""The job records in Redis, as another service may read them: the contract between their one
writer, the metadata service (``services/metadata/store.py``), and its readers: the gateway's ``GET /status``
(``services/gateway/status_reads.py``) and the conversion worker's check, before a task starts,
that its job was not cancelled (``services/conversion/tasks.py``). Both read through
:class:`JobRecords`. Besides the change feed (``shared/changes.py``), this is
the only Redis key of the metadata service that another service may read.

    <REDIS_PREFIX>job:<job_id>  (string)  the job's record: the JSON of
                                          ``services.metadata.records.JobRecord``, which a reader
                                          loads as a :class:`~shared.jobs.Job` (it ignores the
                                          fields only metadata keeps). The same bytes metadata's
                                          ``GET /jobs/<id>`` answers.

How the writer keeps it (why a reader may trust one ``GET``):

* Every write of a record goes to the job's manifest in storage first, then to this key inside a
  ``WATCH``/``MULTI`` transaction on it, which ``Job.apply`` allows only forward
  (``shared/jobs.py``). So two ``GET`` s of one key, in order, never see the job go backwards, and a
  job reads ``completed`` only once its output is stored (the worker reports completion after it).
* The key may be missing while the job exists: Redis lost it (a restart without persistence, a
  failover) and no read has restored it from the manifest yet.

Rules for readers:

* Read-only, one ``GET``: a reader never writes, deletes or expires the key (the restore from the
  manifest, the index and the change feed are the writer's, in the same transaction).
* A missing key is *not* "no such job": ask the metadata service (``GET /jobs/<id>``), which
  restores the record from its manifest or answers 404.
* Read the primary, never a replica: a replica lags behind it and may show an older state.
* Anything else about a job (waiting for its end, cancelling it, listing) goes to the metadata
  service's HTTP API.
"""

from __future__ import annotations

import logging

import redis
from redis.connection import AbstractConnection

from shared.jobs import Job, is_valid_job_id

log = logging.getLogger(__name__)


def job_record_key(prefix: str, job_id: str) -> str:
    """The Redis key of ``job_id``'s record under ``REDIS_PREFIX`` ``prefix``."""
    return f"{prefix}job:{job_id}"


class JobRecords:
    """Job records read from Redis as the rules above allow a reader: one ``GET`` of the primary,
    nothing written.

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

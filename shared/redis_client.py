"""Every Redis client siphon makes, from one factory: a plain client on ``REDIS_URL``, or, when
``REDIS_SENTINELS`` names Sentinels, a client of whichever node they say is the primary of
``REDIS_SENTINEL_MASTER`` (redis-py's :class:`redis.sentinel.Sentinel`, ``master_for``).

Surviving a failover (https://redis.io/docs/latest/operate/oss_and_stack/management/sentinel/):
a connection to the old primary fails (refused, reset, or ``READONLY`` once it came back as a
replica); the Sentinel-managed pool drops it, and the next connection asks the Sentinels again.
Each call is retried on those errors (``ConnectionError``, ``TimeoutError``, ``ReadOnlyError``)
with a short exponential backoff, so a call made while the Sentinels elect the new primary waits a
little rather than failing at once. Nothing here connects: every client connects on first use.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from shared.config import Settings, sentinel_addresses

RETRY_ON = (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError)
"""The errors a call is retried on: the node went away, or it is no longer the primary."""

BACKOFF_CAP_SECONDS = 1.0
BACKOFF_BASE_SECONDS = 0.1
"""The retry backoff: 0.1 s doubled after each try, at most 1 s (redis-py's ExponentialBackoff)."""

SENTINEL_TIMEOUT_SECONDS = 1.0
"""Connect and read timeout of one question to a Sentinel, seconds: a dead Sentinel costs at most this."""


def redis_client(s: Settings, *, socket_timeout: float, connect_timeout: float = 2.0, retries: int = 3) -> redis.Redis:
    """A Redis client of the configured primary; with Sentinels it follows a failover.

    ``socket_timeout`` and ``connect_timeout`` are seconds; ``retries`` is how many times one call
    is tried again on :data:`RETRY_ON` (0: never). ``REDIS_URL``'s database number and password
    apply to the Sentinels' primary too (its host and port are then not used); the password is
    also the Sentinels' own (``requirepass`` on both, as limits' Sentinel storage assumes too).
    """
    retry = Retry(ExponentialBackoff(cap=BACKOFF_CAP_SECONDS, base=BACKOFF_BASE_SECONDS), retries)
    options = dict(
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        retry=retry,
        retry_on_error=list(RETRY_ON),
        health_check_interval=30,
    )
    sentinels = sentinel_addresses(s.redis_sentinels)
    if not sentinels:
        return redis.Redis.from_url(s.redis_url, **options)
    database = _database(s.redis_url)
    sentinel = Sentinel(
        sentinels,
        sentinel_kwargs={
            "socket_timeout": SENTINEL_TIMEOUT_SECONDS,
            "socket_connect_timeout": SENTINEL_TIMEOUT_SECONDS,
            **({"password": database["password"]} if "password" in database else {}),
        },
        **database,
        **options,
    )
    return sentinel.master_for(s.redis_sentinel_master)


def limits_storage_uri(s: Settings) -> str:
    """The ``limits`` library's storage URI of the same Redis: ``REDIS_URL`` itself, or
    ``redis+sentinel://host:port,host:port/<master>`` (limits' RedisSentinelStorage)."""
    sentinels = sentinel_addresses(s.redis_sentinels)
    if not sentinels:
        return s.redis_url
    hosts = ",".join(f"[{host}]:{port}" if ":" in host else f"{host}:{port}" for host, port in sentinels)
    return f"redis+sentinel://{hosts}/{s.redis_sentinel_master}"


def limits_storage_options(s: Settings) -> dict[str, object]:
    """Options for limits' Sentinel storage: ``REDIS_URL``'s database and password, counts read
    from the primary only (a replica lags behind it), and the Sentinels' own timeouts."""
    if not sentinel_addresses(s.redis_sentinels):
        return {}
    timeouts = {"socket_timeout": SENTINEL_TIMEOUT_SECONDS, "socket_connect_timeout": SENTINEL_TIMEOUT_SECONDS}
    return {**_database(s.redis_url), "use_replicas": False, "sentinel_kwargs": timeouts}


def _database(url: str) -> dict[str, object]:
    """The database number and password of a ``redis://`` URL (``/0`` when it names none)."""
    parts = urlsplit(url)
    db = parts.path.strip("/") or "0"
    found: dict[str, object] = {"db": int(db) if db.isdigit() else 0}
    if parts.password:
        found["password"] = unquote(parts.password)
    return found

"""The one Redis client factory: a plain client on REDIS_URL, or the primary the Sentinels name."""

from __future__ import annotations

import pytest
import redis
from limits.storage import RedisSentinelStorage, RedisStorage
from redis.sentinel import SentinelConnectionPool

from shared.config import load_settings, sentinel_addresses
from shared.errors import ConfigError
from shared.quotas import redis_counters
from shared.redis_client import RETRY_ON, limits_storage_uri, redis_client

SENTINELS = "10.0.0.1:26379, 10.0.0.2:26380,[fd00::3]:26381"


def test_sentinel_addresses_are_host_port_pairs():
    assert sentinel_addresses(SENTINELS) == [("10.0.0.1", 26379), ("10.0.0.2", 26380), ("fd00::3", 26381)]
    assert sentinel_addresses("") == []


@pytest.mark.parametrize("bad", ["10.0.0.1", "10.0.0.1:", ":26379", "host:port", "host:0", "host:65536"])
def test_a_malformed_sentinel_list_stops_the_service_naming_the_variable(bad):
    with pytest.raises(ConfigError, match=r"^REDIS_SENTINELS: .* is not host:port"):
        load_settings(redis_sentinels=bad)


def test_without_sentinels_the_client_is_redis_url_itself():
    client = redis_client(load_settings(redis_url="redis://:pw@cache:6380/2"), socket_timeout=3, retries=2)
    kwargs = client.connection_pool.connection_kwargs
    assert not isinstance(client.connection_pool, SentinelConnectionPool)
    assert (kwargs["host"], kwargs["port"], kwargs["db"], kwargs["password"]) == ("cache", 6380, 2, "pw")
    assert kwargs["socket_timeout"] == 3 and kwargs["retry"].get_retries() == 2


def test_with_sentinels_the_client_follows_the_primary_they_name():
    s = load_settings(redis_sentinels=SENTINELS, redis_sentinel_master="jobs", redis_url="redis://:pw@ignored:1/4")
    client = redis_client(s, socket_timeout=5, connect_timeout=2, retries=3)
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "jobs" and pool.is_master
    assert [c.connection_pool.connection_kwargs["port"] for c in pool.sentinel_manager.sentinels] == [
        26379,
        26380,
        26381,
    ]
    kwargs = pool.connection_kwargs
    assert (kwargs["db"], kwargs["password"], kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (
        4,
        "pw",
        5,
        2,
    )
    assert kwargs["retry"].get_retries() == 3
    assert pool.sentinel_manager.sentinels[0].connection_pool.connection_kwargs["password"] == "pw"
    assert set(RETRY_ON) <= set(kwargs["retry_on_error"]), "a failover's errors are retried"
    assert redis.ReadOnlyError in RETRY_ON, "an old primary back as a replica answers READONLY"


def test_rate_limit_counters_use_limits_sentinel_storage():
    s = load_settings(redis_sentinels="10.0.0.1:26379,10.0.0.2:26379", redis_prefix="p:")
    assert limits_storage_uri(s) == "redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/siphon"
    counters = redis_counters(s)
    assert isinstance(counters, RedisSentinelStorage) and counters.service_name == "siphon"
    assert counters.use_replicas is False, "counts are read from the primary"
    assert counters.key_prefix == "p:ratelimit"


def test_rate_limit_counters_without_sentinels_use_redis_url():
    counters = redis_counters(load_settings(redis_url="redis://cache:6379/1"))
    assert type(counters) is RedisStorage

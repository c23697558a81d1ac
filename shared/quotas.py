"""Per-caller rate limits, counted in Redis with the ``limits`` library so that every gateway and
upload process shares one count (docs/security.md#limits-per-caller).

A caller is a *quota subject*: ``key:<name>`` for an API key, ``addr:<ip>`` for a client address in
open mode (the gateway names it; ``services/gateway/quotas.py``). Three limits are rates, counted
here in fixed windows:

    submissions     QUOTA_SUBMISSIONS_PER_MINUTE   POST /convert and POST /uploads, 1 each
    upload_bytes    QUOTA_UPLOAD_BYTES_PER_DAY     an upload's declared bytes
    emails          QUOTA_EMAILS_PER_HOUR          a submission carrying an ``email``

(the fourth, unfinished jobs at once, is a count the metadata service keeps: ``services/metadata/
unfinished.py``). A limit of 0 is no limit: it is never counted, so no key is written for it.

Counters live under ``<REDIS_PREFIX>ratelimit:``, so two deployments sharing a Redis never share
them. A fixed window starts at its first hit and ends ``period`` seconds later; a caller may thus
spend up to twice a limit across the end of one window and the start of the next. limits' errors
stop here: a Redis that cannot be reached is :class:`~shared.errors.Unavailable` (503).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

from limits import RateLimitItem, RateLimitItemPerDay, RateLimitItemPerHour, RateLimitItemPerMinute
from limits.errors import StorageError
from limits.storage import Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter

from shared.config import Settings
from shared.errors import RateLimited, Unavailable
from shared.redis_client import limits_storage_options, limits_storage_uri

QUOTA_SUBJECT_HEADER = "X-Siphon-Quota-Subject"
"""The internal header the gateway names the caller in when it passes a submission to the upload
service; the job records it as ``quota_subject``."""

RATE_LIMIT_HEADERS = ("Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")
"""The headers of a 429 (:class:`~shared.errors.RateLimited`)."""

REDIS_TIMEOUT_SECONDS = 5
"""Connect and read timeout of one counter call, seconds: a dead Redis answers 503 within it."""


@dataclass(frozen=True)
class Rate:
    """One rate limit: ``amount`` per window (a limits item), and how a refusal reads."""

    item: RateLimitItem
    refusal: str  # a sentence with {limit}, e.g. "Only {limit} submissions a minute are allowed."


def rates_from_settings(s: Settings) -> dict[str, Rate]:
    """The rate limits that are on (a setting of 0 is off), by name."""
    wanted = {
        "submissions": (RateLimitItemPerMinute, s.quota_submissions_per_minute, "{limit} submissions a minute"),
        "upload_bytes": (RateLimitItemPerDay, s.quota_upload_bytes_per_day, "{limit} bytes of uploads a day"),
        "emails": (RateLimitItemPerHour, s.quota_emails_per_hour, "{limit} submissions with an email an hour"),
    }
    return {
        name: Rate(per(amount, namespace=name), f"Rate limit reached: {text} are allowed.")
        for name, (per, amount, text) in wanted.items()
        if amount > 0
    }


def redis_counters(s: Settings) -> Storage:
    """limits' Redis storage on ``REDIS_URL``, or on the primary the Sentinels of ``REDIS_SENTINELS``
    name (``redis+sentinel://``, limits' RedisSentinelStorage), its keys under
    ``<REDIS_PREFIX>ratelimit`` (no connection is made until the first count)."""
    return storage_from_string(
        limits_storage_uri(s),
        key_prefix=f"{s.redis_prefix}ratelimit",
        **limits_storage_options(s),
        wrap_exceptions=True,
        socket_timeout=REDIS_TIMEOUT_SECONDS,
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
    )


class Quotas:
    """Charges a subject's use against the rate limits; tests pass limits' ``MemoryStorage``."""

    def __init__(self, counters: Storage, rates: Mapping[str, Rate]):
        self.limiter = FixedWindowRateLimiter(counters)
        self.rates = dict(rates)

    @classmethod
    def from_settings(cls, s: Settings) -> Quotas:
        return cls(redis_counters(s), rates_from_settings(s))

    def is_on(self, name: str) -> bool:
        """Whether limit ``name`` (``submissions``, ``upload_bytes``, ``emails``) is counted."""
        return name in self.rates

    def charge(self, name: str, subject: str, cost: int = 1) -> None:
        """Count ``cost`` (requests, bytes) against ``subject``'s limit ``name``; nothing if it is off.

        A refused charge is not counted: a refused upload does not use up the day's bytes.

        Raises:
            RateLimited: ``cost`` does not fit in what is left of the window (429).
            Unavailable: Redis cannot be reached (503 ``service_unavailable``).
        """
        rate = self.rates.get(name)
        if rate is None:
            return
        try:
            if not self.limiter.test(rate.item, subject, cost=cost):
                raise self._refusal(rate, subject)
            self.limiter.hit(rate.item, subject, cost=cost)
        except StorageError as exc:
            raise Unavailable(
                f"The rate limit counters are unavailable ({exc.storage_error.__class__.__name__})."
            ) from exc

    def _refusal(self, rate: Rate, subject: str) -> RateLimited:
        stats = self.limiter.get_window_stats(rate.item, subject)
        return RateLimited(
            rate.refusal.format(limit=rate.item.amount),
            limit=rate.item.amount,
            remaining=stats.remaining,
            reset_seconds=seconds_until(stats.reset_time),
        )


def seconds_until(moment: float) -> int:
    """Whole seconds from now until ``moment`` (Unix time), at least 1 (``Retry-After: 0`` would
    invite an immediate retry that is refused again)."""
    return max(1, math.ceil(moment - time.time()))

"""The gateway's share of the per-caller limits (``shared/quotas.py``): who the caller is, and the
limits checked before a submission's body is read.

    POST /convert, POST /uploads   QUOTA_SUBMISSIONS_PER_MINUTE
    POST /convert                  QUOTA_UNFINISHED_JOBS (the metadata service's count)
    POST /convert multipart        QUOTA_UPLOAD_BYTES_PER_DAY, charged the request's Content-Length
                                   (411 ``length_required`` without one while that limit is on)

``POST /uploads``' declared ``size`` and the ``email`` field are charged by the upload service, which
reads the body; it learns the caller from the internal header :data:`QUOTA_SUBJECT_HEADER`, which
only the gateway writes (the upstream request's headers are built here, never copied from the client).

The caller is ``key:<name>`` for an API key (``flask.g.principal``, set by the authentication hook),
else ``addr:<ip>``: the peer's address, or, when the peer is one of ``TRUSTED_PROXIES``, the
right-most address in ``X-Forwarded-For`` that is not a trusted proxy (the left part of that header
is whatever the client wrote, so only what trusted proxies appended counts).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

from flask import Flask, g, request

from shared.errors import RateLimited, RequestRejected
from shared.metadata_client import MetadataClient
from shared.quotas import QUOTA_SUBJECT_HEADER, RATE_LIMIT_HEADERS, Quotas

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

UNFINISHED_RETRY_SECONDS = 30
"""``Retry-After`` of a refusal for too many unfinished jobs, seconds: when a job ends is not known,
so this is a polite polling interval rather than a promise."""

LIMITED_PATHS = frozenset({"/convert", "/uploads"})


def trusted_networks(setting: str) -> tuple[IPNetwork, ...]:
    """``TRUSTED_PROXIES`` (comma-separated addresses or CIDR ranges, validated by Settings) as networks."""
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in setting.split(",") if part.strip())


def is_trusted(address: str, trusted: Iterable[IPNetwork]) -> bool:
    """Whether ``address`` parses and lies in one of the ``trusted`` networks."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def client_address(peer: str, forwarded_for: str, trusted: tuple[IPNetwork, ...]) -> str:
    """The client's address: ``peer`` unless it is a trusted proxy; then, walking ``forwarded_for``
    (``X-Forwarded-For``, comma-separated, each proxy appending its peer) from the right, the first
    address that is not a trusted proxy. A hop that is no address stops the walk at the last
    address seen: the proxy that passed it on answers for it."""
    client = peer
    if not is_trusted(peer, trusted):
        return client
    for hop in reversed([part.strip() for part in forwarded_for.split(",") if part.strip()]):
        try:
            hop = ipaddress.ip_address(hop).compressed
        except ValueError:
            return client
        client = hop
        if not is_trusted(hop, trusted):
            return client
    return client


def quota_subject(trusted: tuple[IPNetwork, ...]) -> str:
    """The current request's quota subject: ``key:<name>``, or ``addr:<ip>`` in open mode."""
    principal = g.get("principal")
    name = getattr(principal, "name", None)
    if name is not None:
        return f"key:{name}"
    forwarded_for = ",".join(request.headers.getlist("X-Forwarded-For"))
    return f"addr:{client_address(request.remote_addr or '', forwarded_for, trusted)}"


def quota_headers() -> dict[str, str]:
    """The internal header naming the caller to the upload service (empty outside a submission)."""
    subject = g.get("quota_subject")
    return {QUOTA_SUBJECT_HEADER: subject} if subject else {}


def rate_limit_headers(upstream_headers: Mapping[str, str]) -> dict[str, str]:
    """The ``Retry-After`` and ``RateLimit-*`` headers of an upload service answer, to pass on."""
    return {name: upstream_headers[name] for name in RATE_LIMIT_HEADERS if name in upstream_headers}


class SubmissionLimits:
    """Checks a submission against the caller's limits before its body is read."""

    def __init__(self, quotas: Quotas, metadata: MetadataClient, trusted: str, max_unfinished: int, body_limit: int):
        self.quotas = quotas
        self.metadata = metadata
        self.trusted = trusted_networks(trusted)
        self.max_unfinished = max_unfinished
        self.body_limit = body_limit

    def admit(self) -> None:
        """A ``before_request`` hook: for ``POST /convert`` and ``POST /uploads``, name the caller
        (``g.quota_subject``) and charge its limits.

        Raises:
            RateLimited: a limit is used up (429).
            RequestRejected: a multipart upload without Content-Length while bytes are limited (411).
            Unavailable: Redis or the metadata service is down (503).
        """
        if request.method != "POST" or request.path not in LIMITED_PATHS:
            return
        subject = g.quota_subject = quota_subject(self.trusted)
        self.quotas.charge("submissions", subject)
        if request.path == "/convert":
            self._check_unfinished(subject)
            if request.mimetype != "application/json":  # a direct upload's bytes were charged at /uploads
                self._charge_body(subject)

    def _check_unfinished(self, subject: str) -> None:
        if self.max_unfinished <= 0:
            return
        if self.metadata.count_unfinished(subject, self.max_unfinished) >= self.max_unfinished:
            raise RateLimited(
                f"Limit reached: {self.max_unfinished} jobs may be queued or processing at once; wait for one to end.",
                limit=self.max_unfinished,
                remaining=0,
                reset_seconds=UNFINISHED_RETRY_SECONDS,
            )

    def _charge_body(self, subject: str) -> None:
        if not self.quotas.is_on("upload_bytes"):
            return
        length = request.content_length
        if length is None:
            raise RequestRejected(
                "Send the upload with a Content-Length: uploaded bytes are limited per day.",
                code="length_required",
                status=411,
            )
        if length <= self.body_limit:  # a larger body is refused 413 by the route, and not charged
            self.quotas.charge("upload_bytes", subject, length)


def install_quotas(app: Flask, limits: SubmissionLimits) -> None:
    """Check every submission against the caller's limits, after the authentication hook."""
    app.before_request(limits.admit)

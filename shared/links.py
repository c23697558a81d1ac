"""Signed download links: ``/download/<job_id>.<ext>?expires=<unix seconds>&signature=<sig>``.

With API keys on, a link is how an output leaves siphon without a key: ``curl -O``, a browser, an
email client. The signature is an HMAC (itsdangerous's ``Signer``: HMAC-SHA1 over a key derived
from ``DOWNLOAD_LINK_SECRET`` and a salt, base64url) of ``<job_id>.<ext>.<expires>``, so a changed
job id, format or expiry, or a link signed with a secret since rotated, no longer matches (403).
A link is valid until its job's output expires (``finished_at + OUTPUT_TTL``); after that the
download answers 410 like any expired job.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from urllib.parse import urlencode

from itsdangerous import BadSignature, Signer

from shared.config import Settings
from shared.errors import LinkRefused, SiphonError
from shared.jobs import Job

SALT = "siphon.download-link"
"""itsdangerous's salt: a key derived for links alone, so no other signature made with the same
secret can pass for a link."""

MAX_SIGNATURE_CHARS = 128


@dataclass(frozen=True)
class LinkQuery:
    """The query of a signed link, as the client sent it (both strings, unchecked)."""

    expires: str
    signature: str


class LinkSigner:
    """Signs and checks download links with one secret. ``ttl_seconds`` is ``OUTPUT_TTL``."""

    def __init__(self, secret: str, ttl_seconds: int, clock=time.time):
        self._signer = Signer(secret, salt=SALT)
        self.ttl_seconds = ttl_seconds
        self._clock = clock

    def expires_at(self, job: Job) -> int:
        """When the job's output expires, Unix seconds (rounded up): the link's expiry."""
        return math.ceil((job.finished_at or self._clock()) + self.ttl_seconds)

    def query(self, job: Job) -> str:
        """``expires=<unix seconds>&signature=<sig>`` for the job's download."""
        expires = self.expires_at(job)
        payload = _payload(job.job_id, job.output_extension, expires)
        return urlencode({"expires": expires, "signature": self._signer.get_signature(payload).decode()})

    def check(self, job_id: str, extension: str, link: LinkQuery) -> None:
        """Pass if ``link`` was signed for this job id, extension and expiry and has not expired.

        Raises:
            LinkRefused: the signature does not match (403 ``invalid_signature``).
            SiphonError: the link has expired (410 ``job_expired``).
        """
        if not link.expires.isdigit() or len(link.signature) > MAX_SIGNATURE_CHARS:
            raise LinkRefused("The download link is not valid.")
        payload = _payload(job_id, extension, int(link.expires))
        try:
            valid = self._signer.verify_signature(payload, link.signature.encode("ascii", "replace"))
        except BadSignature:
            valid = False
        if not valid:
            raise LinkRefused("The download link is not valid.")
        if int(link.expires) < self._clock():
            raise SiphonError(
                "The download link has expired, with the converted file; convert the video again.",
                code="job_expired",
                status=410,
            )


def link_signer(s: Settings) -> LinkSigner | None:
    """The signer of ``DOWNLOAD_LINK_SECRET`` (links valid for ``OUTPUT_TTL``), or None when the
    secret is unset (open mode: plain links)."""
    if s.download_link_secret is None:
        return None
    return LinkSigner(s.download_link_secret.get_secret_value(), s.output_ttl)


def _payload(job_id: str, extension: str, expires: int) -> bytes:
    return f"{job_id}.{extension}.{expires}".encode()

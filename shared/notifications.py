"""Who to tell when a job ends: the ``email`` and ``callback_url`` fields of ``POST /convert``.

They are fields of the job, not conversion options (``shared/options.py``): they change nothing in
the output, so they are no part of the output cache's key either. The upload service checks them
before it stores anything: a callback URL must be http/https to a host that resolves only to
globally routable addresses, or one CALLBACK_ALLOWED_HOSTS lists (``shared/callbacks.py``). The
metadata service's notifier checks it again before every POST, recording a refusal as ``rejected``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.callbacks import CallbackGuard
from shared.errors import CallbackRefused, RequestRejected

MAX_EMAIL_CHARS = 254
"""Longest address SMTP carries (RFC 5321 §4.5.3.1.3 path limit, less the angle brackets)."""

MAX_URL_CHARS = 2048

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
EMAIL_PATTERN = re.compile(rf"^[A-Za-z0-9.!#$%&'*+/=?^_`{{|}}~-]{{1,64}}@{_LABEL}(?:\.{_LABEL})+$")
"""An address: RFC 5322's dot-atom local part (no quoted strings) at a domain with a dot in it."""


class InvalidField(RequestRejected):
    """A notification field is malformed (400 ``invalid_field``); the body names the ``field``."""

    code = "invalid_field"

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field

    def to_dict(self) -> dict[str, str]:
        return {**super().to_dict(), "field": self.field}


@dataclass(frozen=True)
class NotificationTargets:
    """Where to report a job's end: an address to email and a URL to POST the job to (both optional)."""

    email: str | None = None
    callback_url: str | None = None


def targets_from_form(form: Mapping[str, str], guard: CallbackGuard | None = None) -> NotificationTargets:
    """The ``email`` and ``callback_url`` form fields, checked; an empty field counts as absent.
    ``guard`` resolves the URL's host (default: the system resolver, no private host allowed).

    Raises:
        InvalidField: the address is not one, or the URL is not ``http``/``https`` to a host ``guard`` lets through.
    """
    email = (form.get("email") or "").strip() or None
    callback_url = (form.get("callback_url") or "").strip() or None
    return NotificationTargets(
        email=check_email(email) if email else None,
        callback_url=check_callback_url(callback_url, guard or CallbackGuard()) if callback_url else None,
    )


def check_email(value: str) -> str:
    """``value`` if it is an email address (no display name, no line breaks)."""
    if len(value) > MAX_EMAIL_CHARS or not EMAIL_PATTERN.fullmatch(value):
        raise InvalidField("email", "Invalid 'email': give one address, like name@example.com.")
    return value


def check_callback_url(value: str, guard: CallbackGuard) -> str:
    """``value`` if it is an absolute ``http``/``https`` URL whose host ``guard`` lets through.

    Raises:
        InvalidField: malformed, or its host is (or resolves to) an address this server never calls.
        ResolverUnavailable: its host could not be looked up for now (503: the client may try again).
    """
    problem = _url_problem(value)
    if problem:
        raise InvalidField("callback_url", f"Invalid 'callback_url': {problem}.")
    try:
        guard.addresses(value)
    except CallbackRefused as exc:
        raise InvalidField("callback_url", f"Invalid 'callback_url': {exc.message}.") from None
    return value


def _url_problem(value: str) -> str | None:
    if len(value) > MAX_URL_CHARS:
        return f"longer than {MAX_URL_CHARS} characters"
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        return "it holds spaces or control characters"
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https"):
        return "only http and https URLs are called"
    try:
        parts.port  # noqa: B018 -- raises ValueError on a port that is not a number in range
    except ValueError:
        return "the port is not a number from 1 to 65535"
    if not parts.hostname:
        return "it names no host"
    return None

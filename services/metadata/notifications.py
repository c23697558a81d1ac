"""Telling a client that its job ended: an email, and a signed webhook POST of the job's JSON.

A webhook is one request::

    POST <callback_url>
    Content-Type: application/json
    User-Agent: siphon-webhook/1
    X-Siphon-Event: job.completed | job.failed
    X-Siphon-Delivery: <id>            the same on every try of one notification (deduplicate on it)
    X-Siphon-Timestamp: <Unix seconds> when this try was sent
    X-Siphon-Signature: sha256=<hex>   HMAC-SHA256 of the raw body, keyed with WEBHOOK_SECRET

    <the job's public JSON: shared/job_views.py>

Before each try the URL's host is resolved once and every address checked (``shared/callbacks.py``:
globally routable only, unless CALLBACK_ALLOWED_HOSTS lists the host); the POST then goes to a
checked address, with the original Host header and TLS name (``webhook_transport.py``).

Per try: a 2xx answer is ``delivered``; a timeout, a refused connection or a 5xx is ``failed``
and tried again later (``gave_up`` on the last try); any other answer (a redirect too: they are
never followed), or a refused host or address, is ``rejected`` and never tried again. Emails go
the same way: SMTP 4xx replies and connection errors are tried again, 5xx replies are
``rejected``; STARTTLS checks the server's certificate against SMTP_CA_FILE (or the system's CAs),
and a server that offers no STARTTLS when SMTP_STARTTLS is set is ``rejected`` before any
credential is sent. Every try is recorded on the job (``JobRecord.notifications``); none of it
changes the job's own outcome.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import ssl
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import urlsplit

from services.metadata.records import JobRecord, NotificationRecord
from services.metadata.webhook_transport import PoolFactory, open_pool, post_pinned
from shared.callbacks import CallbackGuard
from shared.errors import CallbackRefused, NotificationFailed, ResolverUnavailable
from shared.job_views import download_url, job_summary
from shared.jobs import JobStatus
from shared.links import LinkSigner

SIGNATURE_HEADER = "X-Siphon-Signature"
TIMESTAMP_HEADER = "X-Siphon-Timestamp"
DELIVERY_HEADER = "X-Siphon-Delivery"
EVENT_HEADER = "X-Siphon-Event"
USER_AGENT = "siphon-webhook/1"


def sign(body: bytes, secret: str) -> str:
    """The ``X-Siphon-Signature`` value of ``body``: ``sha256=`` and the hex HMAC-SHA256 keyed with ``secret``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_body(job: JobRecord, public_url: str, links: LinkSigner | None = None) -> bytes:
    """The JSON a webhook carries: the job's public view, compact, keys sorted."""
    return json.dumps(job_summary(job, public_url, links), sort_keys=True, separators=(",", ":")).encode()


class WebhookSender:
    """POSTs webhooks to the addresses the callback guard returns (``shared/callbacks.py``), through
    ``webhook_transport.py``; a refused callback is :class:`NotificationFailed`, not transient."""

    def __init__(
        self,
        secret: str | None,
        timeout: float,
        guard: CallbackGuard | None = None,
        open_pool: PoolFactory = open_pool,
    ):
        self.secret = secret
        self.timeout = timeout
        self.guard = guard or CallbackGuard()
        self.open_pool = open_pool

    def send(self, url: str, body: bytes, event: str, delivery_id: str) -> int:
        """POST ``body`` to ``url``; return the 2xx status.

        Raises:
            NotificationFailed: no 2xx answer (``transient`` for a DNS failure for now, a timeout, a
                connection error or a 5xx); not transient when the guard refuses the URL's host or its addresses.
        """
        try:
            addresses = self.guard.addresses(url)  # the one lookup: the POST goes to one of these
        except CallbackRefused as exc:
            raise NotificationFailed(f"refused: {exc.message}", transient=False) from None
        except ResolverUnavailable as exc:
            raise NotificationFailed(exc.message, transient=True) from None
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            EVENT_HEADER: event,
            DELIVERY_HEADER: delivery_id,
            TIMESTAMP_HEADER: str(int(time.time())),
        }
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(body, self.secret)
        status = post_pinned(urlsplit(url), addresses, body, headers, self.timeout, self.open_pool)
        if 200 <= status < 300:
            return status
        raise NotificationFailed(f"answered HTTP {status}", transient=status >= 500, status_code=status)


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    sender: str
    starttls: bool = False
    username: str | None = None
    password: str | None = None
    timeout: float = 10.0
    ca_file: str | None = None
    """PEM file of the CAs the server's certificate must chain to; None: the system's CAs."""


class Mailer:
    """Sends one message per SMTP connection with ``smtplib``; its errors stop here."""

    def __init__(self, smtp: SmtpSettings):
        self.smtp = smtp

    def send(self, message: EmailMessage) -> None:
        """Send ``message``.

        Raises:
            NotificationFailed: not sent (``transient`` unless the server answered a 5xx).
        """
        smtp = self.smtp
        try:
            with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout) as client:
                if smtp.starttls:
                    # smtplib raises SMTPNotSupportedError when the server offers no STARTTLS, so
                    # nothing, credentials included, goes out in clear; the certificate must match SMTP_HOST.
                    client.starttls(context=ssl.create_default_context(cafile=smtp.ca_file))
                if smtp.username:
                    client.login(smtp.username, smtp.password or "")
                client.send_message(message)
        except smtplib.SMTPNotSupportedError as exc:
            raise NotificationFailed(f"the server does not offer {_extension(exc)}", transient=False) from None
        except ssl.SSLCertVerificationError as exc:
            raise NotificationFailed(
                f"the server's certificate is not trusted ({exc.verify_message})", transient=True
            ) from None
        except smtplib.SMTPRecipientsRefused as exc:
            code = min(code for code, _ in exc.recipients.values())
            raise NotificationFailed(
                f"the server refused the recipient ({code})", transient=code < 500, status_code=code
            ) from None
        except smtplib.SMTPResponseException as exc:
            raise NotificationFailed(
                f"the server answered {exc.smtp_code}", transient=exc.smtp_code < 500, status_code=exc.smtp_code
            ) from None
        except (OSError, smtplib.SMTPException) as exc:  # refused, unreachable, timed out, dropped
            raise NotificationFailed(
                f"could not talk to {smtp.host}:{smtp.port} ({exc.__class__.__name__})", transient=True
            ) from None


def _extension(exc: smtplib.SMTPNotSupportedError) -> str:
    """``STARTTLS`` or ``AUTH``: the extension smtplib missed (its message names it)."""
    return "STARTTLS" if "STARTTLS" in str(exc) else "AUTH" if "AUTH" in str(exc) else "a needed extension"


def email_message(
    job: JobRecord, sender: str, public_url: str, output_ttl: int, links: LinkSigner | None = None
) -> EmailMessage:
    """The email telling ``job.email`` how its job ended: the download link (signed with ``links``
    when given), or the reason."""
    name = job.original_filename or job.job_id
    message = EmailMessage()
    message["From"] = sender
    message["To"] = job.email
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="siphon")
    message["X-Siphon-Job-Id"] = job.job_id
    if job.status is JobStatus.COMPLETED:
        message["Subject"] = f"Converted: {name}"
        message.set_content(
            f"siphon converted {name}.\n\n"
            f"Download it within {_duration(output_ttl)}:\n{download_url(job, public_url, links)}\n\n"
            f"Job {job.job_id}\n"
        )
    else:
        reason = job.error.message if job.error else "unknown"
        code = job.error.code if job.error else "unknown"
        message["Subject"] = f"Conversion failed: {name}"
        message.set_content(f"siphon could not convert {name}.\n\nReason: {reason} ({code})\n\nJob {job.job_id}\n")
    return message


def _duration(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600} hour{'s' if seconds != 3600 else ''}"
    if seconds % 60 == 0:
        return f"{seconds // 60} minute{'s' if seconds != 60 else ''}"
    return f"{seconds} seconds"


class Notifier:
    """Makes one try at one notification and records it on the job (``store.record_notification``)."""

    def __init__(
        self,
        store,
        mailer: Mailer,
        webhooks: WebhookSender,
        sender: str,
        public_url: str,
        output_ttl: int,
        max_attempts: int,
        links: LinkSigner | None = None,
    ):
        self.store = store
        self.mailer = mailer
        self.webhooks = webhooks
        self.sender = sender
        self.public_url = public_url
        self.output_ttl = output_ttl
        self.max_attempts = max_attempts
        self.links = links

    def deliver(self, kind: str, job: JobRecord, attempt: int, delivery_id: str) -> NotificationRecord:
        """Try ``kind`` (``email`` or ``webhook``) for ``job`` as it was when it ended; this is try
        number ``attempt``. Returns the record written; its outcome ``failed`` means "try again"."""
        try:
            status_code = self._send(kind, job, delivery_id)
            record = NotificationRecord(
                kind=kind, attempt=attempt, at=time.time(), outcome="delivered", status_code=status_code
            )
        except NotificationFailed as exc:
            outcome = "rejected" if not exc.transient else ("gave_up" if attempt >= self.max_attempts else "failed")
            record = NotificationRecord(
                kind=kind,
                attempt=attempt,
                at=time.time(),
                outcome=outcome,
                status_code=exc.status_code,
                detail=exc.message,
            )
        self.store.record_notification(job.job_id, record)
        return record

    def _send(self, kind: str, job: JobRecord, delivery_id: str) -> int | None:
        if kind == "email":
            self.mailer.send(email_message(job, self.sender, self.public_url, self.output_ttl, self.links))
            return None
        return self.webhooks.send(
            job.callback_url, webhook_body(job, self.public_url, self.links), f"job.{job.status.value}", delivery_id
        )

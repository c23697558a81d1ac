"""Siphon's one exception tree. Library exceptions (boto3, pika, redis, requests) stop at the
adapter that met them and come out as one of these, chained with ``raise ... from exc``.

    SiphonError                       .code: stable machine-readable code, .status: HTTP status
    ├── ConfigError                   a setting is missing or malformed (start-up only)
    ├── Unavailable                   503: a dependency cannot be reached right now; retry later
    │   ├── StorageUnavailable        object storage (S3 endpoint or local directory)
    │   ├── BrokerUnavailable         RabbitMQ
    │   ├── JobStoreUnavailable       Redis, or the metadata service in front of it
    │   └── ResolverUnavailable       DNS failed for now (a callback host could not be looked up)
    ├── ObjectNotFound                404: no object under that storage key
    ├── JobNotFound                   404: no job with that id
    ├── JobNotRetryable               409: the job did not fail, or failed for a reason a retry cannot cure
    ├── JobAlreadyFinished            409: a cancel came after the job completed or failed
    ├── RequestRejected               4xx: the client's request is wrong (.status, .code set per case)
    ├── Unauthorized                  401: no API key, or one the keys file does not hold (``unauthorized``)
    ├── LinkRefused                   403: a download link whose signature does not match (``invalid_signature``)
    ├── RateLimited                   429: a rate limit or quota of the caller is used up (``rate_limited``)
    ├── NotSupported                  501: this deployment cannot do that (presigned uploads on local storage)
    ├── MessageError                  a queue message does not match its schema (poison)
    ├── NotificationFailed            an email or webhook did not get through (.transient: try again)
    ├── SandboxFailed                 the conversion sandbox (bwrap, seccomp, Landlock) could not be applied
    ├── CallbackRefused               a webhook URL's host is, or resolves to, an address siphon never calls
    └── MediaError                    the file cannot become audio (.code e.g. ``no_audio_stream``)

Each class carries its HTTP status and JSON code, so this tree is also the table that maps errors
to answers; ``shared/http.py`` turns any of them into ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations


class SiphonError(Exception):
    """Base of every siphon error.

    Attributes:
        code: stable snake_case code, part of the public API (JSON ``error.code``).
        status: HTTP status an API answers with when this error ends a request.
    """

    code = "internal_error"
    status = 500

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status

    def to_dict(self) -> dict[str, str]:
        """The JSON error body's inner object: ``{"code": ..., "message": ...}``."""
        return {"code": self.code, "message": self.message}

    def headers(self) -> dict[str, str]:
        """HTTP headers the answer must carry besides the JSON body (none by default)."""
        return {}


class ConfigError(SiphonError):
    """A setting is missing or malformed; the message names the environment variable."""

    code = "config_error"


class Unavailable(SiphonError):
    """A dependency cannot be reached; the operation may succeed later (HTTP 503)."""

    code = "service_unavailable"
    status = 503


class StorageUnavailable(Unavailable):
    """Object storage did not answer, or answered with a server-side error."""

    code = "storage_unavailable"


class BrokerUnavailable(Unavailable):
    """RabbitMQ refused the connection, dropped it, or did not confirm a publish."""

    code = "broker_unavailable"


class JobStoreUnavailable(Unavailable):
    """Redis, or the metadata service that owns it, cannot be reached."""

    code = "metadata_unavailable"


class ResolverUnavailable(Unavailable):
    """The resolver could not answer for now (``EAI_AGAIN``, ``EAI_FAIL``): a callback host's
    addresses are unknown, so it is neither refused nor called."""

    code = "resolver_unavailable"


class ObjectNotFound(SiphonError):
    """No object is stored under the requested key."""

    code = "object_not_found"
    status = 404


class JobNotFound(SiphonError):
    """No job exists with the requested id."""

    code = "job_not_found"
    status = 404


class JobNotRetryable(SiphonError):
    """A retry was asked for a job that is not failed with a retryable code (``shared.jobs``)."""

    code = "job_not_retryable"
    status = 409


class JobAlreadyFinished(SiphonError):
    """A cancel was asked for a job that already completed or failed (``job_finished``)."""

    code = "job_finished"
    status = 409


class RequestRejected(SiphonError):
    """The client's request is wrong; ``status`` and ``code`` say how (400, 413, 415, ...)."""

    code = "bad_request"
    status = 400


class Unauthorized(SiphonError):
    """The request carries no ``Authorization: Bearer`` key, or one the keys file does not hold
    (``shared/auth.py``). Answered with ``WWW-Authenticate: Bearer`` (RFC 6750 §3)."""

    code = "unauthorized"
    status = 401

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="siphon"'}


class LinkRefused(SiphonError):
    """A signed download link was changed, or signed with another secret (``shared/links.py``)."""

    code = "invalid_signature"
    status = 403


class RateLimited(SiphonError):
    """The caller used up one of its limits (``shared/quotas.py``): ``limit`` per window, of which
    ``remaining`` are left, the window starting anew in ``reset_seconds``. The answer carries
    ``Retry-After`` (RFC 9110 §10.2.3) and ``RateLimit-Limit``, ``RateLimit-Remaining``,
    ``RateLimit-Reset`` (draft-ietf-httpapi-ratelimit-headers-06; seconds from now, not a date)."""

    code = "rate_limited"
    status = 429

    def __init__(self, message: str, *, limit: int, remaining: int, reset_seconds: int):
        super().__init__(message)
        self.limit = limit
        self.remaining = remaining
        self.reset_seconds = reset_seconds

    def headers(self) -> dict[str, str]:
        return {
            "Retry-After": str(self.reset_seconds),
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_seconds),
        }


class NotSupported(SiphonError):
    """The operation exists but this deployment's backends cannot do it (e.g. presigned uploads
    need S3; the local storage backend has no URL a client could upload to)."""

    code = "not_supported"
    status = 501


class MessageError(SiphonError):
    """A RabbitMQ message body is not valid JSON or does not match its schema."""

    code = "invalid_message"


class NotificationFailed(SiphonError):
    """An email or a webhook did not get through. ``transient``: a timeout, a refused connection,
    an HTTP 5xx or an SMTP 4xx, worth another try; otherwise the receiver refused it for good.
    ``status_code`` is the HTTP or SMTP reply code, when there was one."""

    code = "notification_failed"
    status = 502

    def __init__(self, message: str, *, transient: bool, status_code: int | None = None):
        super().__init__(message)
        self.transient = transient
        self.status_code = status_code


class SandboxFailed(SiphonError):
    """A process that parses an upload could not be confined (``services/conversion/sandbox.py``):
    bwrap could not build its namespaces, or the kernel refused the forked child's seccomp filter or
    Landlock rules. Not the file's fault; the job fails with ``sandbox_failed`` and can be retried."""

    code = "sandbox_failed"


class CallbackRefused(SiphonError):
    """A callback URL this server will not call (``shared/callbacks.py``); ``.message`` says why:
    no address, or the address's class and its source. The upload service answers it as 400
    ``invalid_field``; the notifier records it as ``rejected``."""

    code = "callback_refused"
    status = 400


class MediaError(SiphonError):
    """The uploaded file cannot be converted; never retried.

    ``code`` is one of the media codes listed in ``services/conversion/README.md``
    (``empty_file``, ``not_media``, ``no_audio_stream``, ...).
    """

    code = "media_error"
    status = 422

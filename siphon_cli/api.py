"""SiphonClient: the public API over HTTP (requests), with requests' errors mapped to the CLI's own.

CliError                  .exit_code: what the process exits with
├── ServerUnreachable     no answer from SIPHON_URL (connection refused, DNS, timeout)   exit 4
├── NotSupported          this server has no such endpoint (yet)                          exit 3
├── Unauthorized          the server wants an API key, or refused the one sent (401)      exit 6
└── ApiError              the server answered with an error {"error": {"code", "message"}} exit 1

With an API key every request carries ``Authorization: Bearer <key>`` (RFC 6750 §2.1): the API
calls, the event stream and downloads alike (a signed download link needs none, and ignores it).

A submission refused ``429 rate_limited`` (the caller's limits: too many at once, too fast) is sent
again once its ``Retry-After`` (RFC 9110 §10.2.3) has passed, for up to
:data:`RATE_LIMIT_PATIENCE_SECONDS` in all (tenacity), so ``siphon convert *.mp4`` converts a batch
larger than the server's limit instead of failing its tail.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import requests
from requests_toolbelt.multipart.encoder import MultipartEncoder, MultipartEncoderMonitor
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_delay

ByteProgress = Callable[[int, int | None], None]
"""Called with (bytes done, bytes in all or None when unknown)."""

CONNECT_TIMEOUT_SECONDS = 10
"""How long to wait for the server to accept a connection, seconds."""

READ_TIMEOUT_SECONDS = 300
"""How long to wait for the server between bytes of an answer, seconds (an upload is checked first)."""

DOWNLOAD_CHUNK_BYTES = 256 * 1024

RATE_LIMIT_PATIENCE_SECONDS = 900
"""How long a submission waits in all for the server's rate limits to let it in, seconds."""

DEFAULT_RETRY_AFTER_SECONDS = 5.0
"""The wait after a 429 without a usable ``Retry-After``, seconds."""

ROUTE_MISSING_CODES = {"not_found", "method_not_allowed"}
"""The gateway's error codes for a path or method it has no route for (not for an unknown job)."""


class CliError(Exception):
    exit_code = 1

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ServerUnreachable(CliError):
    exit_code = 4


class NotSupported(CliError):
    exit_code = 3


class Unauthorized(CliError):
    """A 401: no key was sent, or the server does not know it. Ends the whole command: every
    other request would get the same answer."""

    exit_code = 6


class RateLimited(Exception):
    """A 429 ``rate_limited``: try again after ``retry_after`` seconds (internal to :meth:`SiphonClient.submit`)."""

    def __init__(self, response: requests.Response):
        super().__init__("rate limited")
        self.response = response
        self.retry_after = retry_after_seconds(response.headers.get("Retry-After"))


def retry_after_seconds(value: str | None) -> float:
    """``Retry-After`` as seconds: its delta-seconds form (RFC 9110 §10.2.3), else the default."""
    return float(value) if value and value.strip().isdigit() else DEFAULT_RETRY_AFTER_SECONDS


class ApiError(CliError):
    """An error answer: ``status`` (HTTP), ``code`` (the JSON ``error.code``) and ``message``."""

    exit_code = 1

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code


class SiphonClient:
    """Calls the gateway at ``base_url``, with ``api_key`` as a bearer token when it is set."""

    def __init__(self, base_url: str, session: requests.Session | None = None, api_key: str | None = None):
        self.base_url = base_url.rstrip("/")
        self.session = session or requests.Session()
        self.api_key = api_key

    def submit(self, path: Path, on_bytes: ByteProgress | None = None, fields: dict[str, str] | None = None) -> dict:
        """``POST /convert`` the file at ``path``, streamed, after the form ``fields`` (conversion
        options such as ``bitrate``); return the ``queued`` job body. A 429 is sent again after its
        ``Retry-After`` for up to :data:`RATE_LIMIT_PATIENCE_SECONDS`; then it is an :class:`ApiError`."""
        retrying = Retrying(
            retry=retry_if_exception_type(RateLimited),
            wait=_wait_as_told,
            stop=stop_after_delay(RATE_LIMIT_PATIENCE_SECONDS),
            retry_error_callback=lambda state: self._json_or_raise(state.outcome.exception().response, (202,)),
        )
        return retrying(self._submit_once, path, on_bytes, fields)

    def _submit_once(self, path: Path, on_bytes: ByteProgress | None, fields: dict[str, str] | None) -> dict:
        with path.open("rb") as f:
            # Options go first, so that a server reading the stream knows them before the file.
            parts = [*(fields or {}).items(), ("file", (path.name, f, "application/octet-stream"))]
            encoder = MultipartEncoder(fields=parts)
            monitor = MultipartEncoderMonitor(encoder, lambda m: on_bytes(m.bytes_read, m.len) if on_bytes else None)
            response = self._request("POST", "/convert", data=monitor, headers={"Content-Type": monitor.content_type})
        if response.status_code == 429:
            raise RateLimited(response)
        return self._json_or_raise(response, expected=(202,))

    def status(self, job_id: str) -> dict:
        """``GET /status/<job_id>``: the job's status body. Raises ApiError ``job_not_found``."""
        return self._json_or_raise(self._request("GET", f"/status/{job_id}"), expected=(200,))

    def download(self, url: str, destination: Path, on_bytes: ByteProgress | None = None) -> Path:
        """Stream the MP3 at ``url`` into ``destination`` (written whole or not at all)."""
        partial = destination.with_name(destination.name + ".part")
        with self._request("GET", url, stream=True) as response:
            if response.status_code != 200:
                self._json_or_raise(response, expected=(200,))
            total = int(response.headers["Content-Length"]) if "Content-Length" in response.headers else None
            done = 0
            with partial.open("wb") as out:
                for chunk in response.iter_content(DOWNLOAD_CHUNK_BYTES):
                    out.write(chunk)
                    done += len(chunk)
                    if on_bytes:
                        on_bytes(done, total)
        partial.replace(destination)
        return destination

    def job_events(self, job_id: str) -> requests.Response | None:
        """``GET /events/<job_id>`` as an open Server-Sent Events stream, or None when the server
        offers none (an older server) or the job's stream is already over (204)."""
        response = self._request("GET", f"/events/{job_id}", stream=True, headers={"Accept": "text/event-stream"})
        if response.status_code == 200 and response.headers.get("Content-Type", "").startswith("text/event-stream"):
            return response
        response.close()
        if response.status_code == 404 and self._body(response).get("status") == "not_found":
            raise ApiError(404, "job_not_found", f"No job with id {job_id!r} on this server.")
        return None

    def jobs(self) -> dict | list:
        """``GET /jobs``: the server's job listing, as it sends it."""
        response = self._request("GET", "/jobs")
        self._raise_if_route_missing(response, "listing jobs (GET /jobs)")
        return self._json_or_raise(response, expected=(200,))

    def cancel(self, job_id: str) -> dict:
        """``DELETE /jobs/<id>``, else ``POST /cancel/<id>`` (for servers without DELETE)."""
        response = self._request("DELETE", f"/jobs/{job_id}")
        if self._route_missing(response):
            response = self._request("POST", f"/cancel/{job_id}")
        self._raise_if_route_missing(response, "cancelling jobs (DELETE /jobs/<id>)")
        return self._json_or_raise(response, expected=(200, 202))

    # --- plumbing ------------------------------------------------------------------------
    def _request(self, method: str, path_or_url: str, headers: dict[str, str] | None = None, **kwargs):
        """The server's answer to one request (a URL as given, or a path under ``base_url``).

        Raises:
            ServerUnreachable: no answer.
            Unauthorized: the answer is a 401.
        """
        url = path_or_url if "://" in path_or_url else self.base_url + path_or_url
        headers = {**self._auth_header(), **(headers or {})}
        try:
            response = self.session.request(
                method, url, headers=headers, timeout=(CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS), **kwargs
            )
        except requests.RequestException as exc:
            raise ServerUnreachable(
                f"Cannot reach the siphon server at {self.base_url} "
                f"({exc.__class__.__name__}). Is it running? Set SIPHON_URL."
            ) from exc
        if response.status_code == 401:
            response.close()
            raise Unauthorized(self._unauthorized_message())
        return response

    def _auth_header(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def _unauthorized_message(self) -> str:
        if self.api_key:
            return f"The server at {self.base_url} refused the API key: check SIPHON_API_KEY or --api-key."
        return f"The server at {self.base_url} needs an API key: set SIPHON_API_KEY or pass --api-key."

    @staticmethod
    def _body(response: requests.Response) -> dict:
        try:
            body = response.json()
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    def _route_missing(self, response: requests.Response) -> bool:
        error = self._body(response).get("error") or {}
        return response.status_code in (404, 405) and error.get("code") in ROUTE_MISSING_CODES

    def _raise_if_route_missing(self, response: requests.Response, what: str) -> None:
        if self._route_missing(response):
            raise NotSupported(f"The server at {self.base_url} does not support {what}.")

    def _json_or_raise(self, response: requests.Response, expected: tuple[int, ...]):
        if response.status_code in expected:
            return response.json()
        body = self._body(response)
        if response.status_code == 404 and body.get("status") == "not_found":  # /status's and cancel's 404
            raise ApiError(404, "job_not_found", f"No job with id {body.get('job_id')!r} on this server.")
        error = body.get("error") or {}
        raise ApiError(
            response.status_code,
            error.get("code", f"http_{response.status_code}"),
            error.get("message", f"The server answered HTTP {response.status_code}."),
        )


def _wait_as_told(state: RetryCallState) -> float:
    """tenacity's wait: the ``Retry-After`` of the 429 that ended the last try, seconds."""
    return state.outcome.exception().retry_after

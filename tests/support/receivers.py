"""Real receivers for notification tests, on loopback: an SMTP server (aiosmtpd) and an HTTP
server that records what it is sent and answers as the test planned.

    with SmtpSink() as smtp:            # smtp.port; smtp.messages: list[email.message.Message]
    with WebhookReceiver([500, 200]) as hooks:  # hooks.url; hooks.requests: list[Received]
"""

from __future__ import annotations

import email
import email.policy
import ssl
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.support.net import free_port, wait_until


class _Collect:
    def __init__(self, sink: SmtpSink):
        self.sink = sink

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 -- aiosmtpd's hook name
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.sink.lock:
            self.sink.messages.append(message)
            self.sink.recipients.append(list(envelope.rcpt_tos))
        return "250 OK"


class SmtpSink:
    """An SMTP server on 127.0.0.1 that keeps every message it is sent.

    ``smtp_options`` go to aiosmtpd's ``SMTP``: e.g. ``tls_context`` (offer STARTTLS),
    ``require_starttls``, ``auth_require_tls``. With ``logins`` (login to password) it offers AUTH
    and records every login tried in ``auth_tries``, right or wrong.
    """

    def __init__(self, logins: dict[str, str] | None = None, **smtp_options):
        self.port = free_port()
        self.messages: list[email.message.EmailMessage] = []
        self.recipients: list[list[str]] = []
        self.auth_tries: list[str] = []
        self.lock = threading.Lock()
        if logins is not None:
            smtp_options["authenticator"] = self._authenticator(logins)
        self.controller = Controller(_Collect(self), hostname="127.0.0.1", port=self.port, **smtp_options)

    def _authenticator(self, logins: dict[str, str]):
        def authenticate(server, session, envelope, mechanism, auth_data) -> AuthResult:
            if not isinstance(auth_data, LoginPassword):
                return AuthResult(success=False, handled=False)
            login, password = auth_data.login.decode(), auth_data.password.decode()
            with self.lock:
                self.auth_tries.append(login)
            success = logins.get(login) == password
            return AuthResult(success=success, handled=False)  # aiosmtpd answers 235 or 535 itself

        return authenticate

    def __enter__(self) -> SmtpSink:
        self.controller.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.controller.stop()

    def wait_for(self, count: int, timeout: float = 30) -> list[email.message.EmailMessage]:
        wait_until(lambda: len(self.messages) >= count, timeout, 0.05, f"{count} email(s)")
        return list(self.messages)


@dataclass
class Received:
    """One request the receiver got: when, its path, headers and raw body, and what it answered."""

    at: float
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int


@dataclass
class WebhookReceiver:
    """An HTTP server on ``host`` (a loopback address) answering its ``plan`` of statuses in turn
    (then ``default``).

    ``hold_first`` seconds: the first request is answered only that late (or when :meth:`release`
    is called), to catch a notifier in the middle of a try. ``location``: the ``Location`` header
    of every answer (a redirect's target). ``tls``: serve https with this server context; ``name``:
    the host its ``url`` names (default ``host``). ``connections`` counts accepted TCP connections,
    requests or not.
    """

    plan: Iterable[int] = ()
    default: int = 200
    hold_first: float = 0.0
    host: str = "127.0.0.1"
    location: str | None = None
    tls: ssl.SSLContext | None = None
    name: str | None = None
    requests: list[Received] = field(default_factory=list)
    connections: int = 0

    def __post_init__(self):
        self._plan = list(self.plan)
        self._lock = threading.Lock()
        self.first_arrived = threading.Event()
        self._released = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 -- http.server's method name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    first = not receiver.requests
                    status = receiver._plan.pop(0) if receiver._plan else receiver.default
                    receiver.requests.append(Received(time.time(), self.path, dict(self.headers), body, status))
                if first and receiver.hold_first:
                    receiver.first_arrived.set()
                    receiver._released.wait(receiver.hold_first)
                try:
                    self.send_response(status)
                    if receiver.location:
                        self.send_header("Location", receiver.location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:  # the notifier hung up (killed while waiting)
                    pass

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            def get_request(self):
                sock, address = super().get_request()
                receiver.connections += 1
                if receiver.tls is not None:
                    sock = receiver.tls.wrap_socket(sock, server_side=True)
                return sock, address

        self.server = Server((self.host, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        scheme = "https" if self.tls else "http"
        self.url = f"{scheme}://{self.name or self.host}:{self.port}/hook"

    def __enter__(self) -> WebhookReceiver:
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._released.set()
        self.server.shutdown()
        self.server.server_close()

    def release(self) -> None:
        self._released.set()

    def wait_for(self, count: int, timeout: float = 30) -> list[Received]:
        wait_until(lambda: len(self.requests) >= count, timeout, 0.05, f"{count} webhook request(s)")
        return list(self.requests)

"""One HTTP POST to an address already checked, presenting the URL's own host: the webhook's transport.

``requests`` (and urllib3's ``PoolManager``) look the URL's host up again when they connect,
which would let a name answer a public address to the guard and a private one to the connection
(DNS rebinding). Here the connection goes to the address the guard returned
(``shared/callbacks.py``), while the request still carries the original ``Host`` header and, over
TLS, the original name as SNI and as the name the certificate must match (urllib3's
``server_hostname`` and ``assert_hostname``, verified against the system's CAs). Redirects are
never followed. urllib3's exceptions stop here as :class:`NotificationFailed`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from urllib.parse import SplitResult, unquote

import urllib3
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError, ReadTimeoutError, SSLError

from shared.addresses import IPAddress
from shared.errors import NotificationFailed

PoolFactory = Callable[[str, IPAddress, int, str, float], urllib3.HTTPConnectionPool]
"""``open_pool(scheme, address, port, hostname, timeout)``: a connection pool to ``address``."""


def open_pool(
    scheme: str, address: IPAddress, port: int, hostname: str, timeout: float, ca_certs: str | None = None
) -> urllib3.HTTPConnectionPool:
    """A one-connection pool to ``address``:``port`` that, over https, sends ``hostname`` as SNI and
    checks the certificate against it and against ``ca_certs`` (a PEM file; None: the system's
    CAs). ``timeout`` (seconds) bounds the connect and each read."""
    limits = urllib3.Timeout(connect=timeout, read=timeout)
    if scheme == "https":
        return urllib3.HTTPSConnectionPool(
            str(address),
            port,
            timeout=limits,
            maxsize=1,
            retries=False,
            cert_reqs="CERT_REQUIRED",
            ca_certs=ca_certs,
            server_hostname=hostname,
            assert_hostname=hostname,
        )
    return urllib3.HTTPConnectionPool(str(address), port, timeout=limits, maxsize=1, retries=False)


def post_pinned(
    url: SplitResult,
    addresses: Sequence[IPAddress],
    body: bytes,
    headers: dict[str, str],
    timeout: float,
    open_pool: PoolFactory = open_pool,
) -> int:
    """POST ``body`` to ``url``'s path on the first of ``addresses`` that takes a connection;
    return the answer's HTTP status (a 3xx is returned, not followed).

    Raises:
        NotificationFailed: transient: no address took a connection, no answer within ``timeout``
            seconds, TLS failed (an untrusted certificate, or one for another name), or the
            connection broke.
    """
    port = url.port or (443 if url.scheme == "https" else 80)
    target = (url.path or "/") + (f"?{url.query}" if url.query else "")
    headers = {**headers, "Host": url.netloc.rpartition("@")[2]}
    if url.username is not None:  # user:password@ in the URL, as requests would have sent it
        credentials = f"{unquote(url.username)}:{unquote(url.password or '')}"
        headers.update(urllib3.util.make_headers(basic_auth=credentials))
    unreachable: list[str] = []
    for address in addresses:
        pool = open_pool(url.scheme, address, port, url.hostname or "", timeout)
        try:
            return _post(pool, target, body, headers, timeout)
        except _Unreachable as exc:
            unreachable.append(f"{address} ({exc})")
        finally:
            pool.close()
    raise NotificationFailed(f"could not connect to {', '.join(unreachable)}", transient=True)


class _Unreachable(Exception):
    """This address took no connection; the next one may."""


def _post(pool: urllib3.HTTPConnectionPool, target: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    try:
        response = pool.urlopen(
            "POST", target, body=body, headers=headers, redirect=False, retries=False, assert_same_host=False
        )
    except (NewConnectionError, ConnectTimeoutError) as exc:  # NewConnectionError first: it is a ConnectTimeoutError
        raise _Unreachable(exc.__class__.__name__) from None
    except ReadTimeoutError:
        raise NotificationFailed(f"no answer within {timeout:g} s", transient=True) from None
    except SSLError as exc:
        raise NotificationFailed(f"TLS failed: {_first_line(exc)}", transient=True) from None
    except HTTPError as exc:  # urllib3's base: the connection broke, or the answer was not HTTP
        raise NotificationFailed(f"the connection failed ({exc.__class__.__name__})", transient=True) from None
    return response.status


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else exc.__class__.__name__

"""The callback guard: which addresses a webhook URL may be sent to, decided from one DNS lookup.

The upload service asks it when a job is submitted (a refusal is 400 ``invalid_field``) and the
metadata service's notifier asks it again before every POST, then connects to one of the
addresses it returned, never looking the name up a second time: a name that answered a public
address to the first check and a private one later (DNS rebinding) gains nothing.

Rule: a callback's host must resolve only to globally routable unicast addresses
(``shared/addresses.py``), unless the operator lists the host in ``CALLBACK_ALLOWED_HOSTS``; a
listed host may resolve to private addresses too (never unspecified, multicast or broadcast ones).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from shared.addresses import IPAddress, ip_literal, refusal, refusal_for_allowed_host
from shared.errors import CallbackRefused, ResolverUnavailable

Resolver = Callable[[str, int], Sequence[IPAddress]]
"""``resolve(host, port)``: the addresses of ``host``, in the order to try them.

Raises CallbackRefused when the name does not resolve, ResolverUnavailable when it cannot tell now."""

_TEMPORARY = {socket.EAI_AGAIN, socket.EAI_FAIL}
"""getaddrinfo errors that say nothing about the name (glibc's EAI_FAIL is SERVFAIL, EAI_AGAIN a timeout)."""


def resolve_with_system(host: str, port: int) -> list[IPAddress]:
    """``host``'s addresses from the system resolver (``getaddrinfo``: /etc/hosts, then DNS), deduplicated.

    Raises:
        CallbackRefused: the name does not resolve.
        ResolverUnavailable: the resolver could not answer for now; the name may resolve later.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        if exc.errno in _TEMPORARY:
            raise ResolverUnavailable(f"could not look up {host!r} for now ({exc.strerror})") from None
        raise CallbackRefused(f"its host {host!r} does not resolve ({exc.strerror})") from None
    except UnicodeError:  # a label the IDNA codec refuses
        raise CallbackRefused(f"its host {host!r} is not a valid name") from None
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


class AllowedHosts:
    """The operator's CALLBACK_ALLOWED_HOSTS: names, addresses (any spelling) and ``*.domain`` patterns."""

    def __init__(self, spec: str):
        entries = [entry.strip().lower().strip("[]") for entry in spec.split(",")]
        self.entries = [entry for entry in entries if entry]
        self.addresses = {address for address in map(ip_literal, self.entries) if address is not None}

    def __contains__(self, host: str) -> bool:
        host = host.lower()
        literal = ip_literal(host)
        if literal is not None:
            return literal in self.addresses
        return any(host == entry or (entry.startswith("*.") and host.endswith(entry[1:])) for entry in self.entries)


def invalid_allowed_hosts(spec: str) -> str | None:
    """Why ``spec`` is not a valid CALLBACK_ALLOWED_HOSTS, or None: ``*`` is refused, because it
    would let every client reach every private address of the server's network."""
    for entry in (e.strip() for e in spec.split(",")):
        if entry == "*":
            return "'*' is no longer accepted: list the private hosts webhooks may reach; public hosts need no entry"
        if "*" in entry.removeprefix("*."):
            return f"{entry!r}: the only wildcard is a leading '*.' (a domain's subdomains)"
    return None


class CallbackGuard:
    """Resolves a callback URL's host once and returns the addresses it may be sent to."""

    def __init__(self, allowed_hosts: str = "", resolve: Resolver = resolve_with_system):
        self.allowed = AllowedHosts(allowed_hosts)
        self.resolve = resolve

    def addresses(self, url: str) -> list[IPAddress]:
        """The addresses to connect to for ``url`` (an http/https URL with a host), in order.

        Raises:
            CallbackRefused: the host does not resolve, or one of its addresses may not be called.
            ResolverUnavailable: the resolver could not answer for now.
        """
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        literal = ip_literal(host)
        found = [literal] if literal is not None else list(self.resolve(host, port))
        if not found:
            raise CallbackRefused(f"its host {host!r} has no address")
        check = refusal_for_allowed_host if host in self.allowed else refusal
        for address in found:
            reason = check(address)
            if reason:
                where = str(address) if literal is not None else f"{host!r} resolves to {address}"
                raise CallbackRefused(f"{where}, which is {reason}; this server does not call it")
        return found

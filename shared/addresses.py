"""Which IP addresses siphon may call on a client's behalf: globally routable unicast, and nothing else.

A webhook's URL is the client's, not the operator's: without this check a client could make the
notifier POST to the loopback interface, the private network or the cloud metadata service
(server-side request forgery). :func:`refusal` names the special-purpose block an address falls
in, or None for an address anyone on the Internet could reach.

Sources: the IANA IPv4 and IPv6 Special-Purpose Address Registries
(https://www.iana.org/assignments/iana-ipv4-special-registry,
https://www.iana.org/assignments/iana-ipv6-special-registry, RFC 6890), the IPv4 and IPv6
multicast registries (RFC 5771, RFC 4291 §2.7) and the RFC cited on each row. Python's
``ipaddress.is_global`` is checked as well, so a block its table knows and this one misses is refused too.

Addresses that carry an IPv4 address inside an IPv6 one are judged by the IPv4 address as well:
IPv4-mapped ``::ffff:a.b.c.d`` (RFC 4291 §2.5.5.2), 6to4 ``2002:AABB:CCDD::/48`` (RFC 3056),
Teredo ``2001:0::/32`` (RFC 4380, the client address obfuscated) and NAT64 ``64:ff9b::/96``
(RFC 6052). IPv4 spellings other than the dotted quad (``2130706433``, ``0x7f000001``,
``0177.0.0.1``, ``127.1``) are what ``inet_aton`` makes of them (:func:`ip_literal`), the
same as the resolver that would have been asked.
"""

from __future__ import annotations

import ipaddress
import re
import socket

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

REFUSED_BLOCKS: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = (
    (_V4("0.0.0.0/8"), "'this network' / unspecified (RFC 791, RFC 1122 §3.2.1.3)"),
    (_V4("10.0.0.0/8"), "private (RFC 1918)"),
    (_V4("100.64.0.0/10"), "shared address space, CGNAT (RFC 6598)"),
    (_V4("127.0.0.0/8"), "loopback (RFC 1122 §3.2.1.3)"),
    (_V4("169.254.0.0/16"), "link-local, cloud metadata (RFC 3927)"),
    (_V4("172.16.0.0/12"), "private (RFC 1918)"),
    (_V4("192.0.0.0/24"), "IETF protocol assignments (RFC 6890)"),
    (_V4("192.0.2.0/24"), "documentation, TEST-NET-1 (RFC 5737)"),
    (_V4("192.88.99.0/24"), "6to4 relay anycast, deprecated (RFC 7526)"),
    (_V4("192.168.0.0/16"), "private (RFC 1918)"),
    (_V4("198.18.0.0/15"), "benchmarking (RFC 2544)"),
    (_V4("198.51.100.0/24"), "documentation, TEST-NET-2 (RFC 5737)"),
    (_V4("203.0.113.0/24"), "documentation, TEST-NET-3 (RFC 5737)"),
    (_V4("224.0.0.0/4"), "multicast (RFC 5771)"),
    (_V4("255.255.255.255/32"), "limited broadcast (RFC 919, RFC 8190)"),
    (_V4("240.0.0.0/4"), "reserved (RFC 1112 §4)"),
    (_V6("::/128"), "unspecified (RFC 4291 §2.5.2)"),
    (_V6("::1/128"), "loopback (RFC 4291 §2.5.3)"),
    (_V6("::/96"), "IPv4-compatible, deprecated (RFC 4291 §2.5.5.1)"),
    (_V6("64:ff9b:1::/48"), "local-use IPv4/IPv6 translation (RFC 8215)"),
    (_V6("100::/64"), "discard-only (RFC 6666)"),
    (_V6("2001:db8::/32"), "documentation (RFC 3849)"),
    (_V6("2001:10::/28"), "ORCHID, deprecated (RFC 4843)"),
    (_V6("fc00::/7"), "unique-local (RFC 4193)"),
    (_V6("fe80::/10"), "link-local (RFC 4291 §2.5.6)"),
    (_V6("fec0::/10"), "site-local, deprecated (RFC 3879)"),
    (_V6("ff00::/8"), "multicast (RFC 4291 §2.7)"),
)
"""Special-purpose blocks no webhook may reach, each with the reason given when one is refused."""

NAT64_WELL_KNOWN = _V6("64:ff9b::/96")
"""RFC 6052's well-known prefix: the last 32 bits are the IPv4 address the translator calls."""

_NUMERIC_V4 = re.compile(r"^[0-9a-fA-FxX.]+$")


def ip_literal(host: str) -> IPAddress | None:
    """The address ``host`` spells, or None if it is a name to resolve.

    ``host`` is a URL's host without brackets (``urlsplit(url).hostname``). Besides the dotted
    quad and IPv6, the IPv4 forms ``inet_aton`` accepts count: one to four parts, each decimal,
    octal (leading ``0``) or hex (``0x``), e.g. ``2130706433`` and ``0177.0.0.1`` are 127.0.0.1.
    """
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])  # a zone index (fe80::1%eth0) changes no class
    except ValueError:
        pass
    if not _NUMERIC_V4.fullmatch(host):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None  # "bad.cafe": hex digits, but a name


def refusal(address: IPAddress) -> str | None:
    """Why ``address`` may not be called (``"loopback (RFC 1122 §3.2.1.3)"``), or None if it is a
    globally routable unicast address."""
    embedded = embedded_ipv4(address)
    if embedded is not None:
        inner = refusal(embedded)
        if inner is not None:
            return f"{inner}, inside {address}"
    for network, reason in REFUSED_BLOCKS:
        if address.version == network.version and address in network:
            return reason
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return None  # judged by the IPv4 address above; Python's table calls every mapped address private
    if not address.is_global:
        return "not globally routable (IANA special-purpose registry)"
    return None


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 ``address`` carries (mapped, 6to4, Teredo client, NAT64), or None."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in NAT64_WELL_KNOWN:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refusal_for_allowed_host(address: IPAddress) -> str | None:
    """Why ``address`` may not be called even for a host the operator allows (CALLBACK_ALLOWED_HOSTS):
    an address that can be no one's receiver (unspecified, multicast, broadcast), or None."""
    inner = embedded_ipv4(address)
    for candidate in (address, inner) if inner is not None else (address,):
        if candidate.is_unspecified:
            return "unspecified (RFC 1122 §3.2.1.3, RFC 4291 §2.5.2)"
        if candidate.is_multicast:
            return "multicast (RFC 5771, RFC 4291 §2.7)"
        if candidate == ipaddress.IPv4Address("255.255.255.255"):
            return "limited broadcast (RFC 919)"
    return None

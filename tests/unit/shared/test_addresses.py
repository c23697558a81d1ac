"""Which addresses a webhook may reach (``shared/addresses.py``): every special-purpose block of the
IANA registries is refused, in every spelling and IPv6 embedding; global unicast is let through."""

from __future__ import annotations

import ipaddress

import pytest

from shared.addresses import embedded_ipv4, ip_literal, refusal, refusal_for_allowed_host


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("2130706433", "loopback"),
        ("0x7f000001", "loopback"),
        ("0X7F.0.0.1", "loopback"),
        ("0177.0.0.1", "loopback"),
        ("017700000001", "loopback"),
        ("127.1", "loopback"),
        ("127.0.1", "loopback"),
        ("10.0.0.1", "RFC 1918"),
        ("10.255.255.255", "RFC 1918"),
        ("012.0.0.1", "RFC 1918"),
        ("172.16.0.1", "RFC 1918"),
        ("172.31.255.254", "RFC 1918"),
        ("192.168.1.1", "RFC 1918"),
        ("::ffff:192.168.1.1", "RFC 1918"),
        ("100.64.0.1", "CGNAT"),
        ("100.127.255.254", "CGNAT"),
        ("169.254.169.254", "RFC 3927"),
        ("169.254.0.1", "RFC 3927"),
        ("0xa9fea9fe", "RFC 3927"),
        ("::ffff:169.254.169.254", "RFC 3927"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("febf::1", "link-local"),
        ("fc00::1", "unique-local"),
        ("fd12:3456::1", "unique-local"),
        ("fec0::1", "site-local"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("0", "unspecified"),
        ("0.1.2.3", "this network"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "broadcast"),
        ("192.0.0.8", "RFC 6890"),
        ("192.0.2.1", "RFC 5737"),
        ("198.51.100.1", "RFC 5737"),
        ("203.0.113.1", "RFC 5737"),
        ("198.18.0.1", "RFC 2544"),
        ("192.88.99.1", "RFC 7526"),
        ("2001:db8::1", "RFC 3849"),
        ("100::1", "RFC 6666"),
        ("64:ff9b:1::1", "RFC 8215"),
        ("::127.0.0.1", "IPv4-compatible"),
        ("2002:7f00:1::1", "loopback"),  # 6to4 of 127.0.0.1
        ("2002:a00:1::1", "RFC 1918"),  # 6to4 of 10.0.0.1
        ("2002:a9fe:a9fe::1", "RFC 3927"),  # 6to4 of 169.254.169.254
        ("64:ff9b::7f00:1", "loopback"),  # NAT64 of 127.0.0.1
        ("64:ff9b::a9fe:a9fe", "RFC 3927"),  # NAT64 of the metadata address
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", "loopback"),  # Teredo, client ~0x80fffffe = 127.0.0.1
    ],
)
def test_a_special_purpose_address_is_refused_in_any_spelling(host, reason):
    address = ip_literal(host)
    assert address is not None, host
    assert reason in (refusal(address) or ""), (host, refusal(address))


@pytest.mark.parametrize(
    "host", ["8.8.8.8", "1.1.1.1", "93.184.215.14", "134744072", "::ffff:8.8.8.8", "2606:4700::1111", "2a00:1450::1"]
)
def test_a_globally_routable_unicast_address_is_let_through(host):
    assert refusal(ip_literal(host)) is None


@pytest.mark.parametrize("host", ["2002:808:808::1", "64:ff9b::808:808"])
def test_an_embedding_of_a_public_address_is_not_refused_for_what_it_carries(host):
    address = ip_literal(host)
    assert embedded_ipv4(address) == ipaddress.IPv4Address("8.8.8.8")
    assert "inside" not in (refusal(address) or "")


@pytest.mark.parametrize("host", ["example.org", "bad.cafe", "localhost", "127.0.0.1.example.org", "0x", "1.2.3.4.5"])
def test_a_name_is_not_an_address(host):
    assert ip_literal(host) is None


@pytest.mark.parametrize("host", ["10.0.0.1", "127.0.0.1", "fd00::1", "::ffff:192.168.0.1"])
def test_an_allowed_host_may_be_private(host):
    assert refusal_for_allowed_host(ip_literal(host)) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "224.0.0.1", "ff02::1", "255.255.255.255", "::ffff:224.0.0.1"])
def test_an_allowed_host_is_still_never_called_at_an_address_that_is_no_ones(host):
    assert refusal_for_allowed_host(ip_literal(host)) is not None

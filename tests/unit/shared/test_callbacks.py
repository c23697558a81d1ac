"""The callback guard (``shared/callbacks.py``): one lookup, every address checked, the operator's
allowlist of private hosts, and CALLBACK_ALLOWED_HOSTS refusing ``*``."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from shared.callbacks import AllowedHosts, CallbackGuard, resolve_with_system
from shared.config import load_settings
from shared.errors import CallbackRefused, ConfigError, ResolverUnavailable
from tests.unit.fakes import FakeResolver

DNS = FakeResolver(
    {
        "hooks.example.org": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
        "evil.example.org": ["127.0.0.1"],
        "half.example.org": ["93.184.215.14", "192.168.0.10"],
        "hooks.internal": ["10.1.2.3"],
        "a.hooks.internal": ["10.1.2.4"],
        "group.internal": ["239.1.2.3"],
    }
)


def test_a_public_host_gives_all_its_addresses_from_one_lookup():
    resolver = FakeResolver(DNS.table)
    addresses = CallbackGuard("", resolver).addresses("https://hooks.example.org/x")
    assert [str(a) for a in addresses] == ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]
    assert resolver.lookups == ["hooks.example.org"]


@pytest.mark.parametrize("host", ["evil.example.org", "half.example.org", "hooks.internal"])
def test_a_host_with_any_private_address_is_refused_naming_it(host):
    with pytest.raises(CallbackRefused) as refused:
        CallbackGuard("", DNS).addresses(f"http://{host}/")
    assert f"{host!r} resolves to" in refused.value.message


def test_an_address_literal_is_judged_without_a_lookup():
    resolver = FakeResolver({})
    with pytest.raises(CallbackRefused, match="loopback"):
        CallbackGuard("", resolver).addresses("http://0x7f000001:8080/hook")
    assert resolver.lookups == []


@pytest.mark.parametrize(
    ("allowed", "url"),
    [
        ("hooks.internal", "http://hooks.internal/x"),
        ("HOOKS.internal , other", "http://hooks.internal/x"),
        ("*.hooks.internal", "http://a.hooks.internal/x"),
        ("127.0.0.1", "http://127.0.0.1:9/x"),
        ("127.0.0.1", "http://2130706433:9/x"),  # the same address, spelled otherwise
        ("[::1]", "http://[::1]:9/x"),
    ],
)
def test_a_host_the_operator_lists_may_resolve_to_a_private_address(allowed, url):
    assert CallbackGuard(allowed, DNS).addresses(url)


@pytest.mark.parametrize(
    ("allowed", "url"),
    [
        ("*.hooks.internal", "http://hooks.internal/x"),
        ("127.0.0.1", "http://127.0.0.2/x"),
        ("localhost", "http://127.0.0.1/x"),
        ("hooks.internal", "http://evil.example.org/x"),
        ("group.internal", "http://group.internal/x"),  # multicast: no one's receiver, listed or not
    ],
)
def test_the_allowlist_lets_through_only_what_it_names(allowed, url):
    with pytest.raises(CallbackRefused):
        CallbackGuard(allowed, DNS).addresses(url)


def test_an_empty_allowlist_names_nothing():
    assert "" not in AllowedHosts("") and "x" not in AllowedHosts(" , ")


@pytest.mark.parametrize("spec", ["*", "hooks.internal,*", "*internal", "*.a.*.b"])
def test_a_wildcard_for_every_host_stops_the_service_naming_the_variable(spec):
    with pytest.raises(ConfigError) as stopped:
        load_settings(callback_allowed_hosts=spec)
    assert str(stopped.value).startswith("CALLBACK_ALLOWED_HOSTS: ")


def test_the_default_allows_no_private_host():
    assert load_settings().callback_allowed_hosts == ""


def test_the_system_resolver_reads_the_hosts_file():
    # localhost only: a name /etc/hosts does not hold would be a query to a DNS server off this machine.
    assert ipaddress.ip_address("127.0.0.1") in resolve_with_system("localhost", 80)


@pytest.mark.parametrize(
    ("errno", "raised"),
    [
        (socket.EAI_NONAME, CallbackRefused),
        (socket.EAI_AGAIN, ResolverUnavailable),
        (socket.EAI_FAIL, ResolverUnavailable),
    ],
)
def test_a_name_that_does_not_exist_is_refused_but_a_resolver_that_cannot_answer_is_unavailable(
    monkeypatch, errno, raised
):
    def failing(*args, **kwargs):
        raise socket.gaierror(errno, "planned")

    monkeypatch.setattr(socket, "getaddrinfo", failing)
    with pytest.raises(raised):
        resolve_with_system("hooks.example.org", 443)

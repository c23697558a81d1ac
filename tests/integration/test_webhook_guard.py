"""The webhook guard against real sockets on loopback: TLS to a pinned address with the URL's own
name (SNI and certificate), and a name that resolves to loopback through the system resolver
(a private /etc/hosts in a mount namespace) never reaching the listener."""

from __future__ import annotations

import functools
import json
import os
import shutil
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import trustme

from services.metadata.notifications import WebhookSender
from services.metadata.webhook_transport import open_pool
from shared.callbacks import CallbackGuard
from shared.errors import NotificationFailed
from tests.support.receivers import WebhookReceiver
from tests.unit.fakes import FakeResolver

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def tls_receiver(ca: trustme.CA, cert_name: str, seen_names: list) -> WebhookReceiver:
    """An https receiver whose URL names ``hooks.test``, with a certificate for ``cert_name``;
    ``seen_names`` collects the SNI names clients send."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(cert_name).configure_cert(context)
    context.sni_callback = lambda sock, name, ctx: seen_names.append(name)
    return WebhookReceiver(tls=context, name="hooks.test")


def pinned_sender(ca_path: str, allowed: str = "hooks.test") -> WebhookSender:
    # hooks.test is listed, so it may resolve to loopback; the resolver is the test's.
    guard = CallbackGuard(allowed, FakeResolver({"hooks.test": ["127.0.0.1"]}))
    return WebhookSender(None, 5, guard, open_pool=functools.partial(open_pool, ca_certs=ca_path))


def test_https_goes_to_the_checked_address_with_the_urls_name_as_host_and_sni(ca, tmp_path):
    names: list[str] = []
    ca_path = str(tmp_path / "ca.pem")
    ca.cert_pem.write_to_path(ca_path)
    with tls_receiver(ca, "hooks.test", names) as receiver:
        assert pinned_sender(ca_path).send(receiver.url, b"{}", "job.completed", "d") == 200
        [request] = receiver.requests
    assert request.headers["Host"] == f"hooks.test:{receiver.port}"
    assert names == ["hooks.test"]


def test_a_certificate_for_another_name_fails_the_try(ca, tmp_path):
    ca_path = str(tmp_path / "ca.pem")
    ca.cert_pem.write_to_path(ca_path)
    with tls_receiver(ca, "other.test", []) as receiver:
        with pytest.raises(NotificationFailed) as failed:
            pinned_sender(ca_path).send(receiver.url, b"{}", "job.completed", "d")
        assert receiver.requests == []
    assert failed.value.transient and failed.value.message.startswith("TLS failed")


def test_a_certificate_from_an_untrusted_ca_fails_the_try(ca, tmp_path):
    other_ca = trustme.CA()
    ca_path = str(tmp_path / "other-ca.pem")
    other_ca.cert_pem.write_to_path(ca_path)
    with tls_receiver(ca, "hooks.test", []) as receiver:
        with pytest.raises(NotificationFailed, match="TLS failed"):
            pinned_sender(ca_path).send(receiver.url, b"{}", "job.completed", "d")
        assert receiver.requests == []


def in_private_hosts_file(tmp_path: Path, url: str, allowed: str) -> dict:
    """Run ``tests/support/hosts_probe.py`` in a new mount namespace whose /etc/hosts maps
    ``evil.test`` to 127.0.0.1 (the machine's own /etc/hosts is untouched)."""
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n127.0.0.1 evil.test\n")
    script = 'mount --bind "$1" /etc/hosts && exec "$2" -m tests.support.hosts_probe "$3" "$4"'
    namespace = ["unshare", "--mount", "--propagation", "private"]
    done = subprocess.run(
        [*namespace, "sh", "-c", script, "sh", hosts, sys.executable, url, allowed],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


needs_root_and_unshare = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None, reason="a private /etc/hosts needs root and unshare"
)


@needs_root_and_unshare
def test_a_name_the_resolver_maps_to_loopback_is_refused_at_submit_and_at_send(tmp_path):
    with WebhookReceiver() as listener:
        seen = in_private_hosts_file(tmp_path, f"http://evil.test:{listener.port}/hook", "")
        assert (listener.connections, listener.requests) == (0, [])
    assert "'evil.test' resolves to 127.0.0.1, which is loopback" in seen["submit"]
    record = seen["record"]
    assert (record["outcome"], record["status_code"]) == ("rejected", None)
    assert record["detail"].startswith("refused: 'evil.test' resolves to 127.0.0.1, which is loopback")


@needs_root_and_unshare
def test_the_same_name_listed_by_the_operator_is_delivered_through_that_resolver(tmp_path):
    # The control: the private hosts file is what the system resolver read, so zero connections above was the guard.
    with WebhookReceiver() as listener:
        seen = in_private_hosts_file(tmp_path, f"http://evil.test:{listener.port}/hook", "evil.test")
        assert len(listener.requests) == 1 and listener.requests[0].headers["Host"] == f"evil.test:{listener.port}"
    assert (seen["submit"], seen["record"]["outcome"]) == ("accepted", "delivered")

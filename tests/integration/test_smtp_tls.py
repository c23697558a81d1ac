"""The email sender (``services/metadata/notifications.py``: ``Mailer``) against a real aiosmtpd on
loopback that speaks STARTTLS with a certificate from a CA the test makes (trustme), and asks for AUTH."""

from __future__ import annotations

import ssl

import pytest
import trustme

from services.metadata.notifications import Mailer, Notifier, SmtpSettings, WebhookSender
from services.metadata.records import JobRecord
from shared.jobs import JobStatus
from tests.support.receivers import SmtpSink

pytestmark = pytest.mark.integration

LOGINS = {"siphon": "right-password"}
JOB = JobRecord.new("0123456789abcdef0123456789abcdef", "clip.mp4", 1).model_copy(
    update={"status": JobStatus.COMPLETED, "email": "me@example.com"}
)


class RecordingStore:
    def __init__(self):
        self.records = []

    def record_notification(self, job_id, record):
        self.records.append(record)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca, tmp_path) -> str:
    path = str(tmp_path / "ca.pem")
    ca.cert_pem.write_to_path(path)
    return path


@pytest.fixture
def tls_smtp(ca):
    """STARTTLS offered and required before anything else; AUTH only after it."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    with SmtpSink(LOGINS, tls_context=context, require_starttls=True, auth_require_tls=True) as sink:
        yield sink


def deliver_email(port: int, ca_file: str | None, password: str = "right-password", starttls: bool = True):
    smtp = SmtpSettings("127.0.0.1", port, "siphon@example.org", starttls, "siphon", password, 5, ca_file)
    store = RecordingStore()
    notifier = Notifier(store, Mailer(smtp), WebhookSender(None, 5), "siphon@example.org", "http://s.test", 60, 3)
    return notifier.deliver("email", JOB, 1, "d"), store.records


def test_starttls_and_auth_deliver_with_the_configured_ca_and_the_right_login(tls_smtp, ca_file):
    record, records = deliver_email(tls_smtp.port, ca_file)
    assert record.outcome == "delivered" and records == [record]
    [message] = tls_smtp.wait_for(1)
    assert message["To"] == "me@example.com"
    assert tls_smtp.auth_tries == ["siphon"]


def test_a_server_certificate_from_another_ca_is_not_trusted_and_nothing_is_sent(tls_smtp, tmp_path):
    stranger = str(tmp_path / "stranger.pem")
    trustme.CA().cert_pem.write_to_path(stranger)
    record, records = deliver_email(tls_smtp.port, stranger)
    assert (record.outcome, records) == ("failed", [record])
    assert "certificate is not trusted" in record.detail
    assert (tls_smtp.messages, tls_smtp.auth_tries) == ([], [])


def test_the_system_cas_do_not_trust_a_private_ca(tls_smtp):
    record, _ = deliver_email(tls_smtp.port, None)  # SMTP_CA_FILE unset
    assert record.outcome == "failed" and "certificate is not trusted" in record.detail
    assert tls_smtp.messages == []


def test_a_wrong_password_is_recorded_rejected_with_the_servers_code(tls_smtp, ca_file):
    record, records = deliver_email(tls_smtp.port, ca_file, password="wrong")
    assert (record.outcome, record.status_code, records) == ("rejected", 535, [record])
    assert set(tls_smtp.auth_tries) == {"siphon"} and tls_smtp.messages == []  # smtplib tries PLAIN, then LOGIN


def test_a_server_without_starttls_gets_no_credentials_and_no_message():
    # AUTH offered in clear: a client that skipped STARTTLS would log in here.
    with SmtpSink(LOGINS, auth_require_tls=False) as plain:
        record, records = deliver_email(plain.port, None)
        assert (plain.auth_tries, plain.messages) == ([], [])
    assert (record.outcome, records) == ("rejected", [record])
    assert record.detail == "the server does not offer STARTTLS"

"""Delivering notifications (``services/metadata/notifications.py``) with fakes for the DNS, the
connection pools, the mailer and the store: signatures, outcomes by answer, the callback guard at
send time (one lookup, the connection to the checked address), and what is recorded."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from urllib3.exceptions import NewConnectionError, ReadTimeoutError

from services.metadata.notifications import Notifier, WebhookSender, email_message, sign, webhook_body
from services.metadata.records import JobRecord
from shared.callbacks import CallbackGuard
from shared.errors import NotificationFailed, ResolverUnavailable
from shared.jobs import JobErrorInfo, JobStatus, MediaFacts
from tests.unit.fakes import FakePools, FakeResolver

JOB_ID = "0123456789abcdef0123456789abcdef"
COMPLETED = JobRecord.new(JOB_ID, "holiday.mov", 100).model_copy(
    update={
        "status": JobStatus.COMPLETED,
        "finished_at": 10.0,
        "output_size": 16000,
        "output_duration_seconds": 1.0,
        "media": MediaFacts(container="mov,mp4", audio_codec="aac", video_codec="h264", duration_seconds=1.0),
        "email": "me@example.com",
        "callback_url": "https://hooks.example.org/siphon",
    }
)
PUBLIC_ADDRESS = "93.184.215.14"
DNS = {"hooks.example.org": [PUBLIC_ADDRESS], "h": [PUBLIC_ADDRESS]}
FAILED = COMPLETED.model_copy(
    update={
        "status": JobStatus.FAILED,
        "output_size": None,
        "error": JobErrorInfo(code="no_audio_stream", message="No audio."),
    }
)


class FakeStore:
    def __init__(self):
        self.records = []

    def record_notification(self, job_id, record):
        self.records.append((job_id, record))


class FakeMailer:
    def __init__(self, error: Exception | None = None):
        self.sent, self.error = [], error

    def send(self, message):
        if self.error:
            raise self.error
        self.sent.append(message)


def test_signature_is_hmac_sha256_of_the_raw_body():
    body = b'{"job_id":"x"}'
    assert sign(body, "k") == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()


def sender(pools: FakePools, resolver: FakeResolver | None = None, allowed: str = "", secret="s") -> WebhookSender:
    return WebhookSender(secret, 5, CallbackGuard(allowed, resolver or FakeResolver(DNS)), open_pool=pools)


def test_webhook_is_signed_and_carries_the_public_job():
    pools = FakePools(204)
    body = webhook_body(COMPLETED, "https://siphon.example.org")
    assert sender(pools, secret="secret").send(COMPLETED.callback_url, body, "job.completed", "d1") == 204
    [post] = pools.posts
    headers = post["headers"]
    assert headers["X-Siphon-Signature"] == sign(post["body"], "secret")
    assert (headers["X-Siphon-Event"], headers["X-Siphon-Delivery"]) == ("job.completed", "d1")
    assert (post["redirect"], post["retries"]) == (False, False)
    job = json.loads(post["body"])
    assert job["download_url"] == f"https://siphon.example.org/download/{JOB_ID}.mp3"
    assert job["output"] == {"format": "mp3", "bitrate_kbps": 128, "size_bytes": 16000, "duration_seconds": 1.0}
    assert job["input"]["video_codec"] == "h264"
    assert not {"email", "callback_url", "input_key", "output_key", "notifications"} & set(job)


def test_a_public_host_is_called_at_its_checked_address_with_its_own_host_and_tls_name():
    pools = FakePools(200)
    sender(pools).send("https://hooks.example.org:8443/in?x=1", b"{}", "job.completed", "d")
    assert pools.opened == [
        {"scheme": "https", "address": PUBLIC_ADDRESS, "port": 8443, "hostname": "hooks.example.org"}
    ]
    [post] = pools.posts
    assert (post["url"], post["headers"]["Host"]) == ("/in?x=1", "hooks.example.org:8443")


def test_a_rebinding_dns_is_asked_once_and_the_post_goes_to_the_address_it_first_gave():
    rebinding = FakeResolver({}, answers={"hooks.example.org": [[PUBLIC_ADDRESS], ["127.0.0.1"]]})
    pools = FakePools(200)
    assert sender(pools, rebinding).send("http://hooks.example.org/x", b"{}", "e", "d") == 200
    assert rebinding.lookups == ["hooks.example.org"]
    assert [p["address"] for p in pools.opened] == [PUBLIC_ADDRESS]


def test_a_host_resolving_to_a_public_and_a_private_address_is_refused_before_any_connection():
    pools = FakePools()
    mixed = FakeResolver({"hooks.example.org": [PUBLIC_ADDRESS, "10.0.0.7"]})
    with pytest.raises(NotificationFailed) as failed:
        sender(pools, mixed).send("http://hooks.example.org/x", b"{}", "e", "d")
    assert not failed.value.transient and "10.0.0.7" in failed.value.message and pools.opened == []


def test_the_next_checked_address_is_tried_when_one_takes_no_connection():
    pools = FakePools(NewConnectionError(None, "refused"), 200)
    two = FakeResolver({"hooks.example.org": ["2606:4700::1111", PUBLIC_ADDRESS]})
    assert sender(pools, two).send("http://hooks.example.org/x", b"{}", "e", "d") == 200
    assert [p["address"] for p in pools.opened] == ["2606:4700::1111", PUBLIC_ADDRESS]


def test_without_a_secret_webhooks_go_unsigned():
    pools = FakePools(200)
    sender(pools, secret=None).send("http://h/x", b"{}", "job.completed", "d")
    assert "X-Siphon-Signature" not in pools.posts[0]["headers"]


@pytest.mark.parametrize(
    ("answer", "transient", "status_code"),
    [
        (500, True, 500),
        (503, True, 503),
        (ReadTimeoutError(None, "/x", "timed out"), True, None),
        (NewConnectionError(None, "refused"), True, None),
        (404, False, 404),
        (301, False, 301),
        (302, False, 302),
    ],
)
def test_what_a_webhook_answer_means(answer, transient, status_code):
    with pytest.raises(NotificationFailed) as failed:
        sender(FakePools(answer)).send("http://h/x", b"{}", "job.completed", "d")
    assert (failed.value.transient, failed.value.status_code) == (transient, status_code)


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1/", "http://10.0.0.1/", "http://[::1]/", "http://169.254.169.254/latest/meta-data/"],
)
def test_a_private_address_is_never_called_and_the_refusal_is_not_transient(url):
    pools = FakePools()
    with pytest.raises(NotificationFailed) as failed:
        sender(pools).send(url, b"{}", "e", "d")
    assert not failed.value.transient and failed.value.message.startswith("refused: ") and pools.opened == []


def test_a_resolver_that_cannot_answer_now_fails_the_try_for_a_later_one():
    class DnsDown:
        def __call__(self, host, port):
            raise ResolverUnavailable(f"could not look up {host!r} for now (planned)")

    pools = FakePools()
    with pytest.raises(NotificationFailed) as failed:
        sender(pools, DnsDown()).send("http://hooks.example.org/", b"{}", "e", "d")
    assert failed.value.transient and pools.opened == []


def test_a_host_the_operator_allows_may_be_private():
    pools = FakePools(200)
    internal = FakeResolver({"hooks.internal": ["10.0.0.7"]})
    assert sender(pools, internal, allowed="hooks.internal").send("http://hooks.internal/", b"{}", "e", "d") == 200
    assert pools.opened[0]["address"] == "10.0.0.7"


def notifier(pools=None, mailer=None, max_attempts=3, resolver=None):
    store = FakeStore()
    return Notifier(
        store,
        mailer or FakeMailer(),
        sender(pools or FakePools(), resolver),
        "siphon@example.org",
        "https://siphon.example.org",
        86400,
        max_attempts,
    ), store


@pytest.mark.parametrize(
    ("attempt", "answer", "outcome"),
    [
        (1, 200, "delivered"),
        (1, 500, "failed"),
        (2, 500, "failed"),
        (3, 500, "gave_up"),
        (1, 400, "rejected"),
    ],
)
def test_each_try_is_recorded_with_its_outcome(attempt, answer, outcome):
    delivering, store = notifier(pools=FakePools(answer))
    record = delivering.deliver("webhook", COMPLETED, attempt, "d")
    assert store.records == [(JOB_ID, record)]
    assert (record.kind, record.attempt, record.outcome, record.status_code) == ("webhook", attempt, outcome, answer)


def test_a_refused_callback_is_recorded_rejected_with_the_reason():
    job = COMPLETED.model_copy(update={"callback_url": "http://metadata.internal/"})
    delivering, store = notifier(resolver=FakeResolver({"metadata.internal": ["169.254.169.254"]}))
    record = delivering.deliver("webhook", job, 1, "d")
    assert (record.outcome, record.status_code) == ("rejected", None)
    assert "'metadata.internal' resolves to 169.254.169.254" in record.detail and "RFC 3927" in record.detail


def test_an_smtp_failure_is_recorded_not_raised():
    delivering, store = notifier(mailer=FakeMailer(NotificationFailed("refused", transient=True)), max_attempts=1)
    assert delivering.deliver("email", COMPLETED, 1, "d").outcome == "gave_up"


def test_emails_give_the_link_or_the_reason():
    done = email_message(COMPLETED, "siphon@example.org", "https://s.example.org", 86400)
    assert (done["To"], done["Subject"]) == ("me@example.com", "Converted: holiday.mov")
    assert f"https://s.example.org/download/{JOB_ID}.mp3" in done.get_content() and "24 hours" in done.get_content()
    failed = email_message(FAILED, "siphon@example.org", "https://s.example.org", 86400)
    assert failed["Subject"] == "Conversion failed: holiday.mov"
    assert "No audio. (no_audio_stream)" in failed.get_content()

"""Delivering notifications (``services/metadata/notifications.py``) with fakes for the HTTP session,
the mailer and the store: signatures, outcomes by answer, and what is recorded."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
import requests

from services.metadata.notifications import Notifier, WebhookSender, email_message, sign, webhook_body
from shared.errors import NotificationFailed
from shared.jobs import Job, JobErrorInfo, JobStatus, MediaFacts

JOB_ID = "0123456789abcdef0123456789abcdef"
COMPLETED = Job.new(JOB_ID, "holiday.mov", 100).model_copy(
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
FAILED = COMPLETED.model_copy(
    update={
        "status": JobStatus.FAILED,
        "output_size": None,
        "error": JobErrorInfo(code="no_audio_stream", message="No audio."),
    }
)


class FakeSession:
    """Answers ``post`` with the next planned status, or raises the planned exception."""

    def __init__(self, *plan):
        self.plan = list(plan)
        self.posts: list[dict] = []

    def post(self, url, data, headers, timeout, allow_redirects):
        self.posts.append({"url": url, "data": data, "headers": headers, "allow_redirects": allow_redirects})
        answer = self.plan.pop(0)
        if isinstance(answer, Exception):
            raise answer
        response = requests.Response()
        response.status_code = answer
        return response


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


def test_webhook_is_signed_and_carries_the_public_job():
    session = FakeSession(204)
    body = webhook_body(COMPLETED, "https://siphon.example.org")
    assert WebhookSender("secret", 5, session=session).send(COMPLETED.callback_url, body, "job.completed", "d1") == 204
    [post] = session.posts
    headers = post["headers"]
    assert headers["X-Siphon-Signature"] == sign(post["data"], "secret")
    assert (headers["X-Siphon-Event"], headers["X-Siphon-Delivery"]) == ("job.completed", "d1")
    assert post["allow_redirects"] is False
    job = json.loads(post["data"])
    assert job["download_url"] == f"https://siphon.example.org/download/{JOB_ID}.mp3"
    assert job["output"] == {"format": "mp3", "bitrate_kbps": 128, "size_bytes": 16000, "duration_seconds": 1.0}
    assert job["input"]["video_codec"] == "h264"
    assert not {"email", "callback_url", "input_key", "output_key", "notifications"} & set(job)


def test_without_a_secret_webhooks_go_unsigned():
    session = FakeSession(200)
    WebhookSender(None, 5, session=session).send("http://h/x", b"{}", "job.completed", "d")
    assert "X-Siphon-Signature" not in session.posts[0]["headers"]


@pytest.mark.parametrize(
    ("answer", "transient", "status_code"),
    [
        (500, True, 500),
        (503, True, 503),
        (requests.Timeout(), True, None),
        (requests.ConnectionError(), True, None),
        (404, False, 404),
        (301, False, 301),
    ],
)
def test_what_a_webhook_answer_means(answer, transient, status_code):
    with pytest.raises(NotificationFailed) as failed:
        WebhookSender("s", 5, session=FakeSession(answer)).send("http://h/x", b"{}", "job.completed", "d")
    assert (failed.value.transient, failed.value.status_code) == (transient, status_code)


def test_a_host_outside_the_allowed_ones_is_never_called():
    session = FakeSession()
    with pytest.raises(NotificationFailed) as failed:
        WebhookSender("s", 5, "hooks.example.org", session=session).send("http://10.0.0.1/", b"{}", "e", "d")
    assert not failed.value.transient and session.posts == []


def notifier(session=None, mailer=None, max_attempts=3):
    store = FakeStore()
    return Notifier(
        store,
        mailer or FakeMailer(),
        WebhookSender("s", 5, session=session or FakeSession()),
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
    sender, store = notifier(session=FakeSession(answer))
    record = sender.deliver("webhook", COMPLETED, attempt, "d")
    assert store.records == [(JOB_ID, record)]
    assert (record.kind, record.attempt, record.outcome, record.status_code) == ("webhook", attempt, outcome, answer)


def test_an_smtp_failure_is_recorded_not_raised():
    sender, store = notifier(mailer=FakeMailer(NotificationFailed("refused", transient=True)), max_attempts=1)
    assert sender.deliver("email", COMPLETED, 1, "d").outcome == "gave_up"


def test_emails_give_the_link_or_the_reason():
    done = email_message(COMPLETED, "siphon@example.org", "https://s.example.org", 86400)
    assert (done["To"], done["Subject"]) == ("me@example.com", "Converted: holiday.mov")
    assert f"https://s.example.org/download/{JOB_ID}.mp3" in done.get_content() and "24 hours" in done.get_content()
    failed = email_message(FAILED, "siphon@example.org", "https://s.example.org", 86400)
    assert failed["Subject"] == "Conversion failed: holiday.mov"
    assert "No audio. (no_audio_stream)" in failed.get_content()

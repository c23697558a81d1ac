"""Notifications end to end: a real SMTP server (aiosmtpd) and a real HTTP receiver on loopback,
the whole stack as processes, the notifier an rq worker (issue 5: "Notifications (on rq)")."""

from __future__ import annotations

import hashlib
import hmac
import json
import signal

import pytest
import requests

from tests.support.net import free_port, wait_until
from tests.support.not_media import write_unreadable
from tests.support.receivers import SmtpSink, WebhookReceiver
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

VIDEO = "opus_in_mp4_stereo_audio_only.mp4"
RECEIVER_HOST = "127.0.0.2"
"""Where the test receivers listen: a loopback address the stack lists in CALLBACK_ALLOWED_HOSTS,
so that 127.0.0.1, in every spelling, stays one the guard refuses."""
SECRET = "test-webhook-secret"
TRIES = 3
BACKOFF = 2


@pytest.fixture(scope="module")
def smtp():
    with SmtpSink() as sink:
        yield sink


@pytest.fixture(scope="module")
def stack(module_stack, smtp) -> Stack:
    return module_stack(
        "local",
        workers=1,
        SMTP_PORT=str(smtp.port),
        SMTP_FROM="siphon@example.org",
        WEBHOOK_SECRET=SECRET,
        NOTIFY_MAX_ATTEMPTS=str(TRIES),
        NOTIFY_BACKOFF_SECONDS=str(BACKOFF),
        PUBLIC_URL="https://siphon.example.org",
        OUTPUT_CACHE="false",
        CALLBACK_ALLOWED_HOSTS=RECEIVER_HOST,
    )


def submit(stack: Stack, path, **fields) -> str:
    response = stack.convert(path, **fields)
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def notifications(stack: Stack, job_id: str, kind: str, count: int, timeout: float = 30) -> list[dict]:
    """The job's recorded tries of ``kind``, once there are ``count``."""

    def recorded():
        found = [n for n in stack.job_record(job_id)["notifications"] if n["kind"] == kind]
        return found if len(found) >= count else None

    return wait_until(recorded, timeout, 0.1, f"{count} {kind} record(s) on job {job_id}")


def test_completed_job_sends_an_email_and_a_signed_webhook(stack, smtp, media_dir):
    with WebhookReceiver(host=RECEIVER_HOST) as receiver:
        job_id = submit(stack, media_dir / VIDEO, email="me@example.com", callback_url=receiver.url)
        assert stack.wait_for_job(job_id, timeout=30)["status"] == "completed"
        [request] = receiver.wait_for(1)

    body = request.body  # verified as the README tells receivers to: HMAC-SHA256 of the raw body
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request.headers["X-Siphon-Signature"], expected)
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Siphon-Event"] == "job.completed"
    assert request.headers["X-Siphon-Timestamp"].isdigit() and request.headers["X-Siphon-Delivery"]
    job = json.loads(body)
    assert (job["job_id"], job["status"]) == (job_id, "completed")
    assert job["download_url"] == f"https://siphon.example.org/download/{job_id}.mp3"
    assert job["output"]["format"] == "mp3" and job["output"]["size_bytes"] > 0
    assert "email" not in job and "callback_url" not in job

    message = next(m for m in smtp.wait_for(1) if m["X-Siphon-Job-Id"] == job_id)
    assert message["To"] == "me@example.com" and message["From"] == "siphon@example.org"
    assert message["Subject"] == f"Converted: {VIDEO}"
    assert f"https://siphon.example.org/download/{job_id}.mp3" in message.get_content()

    [email_try] = notifications(stack, job_id, "email", 1)
    [webhook_try] = notifications(stack, job_id, "webhook", 1)
    assert (email_try["attempt"], email_try["outcome"]) == (1, "delivered")
    assert (webhook_try["attempt"], webhook_try["outcome"], webhook_try["status_code"]) == (1, "delivered", 200)


def test_failed_job_emails_the_reason(stack, smtp, tmp_path):
    notes = write_unreadable(tmp_path / "notes.mp4")  # fails in the worker (text is refused at upload)
    job_id = submit(stack, notes, email="me@example.com")
    assert stack.wait_for_job(job_id, timeout=30)["status"] == "failed"
    notifications(stack, job_id, "email", 1)
    message = next(m for m in smtp.messages if m["X-Siphon-Job-Id"] == job_id)
    assert message["Subject"] == "Conversion failed: notes.mp4"
    assert "(not_media)" in message.get_content()


def test_webhook_answered_500_twice_is_retried_with_backoff_until_delivered(stack, media_dir):
    with WebhookReceiver(plan=[500, 500], host=RECEIVER_HOST) as receiver:
        job_id = submit(stack, media_dir / VIDEO, callback_url=receiver.url)
        tries = notifications(stack, job_id, "webhook", 3)
        received = receiver.requests
    assert [(t["attempt"], t["outcome"], t["status_code"]) for t in tries] == [
        (1, "failed", 500),
        (2, "failed", 500),
        (3, "delivered", 200),
    ]
    assert [r.answered for r in received] == [500, 500, 200]
    waits = [later.at - earlier.at for earlier, later in zip(received, received[1:], strict=False)]
    # 2 s, then doubled; rq's scheduler keeps times in whole seconds, so a wait may be up to 1 s short.
    assert waits[0] >= BACKOFF - 1 and waits[1] >= 2 * BACKOFF - 1 and waits[1] > waits[0], waits
    assert len({r.headers["X-Siphon-Delivery"] for r in received}) == 1  # one delivery, three tries
    assert stack.status(job_id).json()["status"] == "completed"


def test_webhook_that_always_fails_is_given_up_after_the_bounded_tries(stack, media_dir):
    with WebhookReceiver(default=503, host=RECEIVER_HOST) as receiver:
        job_id = submit(stack, media_dir / VIDEO, callback_url=receiver.url)
        tries = notifications(stack, job_id, "webhook", TRIES)
        assert [t["outcome"] for t in tries] == ["failed"] * (TRIES - 1) + ["gave_up"]
        assert len(receiver.requests) == TRIES
    assert stack.status(job_id).json()["status"] == "completed"  # a notification never changes the outcome
    assert stack.download(job_id).status_code == 200


def test_webhook_answered_4xx_is_not_retried(stack, media_dir):
    with WebhookReceiver(default=410, host=RECEIVER_HOST) as receiver:
        job_id = submit(stack, media_dir / VIDEO, callback_url=receiver.url)
        [only] = notifications(stack, job_id, "webhook", 1)
        assert (only["outcome"], only["status_code"]) == ("rejected", 410)
        assert len(receiver.requests) == 1


def test_a_redirect_from_a_listed_host_is_not_followed(stack, media_dir):
    with WebhookReceiver(host="127.0.0.1") as target, WebhookReceiver(host=RECEIVER_HOST, default=302) as listed:
        listed.location = target.url
        job_id = submit(stack, media_dir / VIDEO, callback_url=listed.url)
        [only] = notifications(stack, job_id, "webhook", 1)
        assert len(listed.requests) == 1
        assert (target.connections, target.requests) == (0, [])
    assert (only["outcome"], only["status_code"], only["detail"]) == ("rejected", 302, "answered HTTP 302")


def test_notifier_killed_mid_webhook_is_taken_back_and_delivered(stack, media_dir):
    """rq leaves a job whose worker was SIGKILLed in its started registry; the watchdog of the
    restarted notifier sees its worker is dead, records the try, and queues it again."""
    with WebhookReceiver(hold_first=60, host=RECEIVER_HOST) as receiver:
        job_id = submit(stack, media_dir / VIDEO, callback_url=receiver.url)
        assert receiver.first_arrived.wait(30), "the webhook never came"
        stack.signal("metadata-notifier", signal.SIGKILL)
        stack.processes["metadata-notifier"].wait(10)
        stack.restart("metadata-notifier")
        tries = notifications(stack, job_id, "webhook", 2, timeout=60)
        assert len(receiver.requests) == 2
    assert [(t["attempt"], t["outcome"]) for t in tries] == [(1, "abandoned"), (2, "delivered")]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("email", "not-an-address"),
        ("email", "a@b.c\r\nBcc: x@y.z"),
        ("callback_url", "ftp://example.org/hook"),
        ("callback_url", "http:///no-host"),
        ("callback_url", "http://example.org:99999/"),
    ],
)
def test_malformed_notification_field_is_400_naming_it_and_keeps_nothing(stack, media_dir, field, value):
    before = stack.stored_keys()
    response = stack.convert(media_dir / VIDEO, **{field: value})
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("invalid_field", field)
    assert stack.stored_keys() == before


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "localhost",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "2130706433",
        "0x7f000001",
        "0177.0.0.1",
        "127.1",
        "10.0.0.1",
        "172.16.0.1",
        "192.168.0.1",
        "100.64.0.1",
        "169.254.169.254",
        "[fe80::1]",
        "[fc00::1]",
        "224.0.0.1",
        "0.0.0.0",
        "240.0.0.1",
        "[64:ff9b::7f00:1]",
    ],
)
def test_a_callback_to_an_address_that_is_not_global_is_refused_at_submit(stack, media_dir, host):
    with WebhookReceiver(host="127.0.0.1") as listener:
        before = stack.stored_keys()
        response = stack.convert(media_dir / VIDEO, callback_url=f"http://{host}:{listener.port}/hook")
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert (error["code"], error["field"]) == ("invalid_field", "callback_url")
        assert "this server does not call it" in error["message"]
        assert stack.stored_keys() == before
    assert listener.connections == 0


def test_smtp_down_is_recorded_and_the_job_still_completes(module_stack, media_dir):
    stack = module_stack(
        "local",
        workers=1,
        SMTP_PORT=str(free_port()),
        NOTIFY_MAX_ATTEMPTS="2",
        NOTIFY_BACKOFF_SECONDS="1",
        NOTIFY_TIMEOUT_SECONDS="2",
    )
    job_id = submit(stack, media_dir / VIDEO, email="me@example.com")
    tries = notifications(stack, job_id, "email", 2)
    assert [(t["attempt"], t["outcome"]) for t in tries] == [(1, "failed"), (2, "gave_up")]
    assert "could not talk to" in tries[0]["detail"]
    assert stack.status(job_id).json()["status"] == "completed"
    assert requests.get(f"{stack.url}/download/{job_id}.mp3", timeout=30).status_code == 200

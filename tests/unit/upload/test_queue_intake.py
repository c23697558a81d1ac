"""Settling the queue intake's messages (``services.upload.queue_intake``) on a recording channel."""

from __future__ import annotations

import types

import pika
import pytest

from services.upload import queue_intake
from services.upload.queue_intake import QueueIntake, verdict_of
from services.upload.verdict import ACK, REQUEUE, Settle, dead_letter
from shared.broker import DEAD_LETTER_CODE_HEADER, DEAD_LETTER_REASON_HEADER, Topology
from shared.config import load_settings
from shared.errors import JobStoreUnavailable

TOPOLOGY = Topology(prefix="unit", jobs_queue="unit.transcoding_jobs")


class RecordingChannel:
    def __init__(self):
        self.calls = []

    def basic_ack(self, tag):
        self.calls.append(("ack", tag))

    def basic_nack(self, tag, requeue):
        self.calls.append(("nack", tag, requeue))

    def basic_publish(self, exchange, routing_key, body, properties):
        self.calls.append(("publish", exchange, body, properties.headers))


def settle(verdict, monkeypatch) -> list:
    monkeypatch.setattr(queue_intake, "RETRY_DELAY_SECONDS", 0)
    channel = RecordingChannel()
    intake = QueueIntake(load_settings(), TOPOLOGY, {})
    method = types.SimpleNamespace(delivery_tag=7, redelivered=False)
    intake._on_message(
        "unit.transcoding_jobs",
        lambda body, redelivered: verdict,
        channel,
        method,
        pika.BasicProperties(content_type="application/json"),
        b"body",
    )
    return channel.calls


def test_an_accepted_message_is_acked(monkeypatch):
    assert settle(ACK, monkeypatch) == [("ack", 7)]


def test_a_refused_message_is_published_to_the_dead_letter_exchange_with_its_reason_then_acked(monkeypatch):
    (publish, exchange, body, headers), ack = settle(dead_letter("pipeline_refused", "no pipelines"), monkeypatch)
    assert (publish, exchange, body, ack) == ("publish", "unit.dead-letter", b"body", ("ack", 7))
    assert headers == {
        DEAD_LETTER_CODE_HEADER: "pipeline_refused",
        DEAD_LETTER_REASON_HEADER: "no pipelines",
        "x-siphon-queue": "unit.transcoding_jobs",
    }


def test_a_message_meeting_an_outage_goes_back_to_its_queue(monkeypatch):
    assert settle(REQUEUE, monkeypatch) == [("nack", 7, True)]


def test_an_outage_means_requeue_and_a_bug_means_dead_letter_never_a_loop():
    def down(body, redelivered):
        raise JobStoreUnavailable("metadata down")

    def buggy(body, redelivered):
        raise KeyError("surprise")

    assert verdict_of(down, b"") == REQUEUE
    verdict = verdict_of(buggy, b"")
    assert (verdict.settle, verdict.code) == (Settle.DEAD_LETTER, "internal_error")


@pytest.mark.parametrize("queue", ["transcoding_jobs", "siphon.s3-events", "siphon.progress-relay"])
def test_the_process_consumes_its_three_queues(queue):
    consumer = queue_intake.make_queue_intake(load_settings())
    assert queue in consumer.handlers

"""How the one AMQP consumer (``shared.broker.Consumer``) settles what its handlers return, on a
recording channel: ack, retry (nack with requeue), or dead-letter with the reason, then ack."""

from __future__ import annotations

import types

import pika
import pytest

from services.upload import queue_intake
from shared import broker
from shared.broker import (
    ACK,
    DEAD_LETTER_CODE_HEADER,
    DEAD_LETTER_REASON_HEADER,
    SOURCE_QUEUE_HEADER,
    Consumer,
    Delivery,
    Topology,
    dead_letter,
    requeue_later,
)
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

    def basic_publish(self, exchange, routing_key, body, properties, mandatory=True):
        self.calls.append(("publish", exchange, body, properties.headers, properties.delivery_mode))


def settle(handler, monkeypatch, on_crash=None, headers=None) -> list:
    """What the consumer does on the channel with one delivery of ``b"body"`` that ``handler`` handles."""
    monkeypatch.setattr(broker, "REQUEUE_DELAY_SECONDS", 0)
    consumer = Consumer(load_settings(), TOPOLOGY, "unit")
    consumer.consume("unit.transcoding_jobs", handler, on_crash=on_crash)
    channel = RecordingChannel()
    method = types.SimpleNamespace(delivery_tag=7, redelivered=False)
    consumer._on_message(consumer._consumptions[0], channel, method, pika.BasicProperties(headers=headers), b"body")
    return channel.calls


def test_an_accepted_message_is_acked(monkeypatch):
    assert settle(lambda delivery: ACK, monkeypatch) == [("ack", 7)]


def test_a_refused_message_is_published_to_the_dead_letter_exchange_with_its_reason_then_acked(monkeypatch):
    (publish, exchange, body, headers, mode), ack = settle(
        lambda delivery: dead_letter("pipeline_refused", "no pipelines"), monkeypatch
    )
    assert (publish, exchange, body, mode, ack) == ("publish", "unit.dead-letter", b"body", 2, ("ack", 7))
    assert headers == {
        DEAD_LETTER_CODE_HEADER: "pipeline_refused",
        DEAD_LETTER_REASON_HEADER: "no pipelines",
        SOURCE_QUEUE_HEADER: "unit.transcoding_jobs",
    }


def test_a_message_meeting_an_outage_goes_back_to_its_queue(monkeypatch):
    assert settle(lambda delivery: requeue_later(0), monkeypatch) == [("nack", 7, True)]


def test_an_outage_raised_by_the_handler_means_a_retry(monkeypatch):
    def down(delivery):
        raise JobStoreUnavailable("metadata down")

    assert settle(down, monkeypatch) == [("nack", 7, True)]


def test_a_bug_is_settled_as_the_queue_asks_never_a_loop(monkeypatch):
    def buggy(delivery):
        raise KeyError("surprise")

    [(publish, exchange, _, headers, _), ack] = settle(buggy, monkeypatch, on_crash=queue_intake.CRASHED)
    assert (publish, exchange, headers[DEAD_LETTER_CODE_HEADER], ack) == (
        "publish",
        "unit.dead-letter",
        "internal_error",
        ("ack", 7),
    )


def test_the_handler_is_told_which_delivery_this_is(monkeypatch):
    seen: list[Delivery] = []
    settle(lambda delivery: seen.append(delivery) or ACK, monkeypatch, headers={"x-delivery-count": 2})
    assert seen == [Delivery("unit.transcoding_jobs", b"body", attempt=3, redelivered=False)]


def test_a_threaded_handler_needs_prefetch_one():
    consumer = Consumer(load_settings(), TOPOLOGY, "unit", prefetch=4)
    with pytest.raises(ValueError):
        consumer.consume("q", lambda delivery: ACK, threaded=True)


def test_the_queue_intake_consumes_its_two_queues_and_no_job_events():
    consumer = queue_intake.make_queue_intake(load_settings())
    assert sorted(consumption.queue for consumption in consumer._consumptions) == [
        "siphon.s3-events",
        "transcoding_jobs",
    ]


class AnyChannel:
    """A channel that accepts every call (declarations, qos, consume) and is open."""

    is_open = True

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


class ConnectionClosedInACallback:
    """A connection that closes during its first ``process_data_events`` without raising (as when a
    fire-and-forget publish swallowed pika's heartbeat-timeout error), then fails as pika does."""

    def __init__(self):
        self.is_open = True
        self.calls = 0

    def channel(self):
        return AnyChannel()

    def process_data_events(self, time_limit):
        if not self.is_open:
            raise ValueError("Timeout closed before call")  # what pika 1.3 raises here
        self.calls += 1
        self.is_open = False

    def close(self):
        pass


class ConnectionThatStops(ConnectionClosedInACallback):
    def __init__(self, consumer):
        super().__init__()
        self.consumer = consumer

    def process_data_events(self, time_limit):
        self.consumer.stop()


def test_a_connection_closed_inside_a_callback_is_reopened_not_fatal(monkeypatch):
    consumer = Consumer(load_settings(), TOPOLOGY, "unit", min_backoff=0)
    consumer.consume("unit.conversion", lambda delivery: ACK)
    opened = [ConnectionClosedInACallback(), ConnectionThatStops(consumer)]
    monkeypatch.setattr(broker, "connect", lambda s, **kw: opened.pop(0) if opened else pytest.fail("third connection"))
    consumer.run()  # returns once stopped on the second connection; before the fix, ValueError escaped
    assert opened == []


def test_a_delivery_is_held_while_its_connection_and_channel_are_open(monkeypatch):
    consumer = Consumer(load_settings(), TOPOLOGY, "unit")
    seen = []
    consumer.consume("unit.conversion", lambda delivery: seen.append(delivery) or ACK)
    consumer.connection = types.SimpleNamespace(is_open=True)
    channel = RecordingChannel()
    channel.is_open = True
    method = types.SimpleNamespace(delivery_tag=1, redelivered=False)
    consumer._on_message(consumer._consumptions[0], channel, method, pika.BasicProperties(), b"body")
    [delivery] = seen
    assert delivery.held()
    consumer.connection.is_open = False
    assert not delivery.held(), "the connection closed: the broker gives the message out again"

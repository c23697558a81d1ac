"""Topology and confirmed publishing against the real RabbitMQ, under a prefix unique to each test."""

from __future__ import annotations

import socket
import threading

import pika
import pika.exceptions
import pytest

from shared.broker import CONVERSION_ROUTING_KEY, PERSISTENT, ConfirmingPublisher, Topology, connect, delivery_attempt
from shared.config import Settings, load_settings
from shared.errors import BrokerUnavailable
from shared.jobs import JobStatus, new_job_id
from shared.messages import JobEvent
from tests.support.net import free_port, wait_until
from tests.support.stack import AMQP_URL

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(run_id) -> Settings:
    return load_settings(amqp_url=AMQP_URL, amqp_prefix=f"it-{run_id}", max_attempts=3)


@pytest.fixture
def topology(settings) -> Topology:
    return Topology.from_settings(settings)


@pytest.fixture
def channel(settings, topology):
    """A plain channel for looking at queues; every queue and exchange of the prefix is deleted after."""
    connection = connect(settings)
    yield connection.channel()
    if connection.is_open:
        connection.close()
    cleanup = connect(settings)
    ch = cleanup.channel()
    for queue in topology.queues:
        ch.queue_delete(queue)
    for exchange in topology.exchanges:
        ch.exchange_delete(exchange)
    cleanup.close()


@pytest.fixture
def publisher(settings, topology):
    publisher = ConfirmingPublisher(settings, topology)
    yield publisher
    publisher.close()


def get_one(channel, queue: str):
    """The next message of ``queue`` (acked), or fail."""
    method, properties, body = channel.basic_get(queue, auto_ack=True)
    assert method is not None, f"{queue} is empty"
    return properties, body


def depth(channel, queue: str) -> int:
    return channel.queue_declare(queue, passive=True).method.message_count


def test_declare_is_idempotent_and_makes_quorum_queues(channel, topology):
    topology.declare(channel)
    topology.declare(channel)
    for queue in (topology.conversion_queue, topology.metadata_queue, topology.dead_letter_queue):
        assert depth(channel, queue) == 0
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        channel.queue_declare(topology.conversion_queue, durable=True, arguments={"x-queue-type": "classic"})
    assert info.value.reply_code == 406, "the queue exists with another type: quorum"


def test_a_task_lands_persistent_in_the_conversion_queue(publisher, channel, topology):
    body = b'{"job_id": "x"}'
    publisher.publish(topology.tasks_exchange, CONVERSION_ROUTING_KEY, body)
    properties, received = get_one(channel, topology.conversion_queue)
    assert received == body
    assert properties.delivery_mode == PERSISTENT.value and properties.content_type == "application/json"
    assert depth(channel, topology.metadata_queue) == depth(channel, topology.dead_letter_queue) == 0


@pytest.mark.parametrize("status", list(JobStatus))
def test_job_events_reach_the_metadata_queue(publisher, channel, topology, status):
    event = JobEvent(job_id=new_job_id(), status=status)
    publisher.publish(topology.events_exchange, event.routing_key, event.encode())
    assert JobEvent.decode(get_one(channel, topology.metadata_queue)[1]) == event


def test_an_unroutable_message_is_refused(publisher, topology, channel):
    with pytest.raises(BrokerUnavailable, match="did not accept"):
        publisher.publish(topology.events_exchange, "nobody.listens", b"{}")


def test_a_rejected_task_is_dead_lettered(publisher, channel, topology):
    publisher.publish(topology.tasks_exchange, CONVERSION_ROUTING_KEY, b"poison")
    method, _, _ = channel.basic_get(topology.conversion_queue)
    channel.basic_reject(method.delivery_tag, requeue=False)
    wait_until(lambda: depth(channel, topology.dead_letter_queue), 10, what="the dead-lettered task")  # async
    assert get_one(channel, topology.dead_letter_queue)[1] == b"poison"


def test_a_requeued_task_carries_its_delivery_count(publisher, channel, topology):
    publisher.publish(topology.tasks_exchange, CONVERSION_ROUTING_KEY, b"task")
    method, properties, _ = channel.basic_get(topology.conversion_queue)
    assert delivery_attempt(properties) == 1
    channel.basic_nack(method.delivery_tag, requeue=True)
    properties, _ = get_one(channel, topology.conversion_queue)
    assert delivery_attempt(properties) == 2


def test_the_publisher_reconnects_after_its_connection_dies(publisher, channel, topology):
    publisher.publish(topology.tasks_exchange, CONVERSION_ROUTING_KEY, b"one")
    publisher._idle[-1].connection.close()  # as if a heartbeat timeout had dropped it
    publisher.publish(topology.tasks_exchange, CONVERSION_ROUTING_KEY, b"two")
    assert [get_one(channel, topology.conversion_queue)[1] for _ in range(2)] == [b"one", b"two"]


def test_a_closed_port_is_broker_unavailable(run_id):
    s = load_settings(amqp_url=f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F", amqp_prefix=f"it-{run_id}")
    with pytest.raises(BrokerUnavailable):
        connect(s)
    publisher = ConfirmingPublisher(s, Topology.from_settings(s))
    with pytest.raises(BrokerUnavailable, match="unreachable|publish failed"):
        publisher.publish("x", "y", b"{}")


def test_a_per_process_publisher_shares_one_connection_across_threads(settings, channel, topology):
    publisher = ConfirmingPublisher(settings, topology, pooled=False)

    def publish(number: int) -> None:
        publisher.publish(topology.tasks_exchange, CONVERSION_ROUTING_KEY, str(number).encode())

    try:
        threads = [threading.Thread(target=publish, args=(number,)) for number in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        publisher.close()
    assert publisher.opened == 1
    bodies = sorted(int(get_one(channel, topology.conversion_queue)[1]) for _ in range(8))
    assert bodies == list(range(8)), "every publish was confirmed, one at a time on the one connection"


def test_a_pooled_publisher_opens_a_connection_per_concurrent_publish_not_per_thread(publisher, channel, topology):
    together = threading.Barrier(3)

    def publish(number: int, wait: bool) -> None:
        if wait:
            together.wait(10)
        publisher.publish(topology.tasks_exchange, CONVERSION_ROUTING_KEY, str(number).encode())

    threads = [threading.Thread(target=publish, args=(number, True)) for number in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert 1 <= publisher.opened <= 3
    opened = publisher.opened
    for number in range(3, 11):  # one thread after another, as a gthread pool's threads take requests
        thread = threading.Thread(target=publish, args=(number, False))
        thread.start()
        thread.join(30)
    assert publisher.opened == opened, "later threads borrowed the pooled connections"
    bodies = sorted(int(get_one(channel, topology.conversion_queue)[1]) for _ in range(11))
    assert bodies == list(range(11))


def test_a_dead_pooled_connection_drops_the_idle_ones_and_publishes_on_a_new_one(publisher, channel, topology):
    publisher.publish(topology.tasks_exchange, CONVERSION_ROUTING_KEY, b"one")
    [link] = publisher._idle
    link.connection._impl._transport._sock.shutdown(socket.SHUT_RDWR)  # dropped unseen: is_open still says True
    publisher.publish(topology.tasks_exchange, CONVERSION_ROUTING_KEY, b"two")
    assert publisher.opened == 2
    assert [get_one(channel, topology.conversion_queue)[1] for _ in range(2)] == [b"one", b"two"]


@pytest.fixture
def intake_settings(run_id) -> Settings:
    """Settings whose public queues are this test's own (their defaults are shared names)."""
    prefix = f"it-{run_id}"
    return load_settings(
        amqp_url=AMQP_URL,
        amqp_prefix=prefix,
        transcoding_jobs_queue=f"{prefix}.transcoding_jobs",
        transcoding_progress_queue=f"{prefix}.transcoding_progress",
    )


@pytest.fixture
def intake_channel(intake_settings):
    """A channel; the intake's topology (and the retired queue) of the test's prefix is deleted after."""
    topology = Topology.from_settings(intake_settings)
    connection = connect(intake_settings)
    yield connection.channel()
    if connection.is_open:
        connection.close()
    cleanup = connect(intake_settings)
    ch = cleanup.channel()
    for queue in (*topology.queues, *topology.retired_queues):
        ch.queue_delete(queue)
    for exchange in topology.exchanges:
        ch.exchange_delete(exchange)
    cleanup.close()


def test_the_intake_deletes_the_progress_relay_queue_an_earlier_version_left(intake_settings, intake_channel):
    topology, channel = Topology.from_settings(intake_settings), intake_channel
    retired = f"{topology.prefix}.progress-relay"
    topology.declare(channel)
    channel.queue_declare(retired, durable=True, arguments={"x-queue-type": "quorum"})  # as earlier versions did
    channel.queue_bind(retired, topology.events_exchange, "job.*")
    topology.declare_intake(channel)
    topology.declare_intake(channel)  # and again, once it is gone: deleting no queue is no error
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as missing:
        channel.queue_declare(retired, passive=True)
    assert missing.value.reply_code == 404


def test_an_intake_publisher_declares_the_progress_exchange_it_publishes_to(intake_settings, intake_channel):
    topology = Topology.from_settings(intake_settings)
    publisher = ConfirmingPublisher(intake_settings, topology, pooled=False, intake=True)
    try:
        publisher.publish_progress({"job_id": "j", "status": "completed"})  # on a broker that has none of it yet
    finally:
        publisher.close()
    _, body = get_one(intake_channel, topology.progress_queue)
    assert body == b'{"job_id": "j", "status": "completed"}'

"""The broker adapter's pure parts: names under a prefix and delivery attempts (``shared.broker``)."""

from __future__ import annotations

import pika
import pytest

from shared.broker import DELIVERY_LIMIT, Topology, connection_parameters, delivery_attempt
from shared.config import Settings, load_settings


def test_every_name_starts_with_the_prefix():
    t = Topology(prefix="p1")
    names = [
        t.tasks_exchange,
        t.conversion_queue,
        t.dead_letter_exchange,
        t.dead_letter_queue,
        t.events_exchange,
        t.metadata_queue,
    ]
    assert all(name.startswith("p1.") for name in names)
    assert len({t.tasks_exchange, t.conversion_queue, t.events_exchange, t.metadata_queue}) == 4


def test_broker_delivery_limit_is_a_backstop_above_any_allowed_max_attempts():
    assert Topology.from_settings(load_settings(amqp_prefix="p2")).prefix == "p2"
    assert DELIVERY_LIMIT > Settings.model_fields["max_attempts"].metadata[-1].le


@pytest.mark.parametrize(
    ("headers", "attempt"),
    [
        (None, 1),
        ({}, 1),
        ({"x-delivery-count": 0}, 1),
        ({"x-delivery-count": 2}, 3),
        ({"other": "x"}, 1),
    ],
)
def test_delivery_attempt_counts_from_one(headers, attempt):
    assert delivery_attempt(pika.BasicProperties(headers=headers)) == attempt


def test_a_cluster_url_list_gives_one_single_try_parameter_set_per_node():
    urls = [f"amqp://u:p@10.0.0.{i}:5672/%2F" for i in (1, 2, 3)]
    s = load_settings(amqp_url=" , ".join(urls), amqp_heartbeat_seconds=7)
    assert s.amqp_urls == tuple(urls)
    params = connection_parameters(s, timeout=2)
    assert sorted(p.host for p in params) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert all(p.connection_attempts == 1 and p.heartbeat == 7 and p.socket_timeout == 2 for p in params)


def test_the_node_order_is_shuffled_so_clients_spread_over_the_cluster():
    s = load_settings(amqp_url=",".join(f"amqp://10.0.0.{i}" for i in range(1, 6)))
    orders = {tuple(p.host for p in connection_parameters(s)) for _ in range(50)}
    assert len(orders) > 1

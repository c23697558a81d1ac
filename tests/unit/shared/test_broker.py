"""The broker adapter's pure parts: names under a prefix and delivery attempts (``shared.broker``)."""

from __future__ import annotations

import pika
import pytest

from shared.broker import DELIVERY_LIMIT, Topology, delivery_attempt
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

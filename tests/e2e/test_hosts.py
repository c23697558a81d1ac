"""Past one broker and one host (issue 18): siphon on a 3-node RabbitMQ cluster and moto on a host
of its own, each host a network namespace (tests/support/hosts.py), while a live load of 30 jobs
runs and one host dies or drops off the network. Each test ends with :func:`assert_stack_clean`
and prints one ``HOSTS`` line with its numbers (run with ``-s`` to see them);
docs/reliability.md's "hosts and partitions" table holds what the runs measured.

Marked ``hosts`` (and ``e2e``): ``./scripts/test`` runs them, ``-m "not hosts"`` leaves them out.
"""

from __future__ import annotations

import time

import pytest

from tests.support.faults import assert_stack_clean, tone
from tests.support.net import wait_until
from tests.support.stack import Stack
from tests.support.world import Load, tally, world

pytestmark = [pytest.mark.e2e, pytest.mark.hosts]

HEARTBEAT_SECONDS = 3
"""The stacks' AMQP heartbeat: RabbitMQ drops a silent connection after two missed, about 6 s."""
RECOVERY_LIMIT_SECONDS = 30
"""Issue 18's bound on publishing and consuming coming back after a node dies."""


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    """The :class:`~tests.support.world.World`: cluster, moto's host, Redis relay."""
    with world(tmp_path_factory.mktemp("world")) as w:
        yield w


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tones")
    return lambda seconds: tone(directory, seconds)


@pytest.fixture
def host_stack(hosts, tmp_path_factory):
    """``host_stack(workers=2, placement={...}, **env)``: a started stack on the cluster and moto's
    host, its root-namespace services on the bridge's address; checked with
    :func:`assert_stack_clean` after the test, and stopped."""
    stacks: list[Stack] = []

    def make(workers: int = 2, placement: dict | None = None, **env: str) -> Stack:
        stack = Stack(
            tmp_path_factory.mktemp("stack-hosts"),
            backend="s3",
            s3_endpoint=hosts.moto_endpoint,
            workers=workers,
            amqp_url=hosts.cluster.amqp_url,
            bind_host=hosts.network.gateway,
            placement=placement or {},
            host_env={"REDIS_URL": hosts.host_redis_url},
            env_overrides={"OUTPUT_CACHE": "false", "AMQP_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS), **env},
        )
        stacks.append(stack)
        return stack.start()

    try:
        yield make
        for stack in stacks:
            assert_stack_clean(stack, timeout=60)
    finally:
        for stack in stacks:
            stack.stop()


def test_killing_the_quorum_queue_leader_loses_no_confirmed_task(hosts, host_stack, tones):
    """(b) The node holding the conversion queue's leader is SIGKILLed mid-load: publishing and
    consuming resume within 30 s, and every accepted (confirmed) task completes, once."""
    cluster = hosts.cluster
    stack = host_stack(workers=2)
    queue = stack.topology.conversion_queue
    assert cluster.queue_members(queue) == sorted(n.name for n in cluster.nodes)
    leader = cluster.queue_leader(queue)

    load = Load(stack, tones(4), count=30, interval=0.4).start()
    wait_until(lambda: len(load.accepted) >= 8, 60, 0.1, "a third of the load accepted")
    killed_at = time.monotonic()
    leader.kill()
    try:
        new_leader = wait_until(lambda: _leader_or_none(cluster, queue), 30, 0.5, "a new leader")
        assert new_leader is not leader
        final = load.wait(240)
        completed_after_kill = load.first_completed_after(killed_at)
        published = load.first_accepted_after(killed_at)
        assert published is not None and published < RECOVERY_LIMIT_SECONDS, published
        assert completed_after_kill is not None and completed_after_kill < RECOVERY_LIMIT_SECONDS
        numbers = tally(stack, load, final, max(published, completed_after_kill))
        print(numbers.line("b leader killed"), f"(publish {published:.1f} s, consume {completed_after_kill:.1f} s)")
        assert numbers.accepted >= 25 and numbers.lost == 0 and numbers.duplicated == 0, numbers
    finally:
        cluster.restart(leader)


def _leader_or_none(cluster, queue):
    try:
        return cluster.queue_leader(queue)
    except LookupError:
        return None

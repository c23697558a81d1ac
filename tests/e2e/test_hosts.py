"""Past one broker and one host (issue 18): siphon on a 3-node RabbitMQ cluster and moto on a host
of its own, each host a network namespace (tests/support/hosts.py), while a live load of 30 jobs
runs and one host dies or drops off the network. Each test ends with :func:`assert_stack_clean`
and prints one ``HOSTS`` line with its numbers (run with ``-s`` to see them);
docs/reliability.md's "hosts and partitions" table holds what the runs measured.

Marked ``hosts`` (and ``e2e``): ``./scripts/test`` runs them, ``-m "not hosts"`` leaves them out.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import requests

from tests.support.faults import assert_stack_clean, descends_from, ffmpeg_processes, log_lines, tone
from tests.support.net import wait_until
from tests.support.stack import Stack
from tests.support.world import Load, tally, world

pytestmark = [pytest.mark.e2e, pytest.mark.hosts, pytest.mark.timeout(480)]

HEARTBEAT_SECONDS = 3
"""The stacks' AMQP heartbeat: RabbitMQ drops a silent connection after two missed, about 6 s."""
PARTITION_SECONDS = 15
"""How long a cut host stays cut off, at least (longer than the heartbeat timeout)."""
HTTP_TIMEOUT_SECONDS = 3
"""The stacks' ``HTTP_TIMEOUT_SECONDS`` in scenario (d)."""
S3_OUTAGE_SECONDS = 20
S3_RETRIES = 8
"""``STORAGE_RETRIES`` in scenario (e): with 2 s timeouts and backoff to 5 s, about 45 s of trying."""
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


def test_a_worker_host_partitioned_mid_conversion_hands_its_task_over_and_its_late_result_is_fenced(
    hosts, host_stack, tones
):
    """(a) The host of one of two workers drops off the network while its ffmpeg runs. After the
    heartbeat timeout the broker gives the task to the other worker (attempt 2), which completes
    it; when the host heals, the cut-off worker's result is dropped (its delivery was lost with its
    connection) and the job's record and events stay as attempt 2 left them."""
    worker_host = hosts.add_host("worker")
    stack = host_stack(workers=2, placement={"conversion-1": worker_host})
    load = Load(stack, tones(120), count=30, interval=0.3).start()
    ffmpeg = wait_until(lambda: _ffmpeg_of(stack, "conversion-1"), 60, 0.02, "an ffmpeg on the worker host")
    job_id = _job_of(ffmpeg)
    worker_host.cut()
    cut_at = time.monotonic()
    try:
        record = wait_until(lambda: _completed_record(stack, job_id), 60, 0.2, "the job completed elsewhere")
        handed_over = time.monotonic() - cut_at
        time.sleep(max(0.0, PARTITION_SECONDS - handed_over))
    finally:
        worker_host.heal()
    final = load.wait(240)
    wait_until(
        lambda: _logged(stack, "conversion-1", "conversion-worker consuming", after=1), 60, 0.2, "the worker back"
    )
    assert record["attempts"] >= 2, record
    assert stack.job_record(job_id) == record, "the late result changed the job"
    # The cut-off worker drops its result one of two ways, by when pika notices the heartbeat
    # timeout: before its `completed` publish (the delivery is no longer held), or during it (the
    # confirmed publish fails on the closed connection and the task is left to the broker).
    assert _logged(stack, "conversion-1", "the task's delivery was lost") or _logged(
        stack, "conversion-1", "broker_unavailable"
    ), "the cut-off worker dropped its result"
    numbers = tally(stack, load, final, handed_over)
    print(numbers.line("a worker partitioned"), f"(job {job_id} attempt {record['attempts']})")
    assert numbers.accepted == 30 and numbers.lost == 0 and numbers.duplicated == 0, numbers


def _ffmpeg_of(stack, worker: str) -> int | None:
    """An ffmpeg that ``worker`` runs (its child, or with the sandbox bubblewrap's)."""
    parent = stack.processes[worker].pid
    return next((pid for pid in ffmpeg_processes(stack) if descends_from(pid, parent)), None)


def _job_of(pid: int) -> str:
    """The job id in an ffmpeg's command line (its input sits in ``<work dir>/<job id>-*/``)."""
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return re.search(r"/([0-9a-f]{32})-", cmdline).group(1)


def _completed_record(stack, job_id: str) -> dict | None:
    record = stack.job_record(job_id)
    return record if record["status"] == "completed" else None


def _logged(stack, service: str, prefix: str, after: int = 0) -> bool:
    """Whether ``service`` logged a line starting with ``prefix`` more than ``after`` times."""
    return sum(1 for r in log_lines(stack, service) if r["msg"].startswith(prefix)) > after


def test_gateway_cut_off_from_metadata_keeps_answering_status_from_redis_and_503s_what_needs_metadata(
    hosts, host_stack, tones
):
    """(d) The metadata host (its HTTP service, consumer and notifier) drops off the network under
    load. The gateway's ``/status`` keeps answering 200 at once, from the job's record in Redis
    (``shared/job_records.py``), never going backwards; ``GET /jobs``, which only the metadata
    service answers, gets 503 ``metadata_unavailable`` within ``HTTP_TIMEOUT_SECONDS`` instead of
    hanging, and answers again once the link heals; every accepted job completes."""
    metadata_host = hosts.add_host("metadata")
    placement = {name: metadata_host for name in ("metadata", "metadata-consumer", "metadata-notifier")}
    stack = host_stack(workers=2, placement=placement, HTTP_TIMEOUT_SECONDS=str(HTTP_TIMEOUT_SECONDS))
    load = Load(stack, tones(60), count=30, interval=0.6).start()
    wait_until(lambda: len(load.accepted) >= 10, 60, 0.1, "a third of the load accepted")
    probe = load.accepted[-1]
    metadata_host.cut()
    statuses, listings = [], []
    try:
        until = time.monotonic() + PARTITION_SECONDS
        while time.monotonic() < until:
            statuses.append(_timed(f"{stack.url}/status/{probe}"))
            listings.append(_timed(f"{stack.url}/jobs?limit=1"))
    finally:
        metadata_host.heal()
    healed_at = time.monotonic()
    wait_until(lambda: requests.get(f"{stack.url}/jobs?limit=1").status_code == 200, 60, 0.1, "/jobs answered again")
    recovery = time.monotonic() - healed_at
    final = load.wait(240)
    assert {code for code, _, _ in statuses} == {200}, statuses
    order = ["queued", "processing", "completed"]
    states = [order.index(body["status"]) for _, body, _ in statuses]
    assert states == sorted(states), statuses
    assert max(seconds for _, _, seconds in statuses) < 1.0, statuses
    assert {(code, body["error"]["code"]) for code, body, _ in listings} == {(503, "metadata_unavailable")}, listings
    slowest = max(seconds for _, _, seconds in listings)
    assert slowest < HTTP_TIMEOUT_SECONDS + 1.5, listings
    numbers = tally(stack, load, final, recovery)
    print(
        numbers.line("d gateway cut from metadata"),
        f"({len(statuses)} /status 200, slowest {max(s for _, _, s in statuses) * 1000:.0f} ms;",
        f"{len(listings)} /jobs 503, slowest {slowest:.1f} s; {len(load.refused)} refused)",
    )
    assert numbers.accepted >= 10 and numbers.lost == 0 and numbers.duplicated == 0, numbers


def _timed(url: str) -> tuple[int, dict, float]:
    """``GET url``: its status code, JSON body, and seconds taken."""
    started = time.monotonic()
    r = requests.get(url, timeout=HTTP_TIMEOUT_SECONDS * 3)
    return r.status_code, r.json(), time.monotonic() - started


def test_s3_host_unreachable_for_20_s_jobs_retry_and_none_fails(hosts, host_stack, tones):
    """(e) moto's host drops off the network for 20 s under load: workers retry their storage
    calls (``STORAGE_RETRIES`` tries with backoff), the metadata consumer retries its manifest
    writes; uploads during the outage are refused 503, and every accepted job completes."""
    stack = host_stack(workers=2, S3_TIMEOUT_SECONDS="2", STORAGE_RETRIES=str(S3_RETRIES))
    load = Load(stack, tones(60), count=30, interval=0.8).start()
    wait_until(lambda: len(load.accepted) >= 8, 60, 0.1, "some of the load accepted")
    hosts.moto_host.cut()
    try:
        time.sleep(S3_OUTAGE_SECONDS)
    finally:
        hosts.moto_host.heal()
    healed_at = time.monotonic()
    final = load.wait(240)
    recovery = load.first_completed_after(healed_at)
    numbers = tally(stack, load, final, recovery or 0.0)
    failed = {j: body.get("error") for j, body in final.items() if body["status"] == "failed"}
    print(numbers.line("e S3 host cut 20 s"), f"({len(load.refused)} refused during the outage)")
    assert failed == {} and numbers.lost == 0 and numbers.duplicated == 0, (numbers, failed)
    assert numbers.accepted >= 10 and recovery is not None


def test_killing_the_quorum_queue_leader_loses_no_confirmed_task(hosts, host_stack, tones):
    """(b) The node holding the conversion queue's leader is SIGKILLed mid-load: publishing and
    consuming resume within 30 s, and every accepted (confirmed) task completes, once."""
    cluster = hosts.cluster
    stack = host_stack(workers=2)
    queue = stack.topology.conversion_queue
    assert cluster.queue_members(queue) == sorted(n.name for n in cluster.nodes)
    leader = cluster.queue_leader(queue)

    # The load goes on posting for the whole 30 s the test allows after the kill (8 before it, 32
    # after, one a second), so a slow leader election is measured, not mistaken for a lost publisher.
    load = Load(stack, tones(4), count=40, interval=1.0).start()
    wait_until(lambda: len(load.accepted) >= 8, 60, 0.1, "a fifth of the load accepted")
    killed_at = time.monotonic()
    leader.kill()
    try:
        new_leader = wait_until(lambda: _leader_or_none(cluster, queue), 30, 0.5, "a new leader")
        assert new_leader is not leader
        final = load.wait(240)
        completed_after_kill = load.first_completed_after(killed_at, accepted_after=True)
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

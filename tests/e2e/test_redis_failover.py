"""Issue 18, scenario (c): the Redis primary is killed under load. Sentinel promotes the replica,
``/status`` answers within 10 s, and no job state is lost: the manifests restore what Redis missed.

The stack runs on a primary, a replica and three Sentinels of its own (tests/support/
redis_sentinel.py), with ``REDIS_SENTINELS`` set. Replication is asynchronous, so to be sure the
promoted replica misses acknowledged writes, its link to the primary is cut a few transitions
before the kill: the jobs created, started and completed in between exist on the old primary alone.
docs/reliability.md ("Hosts and partitions") records what the runs measured.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter

import pytest
import requests

from tests.support.faults import assert_stack_clean, log_lines, pid_alive, tone
from tests.support.net import wait_until
from tests.support.redis_sentinel import SentinelGroup
from tests.support.stack import Stack, running_stack

pytestmark = [pytest.mark.e2e, pytest.mark.hosts]

JOBS = 36
"""Jobs accepted in all (the issue asks for at least 30)."""
TONE_SECONDS = 30
POST_INTERVAL_SECONDS = 0.3
"""Pause between two submissions, so that they go on through the failover."""
KILL_AFTER_ACCEPTED = 12
UNREPLICATED_JOBS = 4
"""Jobs accepted (created on the primary alone) after the replication link is cut, before the kill;
conversions go on meanwhile, so some records also fall behind."""
STATUS_WITHIN_SECONDS = 10.0
LOAD_TIMEOUT_SECONDS = 180


class Poster:
    """Posts tones one after another until :data:`JOBS` are accepted (202); keeps every refusal
    (``(status, error code)``)."""

    def __init__(self, stack: Stack, path):
        self.stack, self.path = stack, path
        self.accepted: list[str] = []
        self.refused: list[tuple[int, str]] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while len(self.accepted) < JOBS:
            response = self.stack.convert(self.path)
            if response.status_code == 202:
                self.accepted.append(response.json()["job_id"])
            else:
                self.refused.append((response.status_code, response.json()["error"]["code"]))
            time.sleep(POST_INTERVAL_SECONDS)


def first_status_answer(stack: Stack, job_id: str, since: float) -> float:
    """Seconds from ``since`` until ``GET /status/<job_id>`` is answered 200."""

    def answered() -> bool:
        try:
            return requests.get(f"{stack.url}/status/{job_id}", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    wait_until(answered, 30, 0.05, "/status to answer")
    return time.monotonic() - since


def conversions_per_job(stack: Stack) -> Counter:
    records = [r for i in (1, 2) for r in log_lines(stack, f"conversion-{i}")]
    return Counter(r["job_id"] for r in records if r.get("msg", "").startswith("converted "))


def resync_counts(stack: Stack) -> dict[str, int]:
    """What the notifier's resyncs did in all: ``{"current": n, "restored": n, "advanced": n}``."""
    totals: Counter = Counter()
    for record in log_lines(stack, "metadata-notifier"):
        if record.get("msg", "").startswith("resync done: "):
            totals.update({k: int(v) for k, v in re.findall(r"'(\w+)': (\d+)", record["msg"])})
    return dict(totals)


def test_redis_primary_killed_under_load_loses_no_job(tmp_path):
    path = tone(tmp_path, TONE_SECONDS)
    with SentinelGroup(tmp_path / "redis") as group:
        env = {"REDIS_SENTINELS": group.sentinels, "OUTPUT_CACHE": "false"}
        with running_stack(tmp_path / "stack", workers=2, env_overrides=env, redis_url=group.primary_url()) as stack:
            poster = Poster(stack, path)
            poster.thread.start()
            wait_until(lambda: len(poster.accepted) >= KILL_AFTER_ACCEPTED, 60, 0.05, "jobs to be accepted")
            group.cut_replication()
            cut_at = len(poster.accepted)
            # Within a few seconds: a Sentinel would not promote a replica whose link has been down too long.
            wait_until(lambda: len(poster.accepted) >= cut_at + UNREPLICATED_JOBS, 8, 0.05, "jobs after the cut")
            probe = poster.accepted[-1]  # its record was written after the cut: the new primary lacks it
            killed_at = group.kill_primary()
            status_seconds = first_status_answer(stack, probe, killed_at)
            failover_seconds = group.wait_for_failover() - killed_at
            stack.redis_url = group.primary_url()

            poster.thread.join(LOAD_TIMEOUT_SECONDS)
            statuses = stack.wait_for_jobs(poster.accepted, LOAD_TIMEOUT_SECONDS)
            recovered_seconds = time.monotonic() - killed_at
            outcomes = Counter(body["status"] for body in statuses.values())
            conversions = conversions_per_job(stack)
            duplicated = [job_id for job_id, count in conversions.items() if count > 1]
            lost = [job_id for job_id, body in statuses.items() if body.get("status") != "completed"]
            resynced = resync_counts(stack)
            print(
                f"\nredis failover: accepted {len(poster.accepted)}, refused {Counter(poster.refused)}; "
                f"completed {outcomes['completed']}, lost {len(lost)}, duplicated {len(duplicated)}; "
                f"/status answered {status_seconds:.2f} s after the kill, Sentinels switched in "
                f"{failover_seconds:.2f} s, every job done {recovered_seconds:.1f} s after; resync {resynced}"
            )

            assert status_seconds <= STATUS_WITHIN_SECONDS
            assert len(poster.accepted) == JOBS and lost == [] and duplicated == []
            assert set(conversions) == set(poster.accepted)
            assert all(status == 503 for status, _ in poster.refused), poster.refused
            assert resynced.get("advanced", 0) + resynced.get("restored", 0) >= 1, "Redis lost no write?"
            assert_stack_clean(stack)
            jobs_index = requests.get(f"http://127.0.0.1:{stack.ports['metadata']}/jobs?limit=100", timeout=10)
            assert {job["job_id"] for job in jobs_index.json()["jobs"]} >= set(poster.accepted)
    assert not any(pid_alive(process.pid) for process in group.processes.values())
    assert not any(pid_alive(process.pid) for process in stack.processes.values())

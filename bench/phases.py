"""The measurements, each against a running :class:`~tests.support.stack.Stack` in the configuration
``./scripts/up`` starts (output cache on, default options).

Every siphon number is the whole job as a client sees it: POST until the MP3 is on disk. Every job
gets a distinct copy of its input (:class:`~bench.inputs.Variants`), so the output cache never
answers one from another. Every baseline is plain ffmpeg on the same file (``bench/plain.py``: with
siphon's encoder settings, ``equal``, and as a user types it, ``user``), run alternately with siphon
so both see the same noise from whatever else the machine is doing.

CPU is counted on the server side only (:class:`~bench.procs.CpuMeter`): every service's whole
process tree, Redis and RabbitMQ. The client threads and the baselines run in this process, which is
no part of any of them, so a client on the same machine neither flatters nor hurts the figure.
"""

from __future__ import annotations

import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bench.client import ApiClient, JobFailed
from bench.inputs import Input, Variants
from bench.load import LoadResult, run_load
from bench.plain import plain_batch_seconds, plain_seconds
from bench.procs import (
    CpuMeter,
    broker_pids,
    cpu_seconds,
    own_cpu_seconds,
    peak_rss_by_service,
    service_cpu_seconds,
)

JOB_RETRIES = 2
"""Runs of a failed job before the benchmark gives up."""

LATENCY_POLL_SECONDS = 0.02
"""How often the latency phase's client polls ``/status``: a plain HTTP client polling every 20 ms."""

THROUGHPUT_CLIENTS = 32
THROUGHPUT_POLL_SECONDS = 0.5
"""The throughput phase: its jobs are posted by this many clients, each polling every 0.5 s."""


@dataclass
class Bench:
    """What every phase needs: the stack's processes and URL, ffmpeg, a scratch directory, and the
    distinct input copies."""

    processes: dict
    base_url: str
    ffmpeg: str
    out_dir: Path
    variants: Variants
    fields: dict[str, str]
    completed_job_id: str | None = None
    failed_jobs: int = 0

    def client(self, poll_interval: float = 0.0) -> ApiClient:
        """A client polling every ``poll_interval`` seconds (0: the long-poll ``?wait=``)."""
        return ApiClient(self.base_url, poll_interval=poll_interval, fields=self.fields)

    def convert(self, source: Path, target: Path, poll_interval: float = 0.0) -> float:
        """One whole job, seconds. A job that fails is run again (up to :data:`JOB_RETRIES` times,
        counted in ``failed_jobs``): on a shared machine a test suite may restart the broker under
        it; the report must not hide that, nor end on it."""
        for attempt in range(JOB_RETRIES + 1):
            try:
                return self.client(poll_interval).convert(source, target)
            except JobFailed:
                self.failed_jobs += 1
                if attempt == JOB_RETRIES:
                    raise
        raise AssertionError("unreachable")

    def siphon(self, source: Path, poll_interval: float = 0.0) -> float:
        """One job through siphon on ``source`` (a distinct copy); the MP3 is written and removed."""
        target = self.out_dir / "siphon.mp3"
        try:
            return self.convert(source, target, poll_interval)
        finally:
            target.unlink(missing_ok=True)

    def plain(self, source: Path, kind: str) -> float:
        """One plain ffmpeg conversion of baseline ``kind``, wall seconds."""
        target = self.out_dir / f"plain-{kind}.mp3"
        try:
            return plain_seconds(self.ffmpeg, source, target, kind)
        finally:
            target.unlink(missing_ok=True)


@dataclass(frozen=True)
class Latency:
    """One input's job latency: every sample (wall seconds) of both baselines and of siphon."""

    label: str
    equal: list[float]
    user: list[float]
    siphon: list[float]

    @property
    def equal_p50(self) -> float:
        return statistics.median(self.equal)

    @property
    def user_p50(self) -> float:
        return statistics.median(self.user)

    @property
    def siphon_p50(self) -> float:
        return statistics.median(self.siphon)

    @property
    def overhead_p50(self) -> float:
        """siphon's median minus plain ffmpeg's with equal settings, seconds."""
        return self.siphon_p50 - self.equal_p50

    @property
    def ratio(self) -> float:
        """siphon's median over plain ffmpeg's with equal settings."""
        return self.siphon_p50 / self.equal_p50

    @property
    def user_ratio(self) -> float:
        """siphon's median over ``ffmpeg -i in.mp4 -vn out.mp3``'s."""
        return self.siphon_p50 / self.user_p50


def measure_latency(bench: Bench, source: Input, runs: int) -> Latency:
    """``runs`` rounds of: plain (equal settings), plain (as typed), siphon polling every
    :data:`LATENCY_POLL_SECONDS`, each siphon job on a fresh copy of ``source``."""
    equal, user, siphon = [], [], []
    for _ in range(runs):
        copy = bench.variants.make(source.path)
        try:
            equal.append(bench.plain(copy, "equal"))
            user.append(bench.plain(copy, "user"))
            siphon.append(bench.siphon(copy, LATENCY_POLL_SECONDS))
        finally:
            Variants.release([copy])
    return Latency(source.label, equal, user, siphon)


@dataclass(frozen=True)
class CpuUse:
    """CPU of ``jobs`` jobs: siphon's ffmpeg's own (``ffmpeg``, seconds, as sampled inside the
    sandbox), plain ffmpeg's with siphon's settings on the same files (``plain``), and the server's
    by part (``{part: seconds}``, ``conversion`` including the ffmpeg it ran); the machine's other
    load during the siphon run (CPU seconds, and its wall seconds)."""

    jobs: int
    ffmpeg: float
    plain: float
    server: dict[str, float]
    other: float
    wall: float
    background: dict[str, float]
    """Redis's and RabbitMQ's CPU seconds at their rate in a quiet window just before the run
    (other users of the shared brokers), scaled to the run's wall time."""

    @property
    def total(self) -> float:
        return sum(self.server.values())

    @property
    def net_efficiency(self) -> float:
        """:attr:`efficiency` with the brokers' background CPU taken out of the server's."""
        return self.ffmpeg / (self.total - sum(self.background.values()))

    @property
    def efficiency(self) -> float:
        """ffmpeg's CPU over all the server's (1.0: siphon spends nothing beside ffmpeg)."""
        return self.ffmpeg / self.total

    @property
    def outside_per_job(self) -> float:
        """CPU seconds per job the server spent outside ffmpeg."""
        return (self.total - self.ffmpeg) / self.jobs

    def per_job(self, part: str) -> float:
        """CPU seconds per job of ``part`` outside ffmpeg (``conversion`` less ffmpeg's own)."""
        spent = self.server.get(part, 0.0) - (self.ffmpeg if part == "conversion" else 0.0)
        return spent / self.jobs


def measure_cpu(bench: Bench, source: Input, jobs: int) -> CpuUse:
    """``jobs`` distinct copies of ``source``: plain ffmpeg (siphon's settings, two at a time) for
    comparison, then all posted to siphon at once by ``jobs`` long-polling clients, metered."""
    copies = bench.variants.many(source.path, jobs)
    try:
        before = own_cpu_seconds()
        plain_batch_seconds(bench.ffmpeg, copies, bench.out_dir, 2, "equal")
        ffmpeg = own_cpu_seconds() - before
        rates = broker_rates(BROKER_QUIET_SECONDS)
        meter = CpuMeter(bench.processes).start()
        _siphon_batch_seconds(bench, copies, jobs, 0.0)
        meter.stop()
    finally:
        Variants.release(copies)
    background = {part: rate * meter.wall for part, rate in rates.items()}
    return CpuUse(jobs, meter.ffmpeg, ffmpeg, meter.server, meter.other, meter.wall, background)


BROKER_QUIET_SECONDS = 3.0
"""The quiet window in which :func:`broker_rates` reads the shared brokers' background, seconds."""


def broker_rates(seconds: float) -> dict[str, float]:
    """CPU seconds per second Redis and RabbitMQ spend over ``seconds`` while siphon does nothing:
    on a shared machine other users' tests drive them too."""
    pids = broker_pids()
    before = {part: sum(cpu_seconds(p)[0] for p in found) for part, found in pids.items()}
    time.sleep(seconds)
    return {part: (sum(cpu_seconds(p)[0] for p in found) - before[part]) / seconds for part, found in pids.items()}


@dataclass(frozen=True)
class Throughput:
    """``jobs`` conversions at once: wall seconds of each run, plain (``workers`` processes, both
    baselines) and siphon (``clients`` clients polling every ``poll`` seconds)."""

    jobs: int
    workers: int
    clients: int
    poll: float
    equal: list[float]
    user: list[float]
    siphon: list[float]

    @property
    def efficiency(self) -> float:
        """Plain ffmpeg's (equal settings) median wall time over siphon's (1.0: siphon adds nothing)."""
        return statistics.median(self.equal) / statistics.median(self.siphon)

    @property
    def user_efficiency(self) -> float:
        """The same against ``ffmpeg -i in.mp4 -vn out.mp3``."""
        return statistics.median(self.user) / statistics.median(self.siphon)


def measure_throughput(bench: Bench, source: Input, jobs: int, workers: int, runs: int) -> Throughput:
    """Each run: ``jobs`` fresh copies of ``source`` through ``workers`` parallel plain ffmpeg
    processes (both baselines), then posted to siphon by :data:`THROUGHPUT_CLIENTS` clients polling
    every :data:`THROUGHPUT_POLL_SECONDS`, every MP3 downloaded."""
    equal, user, siphon = [], [], []
    for _ in range(runs):
        copies = bench.variants.many(source.path, jobs)
        try:
            equal.append(plain_batch_seconds(bench.ffmpeg, copies, bench.out_dir, workers, "equal"))
            user.append(plain_batch_seconds(bench.ffmpeg, copies, bench.out_dir, workers, "user"))
            siphon.append(_siphon_batch_seconds(bench, copies, THROUGHPUT_CLIENTS, THROUGHPUT_POLL_SECONDS))
        finally:
            Variants.release(copies)
    return Throughput(jobs, workers, THROUGHPUT_CLIENTS, THROUGHPUT_POLL_SECONDS, equal, user, siphon)


def _siphon_batch_seconds(bench: Bench, sources: list[Path], clients: int, poll: float) -> float:
    """Every source through siphon by ``clients`` client threads, wall seconds until the last MP3."""
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(
            pool.map(
                lambda pair: bench.convert(pair[1], bench.out_dir / f"siphon-{pair[0]}.mp3", poll), enumerate(sources)
            )
        )
    for i in range(len(sources)):
        (bench.out_dir / f"siphon-{i}.mp3").unlink(missing_ok=True)
    return time.perf_counter() - started


@dataclass(frozen=True)
class Memory:
    """Peak RSS (bytes) of each service after the small input and after the large one."""

    small_label: str
    large_label: str
    small: dict[str, int]
    large: dict[str, int]
    large_seconds: float

    def growth(self, service: str) -> int:
        return self.large[service] - self.small[service]


def measure_memory(bench: Bench, small: Input, large: Input) -> Memory:
    """Peaks after ``small`` (run twice, on two copies: the first run loads what a job lazily
    imports), then after ``large`` (its first upload in this stack, so no cache hit). VmHWM never
    goes down, so the difference is what ``large`` added."""
    for _ in range(2):
        copy = bench.variants.make(small.path)
        try:
            bench.siphon(copy)
        finally:
            Variants.release([copy])
    small_peaks = peak_rss_by_service(bench.processes)
    large_seconds = bench.siphon(large.path)
    return Memory(small.label, large.label, small_peaks, peak_rss_by_service(bench.processes), large_seconds)


STATUS_SERVICES = ("gateway", "metadata")
"""The services a ``GET /status`` request crosses (then Redis, which is not siphon's process)."""


@dataclass(frozen=True)
class StatusLoad:
    """``GET /status`` of one job (``state``: completed or processing) under load: what the load
    generator saw, and what each service paid for it (CPU seconds per request, by service). The rate
    and the percentiles move with whatever else the machine runs; the CPU per request moves less."""

    state: str
    load: LoadResult
    cpu_per_request: dict[str, float]

    @property
    def ceiling(self) -> float:
        """Requests per second all the machine's cores could answer if they ran nothing but these
        services: cores ÷ the services' CPU seconds per request (wrk, Redis and the kernel's share
        of loopback come on top, so the real rate stays below it)."""
        return (os.cpu_count() or 1) / max(sum(self.cpu_per_request.values()), 1e-9)


STATUS_WARMUP_SECONDS = 2.0
"""The same load, run and discarded before the measured one (at most as long as it): the first
requests open connections all the way down (wrk's to the gateway, the gateway's pool to the
metadata service, the metadata service's to Redis)."""


def measure_status(bench: Bench, state: str, job_id: str, seconds: float, connections: int) -> StatusLoad:
    """``GET /status/<job_id>`` (a job in ``state``) under ``connections`` keep-alive connections
    for ``seconds`` (after :data:`STATUS_WARMUP_SECONDS` of the same load), and the CPU each service
    spent on it."""
    url = f"{bench.base_url}/status/{job_id}"
    run_load(url, min(STATUS_WARMUP_SECONDS, seconds), connections)
    before = service_cpu_seconds(bench.processes, STATUS_SERVICES)
    load = run_load(url, seconds, connections)
    after = service_cpu_seconds(bench.processes, STATUS_SERVICES)
    answered = max(load.requests, 1)
    spent = {service: (after[service] - before[service]) / answered for service in STATUS_SERVICES}
    return StatusLoad(state, load, spent)


def measure_status_both(bench: Bench, clip: Input, long: Input, seconds: float, connections: int) -> list[StatusLoad]:
    """``/status`` of a completed job (a copy of ``clip``), then of one still processing (a copy of
    ``long``, the longest input: checked to be ``processing`` before and after the load, and
    cancelled then; if it finished during the load, there is no processing figure)."""
    client = bench.client()
    copies = [bench.variants.make(clip.path), bench.variants.make(long.path)]
    try:
        done = client.submit(copies[0])
        client.wait(done)
        loads = [measure_status(bench, "completed", done, seconds, connections)]
        busy = client.submit(copies[1])
        if _wait_for_state(client, busy, "processing", 120):
            load = measure_status(bench, "processing", busy, seconds, connections)
            if client.status(busy)["status"] == "processing":
                loads.append(load)
        client.cancel(busy)
    finally:
        Variants.release(copies)
    return loads


def _wait_for_state(client: ApiClient, job_id: str, state: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.status(job_id)["status"] == state:
            return True
        time.sleep(0.05)
    return False

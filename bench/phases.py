"""The four measurements, each against a running :class:`~tests.support.stack.Stack`.

Every siphon number is the whole job as a client sees it: POST until the MP3 is on disk.
Every baseline is plain ffmpeg on the same file, run alternately with siphon so both see the
same noise from whatever else the machine is doing.
"""

from __future__ import annotations

import os
import resource
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bench.client import ApiClient, JobFailed
from bench.inputs import Input
from bench.load import LoadResult, run_load
from bench.plain import plain_batch_seconds, plain_seconds
from bench.procs import peak_rss_by_service, service_cpu_seconds, stack_cpu_seconds

JOB_RETRIES = 2
"""Runs of a failed job before the benchmark gives up."""


@dataclass
class Bench:
    """What every phase needs: the stack's processes and client, ffmpeg, a scratch directory."""

    processes: dict
    client: ApiClient
    ffmpeg: str
    out_dir: Path
    completed_job_id: str | None = None
    failed_jobs: int = 0

    def convert(self, source: Path, target: Path) -> float:
        """One whole job, seconds. A job that fails is run again (up to :data:`JOB_RETRIES` times,
        counted in ``failed_jobs``): on a shared machine a test suite may restart the broker under
        it; the report must not hide that, nor end on it."""
        for attempt in range(JOB_RETRIES + 1):
            try:
                return self.client.convert(source, target)
            except JobFailed:
                self.failed_jobs += 1
                if attempt == JOB_RETRIES:
                    raise
        raise AssertionError("unreachable")

    def siphon(self, source: Input) -> Sample:
        """One job through siphon; the MP3 is written and removed."""
        target = self.out_dir / "siphon.mp3"
        own_before, media_before = stack_cpu_seconds(self.processes)
        try:
            wall = self.convert(source.path, target)
        finally:
            target.unlink(missing_ok=True)
        own_after, media_after = stack_cpu_seconds(self.processes)
        return Sample(wall, own_after - own_before, media_after - media_before)

    def plain(self, source: Input) -> Sample:
        """One plain ffmpeg conversion."""
        target = self.out_dir / "plain.mp3"
        before = _children_cpu_seconds()
        try:
            wall = plain_seconds(self.ffmpeg, source.path, target)
        finally:
            target.unlink(missing_ok=True)
        return Sample(wall, 0.0, _children_cpu_seconds() - before)


@dataclass(frozen=True)
class Sample:
    """One conversion: wall seconds, and CPU seconds of siphon's Python processes (``own``) and of
    the ffmpeg/ffprobe processes (``media``). CPU time barely moves when other work shares the
    machine, so it shows siphon's cost where wall time is noisy."""

    wall: float
    own_cpu: float
    media_cpu: float


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class Latency:
    """One input's job latency: every sample (seconds), plain ffmpeg's and siphon's."""

    label: str
    plain_samples: list[Sample]
    siphon_samples: list[Sample]

    @property
    def plain(self) -> list[float]:
        return [s.wall for s in self.plain_samples]

    @property
    def siphon(self) -> list[float]:
        return [s.wall for s in self.siphon_samples]

    @property
    def plain_p50(self) -> float:
        return statistics.median(self.plain)

    @property
    def siphon_p50(self) -> float:
        return statistics.median(self.siphon)

    @property
    def own_cpu_p50(self) -> float:
        """CPU seconds siphon's own processes spent on one job (everything but ffmpeg/ffprobe)."""
        return statistics.median(s.own_cpu for s in self.siphon_samples)

    @property
    def media_cpu_ratio(self) -> float:
        """CPU of siphon's ffprobe + ffmpeg over plain ffmpeg's, medians."""
        return statistics.median(s.media_cpu for s in self.siphon_samples) / max(
            statistics.median(s.media_cpu for s in self.plain_samples), 1e-9
        )

    @property
    def overhead_p50(self) -> float:
        """siphon's median minus plain ffmpeg's, seconds."""
        return self.siphon_p50 - self.plain_p50

    @property
    def ratio(self) -> float:
        return self.siphon_p50 / self.plain_p50


def measure_latency(bench: Bench, source: Input, runs: int) -> Latency:
    """``runs`` alternating plain and siphon conversions of ``source``."""
    plain, siphon = [], []
    for _ in range(runs):
        plain.append(bench.plain(source))
        siphon.append(bench.siphon(source))
    return Latency(source.label, plain, siphon)


@dataclass(frozen=True)
class Throughput:
    """``jobs`` conversions at once: wall seconds of each run, plain (2 processes) and siphon."""

    jobs: int
    workers: int
    plain: list[float]
    siphon: list[float]

    @property
    def efficiency(self) -> float:
        """Plain ffmpeg's median wall time over siphon's (1.0: siphon adds nothing)."""
        return statistics.median(self.plain) / statistics.median(self.siphon)


def measure_throughput(bench: Bench, source: Input, jobs: int, workers: int, runs: int) -> Throughput:
    """Post ``jobs`` copies of ``source`` at once and wait for every MP3; against ``workers``
    parallel plain ffmpeg processes doing the same conversions."""
    plain, siphon = [], []
    for _ in range(runs):
        plain.append(plain_batch_seconds(bench.ffmpeg, [source.path] * jobs, bench.out_dir, workers))
        siphon.append(_siphon_batch_seconds(bench, source, jobs))
    for mp3 in bench.out_dir.glob("*.mp3"):
        mp3.unlink()
    return Throughput(jobs, workers, plain, siphon)


def _siphon_batch_seconds(bench: Bench, source: Input, jobs: int) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(lambda i: bench.convert(source.path, bench.out_dir / f"siphon-{i}.mp3"), range(jobs)))
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
    """Peaks after ``small`` (run twice: the first run loads what a job lazily imports), then
    after ``large``. VmHWM never goes down, so the difference is what ``large`` added."""
    bench.siphon(small)
    bench.siphon(small)
    small_peaks = peak_rss_by_service(bench.processes)
    large_seconds = bench.siphon(large).wall
    return Memory(small.label, large.label, small_peaks, peak_rss_by_service(bench.processes), large_seconds)


STATUS_SERVICES = ("gateway", "metadata")
"""The services a ``GET /status`` request crosses (then Redis, which is not siphon's process)."""


@dataclass(frozen=True)
class StatusLoad:
    """``GET /status`` under load: what the load generator saw, and what each service paid for it
    (CPU seconds per request, by service). The rate and the percentiles move with whatever else
    the machine runs; the CPU per request moves less (the host's own speed still shows in it), so
    it says what the code costs on this host."""

    load: LoadResult
    cpu_per_request: dict[str, float]

    @property
    def ceiling(self) -> float:
        """Requests per second all the machine's cores could answer if they ran nothing but these
        services: cores ÷ the services' CPU seconds per request (wrk, Redis and the kernel's share
        of loopback come on top, so the real rate stays below it)."""
        return (os.cpu_count() or 1) / sum(self.cpu_per_request.values())


STATUS_WARMUP_SECONDS = 2.0
"""The same load, run and discarded before the measured one (at most as long as it): the first
requests open connections all the way down (wrk's to the gateway, the gateway's pool to the
metadata service, the metadata service's to Redis), which measured 3-5 ms more p99 in a cold
10-second run than in the warm ones after it."""


def measure_status(bench: Bench, base_url: str, seconds: float, connections: int) -> StatusLoad:
    """``GET /status/<id>`` of a completed job under ``connections`` keep-alive connections for
    ``seconds`` (after :data:`STATUS_WARMUP_SECONDS` of the same load), and the CPU each service
    spent on it."""
    url = f"{base_url}/status/{bench.completed_job_id}"
    run_load(url, min(STATUS_WARMUP_SECONDS, seconds), connections)
    before = service_cpu_seconds(bench.processes, STATUS_SERVICES)
    load = run_load(url, seconds, connections)
    after = service_cpu_seconds(bench.processes, STATUS_SERVICES)
    answered = max(load.requests, 1)
    return StatusLoad(load, {service: (after[service] - before[service]) / answered for service in STATUS_SERVICES})

"""The benchmark's table: printed, and written between markers into docs/performance.md.

Targets are issue #16's, for the configuration ``./scripts/up`` starts (local storage); S3 (moto
server) figures stand beside them when measured.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.phases import STATUS_SERVICES, CpuUse, Latency, Memory, StatusLoad, Throughput
from bench.video import VideoResults, video_details, video_row_specs

MB = 1e6
SERVICES = ("gateway", "upload", "conversion", "metadata")
CPU_PARTS = ("gateway", "upload", "metadata", "conversion", "redis", "rabbitmq")
"""Where the server's CPU outside ffmpeg goes, in the table's order (``conversion``: the worker's
Python, ffprobe, bwrap and forked children, i.e. its whole tree less ffmpeg's own CPU)."""


@dataclass
class BackendResults:
    """Everything measured on one storage backend (a phase left out stays None or empty)."""

    latency: list[Latency] = field(default_factory=list)
    cpu: CpuUse | None = None
    throughput: Throughput | None = None
    memory: Memory | None = None
    status: list[StatusLoad] = field(default_factory=list)
    video: VideoResults | None = None
    failed_jobs: int = 0


@dataclass(frozen=True)
class Row:
    """One line of the table: a metric, its target (text), and how to judge and show a value."""

    metric: str
    target: str
    value: Callable[[BackendResults], float | None]
    show: Callable[[float], str]
    meets: Callable[[float], bool] | None = None


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _s(seconds: float) -> str:
    return f"{seconds:.2f} s"


def _times(v: float) -> str:
    return f"{v:.2f}×"


def _latency_rows(index: int, label: str, final: str) -> list[Row]:
    def pick(attr: str):
        return lambda r: getattr(r.latency[index], attr) if len(r.latency) > index else None

    rows = [
        Row(f"{label}: plain ffmpeg, siphon's settings, p50", "", pick("equal_p50"), _s),
        Row(f"{label}: plain ffmpeg as typed (-i in -vn out.mp3), p50", "", pick("user_p50"), _s),
        Row(f"{label}: siphon p50 (POST, poll every 20 ms, download)", "", pick("siphon_p50"), _s),
    ]
    if final == "overhead":
        rows.append(
            Row(
                f"{label}: overhead p50 (vs equal settings)", "≤ 50 ms", pick("overhead_p50"), _ms, lambda v: v <= 0.050
            )
        )
    else:
        rows.append(
            Row(f"{label}: siphon / plain (equal settings)", "≤ 1.10×", pick("ratio"), _times, lambda v: v <= 1.10)
        )
        rows.append(Row(f"{label}: siphon / plain (as typed)", "", pick("user_ratio"), _times))
    return rows


def _cpu_rows(cpu: CpuUse) -> list[Row]:
    def pick(fn):
        return lambda r: fn(r.cpu) if r.cpu else None

    label = f"CPU, {cpu.jobs} one-minute jobs"
    return [
        Row(f"{label}: plain ffmpeg (siphon's settings) per job", "", pick(lambda c: c.plain / c.jobs), _ms),
        Row(f"{label}: siphon's ffmpeg per job (in the sandbox)", "", pick(lambda c: c.ffmpeg / c.jobs), _ms),
        Row(f"{label}: server per job (every tree, Redis, RabbitMQ)", "", pick(lambda c: c.total / c.jobs), _ms),
        Row(
            f"{label}: efficiency (ffmpeg / server)",
            "≥ 0.93",
            pick(lambda c: c.efficiency),
            lambda v: f"{v:.2f}",
            lambda v: v >= 0.93,
        ),
        Row(
            f"{label}: efficiency, the brokers' background taken out",
            "",
            pick(lambda c: c.net_efficiency),
            lambda v: f"{v:.2f}",
        ),
        Row(
            f"{label}: outside ffmpeg per job", "≤ 35 ms", pick(lambda c: c.outside_per_job), _ms, lambda v: v <= 0.035
        ),
        *(
            Row(f"{label}: outside ffmpeg per job, {part}", "", pick(lambda c, p=part: c.per_job(p)), _ms)
            for part in CPU_PARTS
        ),
    ]


def _memory_rows(memory: Memory | None) -> list[Row]:
    rows = []
    for service in SERVICES:

        def value(r, s=service):
            return r.memory.growth(s) / MB if r.memory and s in r.memory.large else None

        def show(v, s=service):
            return f"+{v:.1f} MB"

        target = "≤ 30 MB" if service != "metadata" else ""
        rows.append(Row(f"peak RSS growth, {service}", target, value, show, (lambda v: v <= 30) if target else None))
    return rows


def _status_rows(index: int, state: str) -> list[Row]:
    def find(r: BackendResults) -> StatusLoad | None:
        return next((s for s in r.status if s.state == state), None)

    def load(attr: str):
        return lambda r: getattr(find(r).load, attr) if find(r) else None

    def cpu(service: str):
        return lambda r: find(r).cpu_per_request[service] if find(r) else None

    def ceiling(r: BackendResults) -> float | None:
        return find(r).ceiling if find(r) else None

    def per_second(v: float) -> str:
        return f"{v:.0f}"

    def ms(v: float) -> str:
        return f"{v * 1000:.1f} ms"

    def cpu_ms(v: float) -> str:
        return f"{v * 1000:.2f} ms"

    floor = 4000 if state == "completed" else 2500
    rows = [
        Row(
            f"/status ({state} job) requests per second",
            f"≥ {floor}",
            load("requests_per_second"),
            per_second,
            lambda v: v >= floor,
        ),
        Row(f"/status ({state} job) p50", "", load("p50_seconds"), ms),
    ]
    if state == "completed":
        rows.append(Row(f"/status ({state} job) p99", "≤ 15 ms", load("p99_seconds"), ms, lambda v: v <= 0.015))
    else:
        rows.append(Row(f"/status ({state} job) p99", "", load("p99_seconds"), ms))
    rows += [Row(f"/status ({state} job) CPU per request, {s}", "", cpu(s), cpu_ms) for s in STATUS_SERVICES]
    rows.append(Row(f"/status ({state} job) CPU-bound ceiling (cores ÷ CPU per request)", "", ceiling, per_second))
    return rows


def build_rows(sample: BackendResults) -> list[Row]:
    """The rows for whatever the results hold (labels come from the inputs measured)."""
    rows: list[Row] = []
    labels = [latency.label for latency in sample.latency]
    if labels:
        rows += _latency_rows(0, labels[0], "overhead")
    if len(labels) > 1:
        rows += _latency_rows(1, labels[1], "ratio")
    if sample.cpu:
        rows += _cpu_rows(sample.cpu)
    if sample.throughput:
        t = sample.throughput

        def median(attr: str):
            return lambda r: statistics.median(getattr(r.throughput, attr)) if r.throughput else None

        rows += [
            Row(f"{t.jobs} jobs: {t.workers} plain ffmpeg processes, siphon's settings", "", median("equal"), _s),
            Row(f"{t.jobs} jobs: {t.workers} plain ffmpeg processes, as typed", "", median("user"), _s),
            Row(
                f"{t.jobs} jobs: siphon, {t.workers} workers, {t.clients} clients polling every {t.poll:g} s",
                "",
                median("siphon"),
                _s,
            ),
            Row(
                "throughput efficiency (plain, siphon's settings / siphon)",
                "≥ 0.85",
                lambda r: r.throughput.efficiency if r.throughput else None,
                lambda v: f"{v:.2f}",
                lambda v: v >= 0.85,
            ),
            Row(
                "throughput efficiency (plain as typed / siphon)",
                "",
                lambda r: r.throughput.user_efficiency if r.throughput else None,
                lambda v: f"{v:.2f}",
            ),
        ]
    if sample.memory:
        rows += _memory_rows(sample.memory)
    for i, s in enumerate(sample.status):
        rows += _status_rows(i, s.state)
    if sample.video:
        rows += [Row(*spec) for spec in video_row_specs()]
    return rows


def _cell(row: Row, results: BackendResults) -> str:
    value = row.value(results)
    if value is None:
        return "—"
    mark = "" if row.meets is None else (" ✓" if row.meets(value) else " ✗")
    return row.show(value) + mark


def table(results: dict[str, BackendResults]) -> list[list[str]]:
    """Header and rows: metric, target, then one column per backend."""
    sample = next(iter(results.values()))
    header = ["metric", "target (local)", *(_backend_title(b) for b in results)]
    return [header] + [
        [row.metric, row.target or "", *(_cell(row, r) for r in results.values())] for row in build_rows(sample)
    ]


def _backend_title(backend: str) -> str:
    return "S3 (moto server)" if backend == "s3" else backend


def details(results: dict[str, BackendResults]) -> list[str]:
    """Lines with the raw figures behind the table (every sample, the peaks, the load tool)."""
    lines = []
    for backend, r in results.items():
        for lat in r.latency:
            lines.append(
                f"{backend}, {lat.label}: plain (siphon's settings) {_samples(lat.equal)}; "
                f"plain (as typed) {_samples(lat.user)}; siphon {_samples(lat.siphon)}"
            )
        if r.cpu:
            c = r.cpu
            parts = ", ".join(f"{part} {seconds:.2f} s" for part, seconds in sorted(c.server.items()))
            quiet = ", ".join(f"{part} {seconds:.2f} s" for part, seconds in sorted(c.background.items()))
            lines.append(
                f"{backend}, CPU of {c.jobs} jobs: plain ffmpeg {c.plain:.2f} s; siphon's ffmpeg {c.ffmpeg:.2f} s; "
                f"server {c.total:.2f} s ({parts}); brokers' background before the run, scaled to it: {quiet}; "
                f"everything else on the machine meanwhile {c.other:.2f} s over {c.wall:.1f} s "
                f"({c.other / max(c.wall, 1e-9):.2f} cores busy)"
            )
        if r.throughput:
            t = r.throughput
            lines.append(
                f"{backend}, throughput: plain (siphon's settings) {_samples(t.equal)}; plain (as typed) "
                f"{_samples(t.user)}; siphon {_samples(t.siphon)}"
            )
        if r.memory:
            m = r.memory
            peaks = ", ".join(f"{s} {m.small[s] / MB:.1f} → {m.large[s] / MB:.1f} MB" for s in SERVICES if s in m.large)
            lines.append(
                f"{backend}, peak RSS after {m.small_label} → after {m.large_label} "
                f"(whole job {m.large_seconds:.1f} s): {peaks}"
            )
        if r.video:
            lines += video_details(backend, r.video)
        for s in r.status:
            lines.append(f"{backend}, /status of a {s.state} job: {s.load.tool}, {s.load.errors} errors")
        lines.append(f"{backend}: {r.failed_jobs} jobs failed and were run again")
    return lines


def _samples(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.3f}" for v in values) + "] s"


def render_text(machine: dict[str, str], rows: list[list[str]], notes: list[str]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()), ""]
    for i, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines + [""] + notes)


def markers(section: str) -> tuple[str, str]:
    """The comments around a generated block: ``<!-- bench:begin -->`` for the main section."""
    name = "bench" if section == "main" else f"bench:{section}"
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def render_markdown(
    machine: dict[str, str], rows: list[list[str]], notes: list[str], command: str, section: str = "main"
) -> str:
    begin, end = markers(section)
    out = [begin, f"Generated by `{command}`.", "", "| machine | |", "| --- | --- |"]
    out += [f"| {k} | {v} |" for k, v in machine.items()]
    out += ["", "| " + " | ".join(rows[0]) + " |", "|" + " --- |" * len(rows[0])]
    out += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    out += ["", "Raw figures:", ""] + [f"- {line}" for line in notes] + [end]
    return "\n".join(out) + "\n"


def write_markdown(path: Path, block: str, section: str = "main") -> None:
    """Replace the ``section``'s generated block in ``path`` (keeping the prose around it), or add it."""
    begin, end = markers(section)
    text = path.read_text() if path.exists() else "# Performance\n"
    if begin in text and end in text:
        head, _, rest = text.partition(begin)
        _, _, tail = rest.partition(end)
        text = head + block.rstrip("\n") + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)

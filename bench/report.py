"""The benchmark's table: printed, and written between markers into docs/performance.md.

Targets are the issue's, for the local storage backend; S3 (moto server) figures stand beside them.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.phases import STATUS_SERVICES, Latency, Memory, StatusLoad, Throughput
from bench.video import VideoResults, video_details, video_row_specs

MB = 1e6
SERVICES = ("gateway", "upload", "conversion", "metadata")


@dataclass
class BackendResults:
    """Everything measured on one storage backend (a phase left out stays None)."""

    latency: list[Latency] = field(default_factory=list)
    throughput: Throughput | None = None
    memory: Memory | None = None
    status: StatusLoad | None = None
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


def _latency_rows(index: int, label: str, final: str) -> list[Row]:
    def pick(attr: str):
        return lambda r: getattr(r.latency[index], attr) if len(r.latency) > index else None

    rows = [
        Row(f"{label}: plain ffmpeg p50", "", pick("plain_p50"), _s),
        Row(f"{label}: siphon p50", "", pick("siphon_p50"), _s),
        Row(f"{label}: siphon's own CPU per job (not ffmpeg)", "", pick("own_cpu_p50"), _ms),
        Row(f"{label}: ffprobe+ffmpeg CPU / plain ffmpeg CPU", "", pick("media_cpu_ratio"), lambda v: f"{v:.2f}×"),
    ]
    if final == "overhead":
        rows.append(Row(f"{label}: overhead p50", "≤ 100 ms", pick("overhead_p50"), _ms, lambda v: v <= 0.100))
    else:
        rows.append(
            Row(f"{label}: siphon / plain", "≤ 1.25×", pick("ratio"), lambda v: f"{v:.2f}×", lambda v: v <= 1.25)
        )
    return rows


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


def _status_rows() -> list[Row]:
    def load(attr: str):
        return lambda r: getattr(r.status.load, attr) if r.status else None

    def cpu(service: str):
        return lambda r: r.status.cpu_per_request[service] if r.status else None

    def ceiling(r: BackendResults) -> float | None:
        return r.status.ceiling if r.status else None

    def per_second(v: float) -> str:
        return f"{v:.0f}"

    def ms(v: float) -> str:
        return f"{v * 1000:.1f} ms"

    def cpu_ms(v: float) -> str:
        return f"{v * 1000:.2f} ms"

    return [
        Row("/status requests per second", "≥ 1500", load("requests_per_second"), per_second, lambda v: v >= 1500),
        Row("/status p50", "", load("p50_seconds"), ms),
        Row("/status p99", "≤ 25 ms", load("p99_seconds"), ms, lambda v: v <= 0.025),
        *(Row(f"/status CPU per request, {s}", "", cpu(s), cpu_ms) for s in STATUS_SERVICES),
        Row("/status CPU-bound ceiling (cores ÷ CPU per request)", "", ceiling, per_second),
    ]


def build_rows(sample: BackendResults) -> list[Row]:
    """The rows for whatever the results hold (labels come from the inputs measured)."""
    rows: list[Row] = []
    labels = [latency.label for latency in sample.latency]
    if labels:
        rows += _latency_rows(0, labels[0], "overhead")
    if len(labels) > 1:
        rows += _latency_rows(1, labels[1], "ratio")
    if sample.throughput:
        t = sample.throughput
        rows += [
            Row(
                f"{t.jobs} jobs: {t.workers} plain ffmpeg processes",
                "",
                lambda r: statistics.median(r.throughput.plain) if r.throughput else None,
                _s,
            ),
            Row(
                f"{t.jobs} jobs: siphon, {t.workers} workers",
                "",
                lambda r: statistics.median(r.throughput.siphon) if r.throughput else None,
                _s,
            ),
            Row(
                "throughput efficiency (plain / siphon)",
                "≥ 0.85",
                lambda r: r.throughput.efficiency if r.throughput else None,
                lambda v: f"{v:.2f}",
                lambda v: v >= 0.85,
            ),
        ]
    if sample.memory:
        rows += _memory_rows(sample.memory)
    if sample.status:
        rows += _status_rows()
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
            lines.append(f"{backend}, {lat.label}: plain {_samples(lat.plain)}; siphon {_samples(lat.siphon)}")
        if r.throughput:
            lines.append(
                f"{backend}, throughput: plain {_samples(r.throughput.plain)}; siphon {_samples(r.throughput.siphon)}"
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
        if r.status:
            lines.append(f"{backend}, /status load: {r.status.load.tool}, {r.status.load.errors} errors")
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

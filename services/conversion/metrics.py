"""The conversion worker's Prometheus metrics (served on ``METRICS_PORT``; see ``shared/metrics.py``).

Observed once per task, after its outcome is published: nothing is counted per chunk or per second.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

CONVERSION_SECONDS = Histogram(
    "siphon_conversion_seconds",
    "Wall-clock seconds ffmpeg spent on one successful conversion (every pass).",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
)
REALTIME_FACTOR = Histogram(
    "siphon_conversion_realtime_factor",
    "Seconds of audio produced per wall-clock second of conversion (x realtime).",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000),
)
OUTPUT_BYTES = Counter("siphon_conversion_output_bytes_total", "Bytes of audio the workers stored.")
FAILURES = Counter("siphon_conversion_failures_total", "Jobs a worker failed, by error code.", ["code"])


def observe_conversion(seconds: float, audio_seconds: float, output_bytes: int) -> None:
    """One successful conversion: ``seconds`` of work produced ``audio_seconds`` in ``output_bytes``."""
    CONVERSION_SECONDS.observe(seconds)
    if seconds > 0:
        REALTIME_FACTOR.observe(audio_seconds / seconds)
    OUTPUT_BYTES.inc(output_bytes)


def count_failure(code: str) -> None:
    FAILURES.labels(code).inc()

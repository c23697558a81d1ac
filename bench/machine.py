"""A one-line description of the machine the numbers come from."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _ram_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return 0.0


def _ffmpeg_version(ffmpeg: str) -> str:
    out = subprocess.run([ffmpeg, "-version"], capture_output=True, text=True, check=False).stdout
    words = out.split()
    return words[2] if len(words) > 2 else "unknown"


def load_average() -> str:
    """The 1, 5 and 15-minute load averages: above the core count, other work shared the CPUs."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


REFERENCE_LOOP_ADDITIONS = 1_000_000


def python_reference_ms(repeats: int = 3) -> float:
    """Milliseconds a fixed pure-Python loop (:data:`REFERENCE_LOOP_ADDITIONS` integer additions)
    takes now, best of ``repeats``: a yardstick of how fast one core runs Python at the moment. On
    this shared virtual machine it has read from 39 to 150 ms within one session, and CPU figures
    move with the host's speed too."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        total = 0
        for i in range(REFERENCE_LOOP_ADDITIONS):
            total += i
        best = min(best, time.perf_counter() - started)
    return best * 1000


def reference_loop() -> str:
    """:func:`python_reference_ms` as the table shows it."""
    return f"{python_reference_ms():.0f} ms"


def describe(ffmpeg: str = "ffmpeg") -> dict[str, str]:
    """CPU model, cores, RAM, ffmpeg, Python and kernel versions, the load average and the
    Python reference loop now."""
    return {
        "CPU": _cpu_model(),
        "cores": str(os.cpu_count()),
        "RAM": f"{_ram_gib():.1f} GiB",
        "ffmpeg": _ffmpeg_version(ffmpeg),
        "Python": platform.python_version(),
        "kernel": platform.release(),
        "load average at start": load_average(),
        "Python loop of 10⁶ additions at start": reference_loop(),
    }

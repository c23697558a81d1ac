"""What the conversion sandbox (services/conversion/sandbox.py) costs a job, measured in the same run.

Two spawns, each timed bare and confined, interleaved so both see the same machine:

* ffprobe of the clip, as the worker starts ffmpeg and ffprobe: bare, then under bwrap with rlimits;
* a forked child that returns at once, as the probe and the picture run: bare, then confined
  (descriptors closed, rlimits, Landlock, seccomp).

An MP3 job spawns one of each (the encode, the probe's child); a job with another format adds an
ffprobe of its output, one with a cover picture from a frame it cannot take in the probe's child a
second child, one with ``normalize`` a second ffmpeg.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from services.conversion.forked import ForkedCall
from services.conversion.sandbox import Jail, Sandbox
from shared.config import load_settings


@dataclass(frozen=True)
class SandboxCost:
    """Median wall time of each spawn, bare and confined, seconds; ``runs`` pairs each."""

    spawn_bare: float
    spawn_confined: float
    child_bare: float
    child_confined: float
    runs: int

    def line(self) -> str:
        spawn, child = self.spawn_confined - self.spawn_bare, self.child_confined - self.child_bare
        return (
            f"sandbox (SANDBOX=bwrap, medians of {self.runs}): "
            f"ffprobe spawn {_ms(self.spawn_bare)} bare, {_ms(self.spawn_confined)} under bwrap (+{_ms(spawn)}); "
            f"forked child {_ms(self.child_bare)} bare, {_ms(self.child_confined)} confined (+{_ms(child)}); "
            f"an MP3 job ≈ +{_ms(spawn + child)}"
        )


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def measure_sandbox_cost(ffprobe: str, source: Path, scratch: Path, runs: int) -> SandboxCost:
    """Time ``runs`` pairs of each spawn on ``source`` (a job's dir made under ``scratch``)."""
    sandbox = Sandbox.from_settings(load_settings(sandbox="bwrap", ffprobe_path=ffprobe))
    work = scratch / "sandbox-job"
    work.mkdir(exist_ok=True)
    jail = sandbox.jail(work, source)
    probe = [ffprobe, "-v", "error", "-show_entries", "format=duration", f"file:{source}"]
    spawn = _pairs(runs, lambda: _run(probe, None), lambda: _run(probe, jail))
    child = _pairs(runs, lambda: _fork(None), lambda: _fork(jail))
    return SandboxCost(spawn[0], spawn[1], child[0], child[1], runs)


def _pairs(runs: int, bare: Callable[[], None], confined: Callable[[], None]) -> tuple[float, float]:
    """Medians of ``bare`` and ``confined``, run alternately ``runs`` times each (after one warm-up)."""
    bare(), confined()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(runs):
        for i, action in enumerate((bare, confined)):
            started = time.perf_counter()
            action()
            times[i].append(time.perf_counter() - started)
    return statistics.median(times[0]), statistics.median(times[1])


def _run(argv: list[str], jail: Jail | None) -> None:
    command = jail.command(argv) if jail else argv
    subprocess.run(command, check=True, capture_output=True)


def _fork(jail: Jail | None) -> None:
    outcome = ForkedCall(int, timeout_seconds=30, confine=jail.enter if jail else None).result()
    assert outcome.ok, outcome

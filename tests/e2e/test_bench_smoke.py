"""``./scripts/bench --quick`` runs end to end and prints its table, so the benchmark cannot rot.

The numbers are not judged here (they depend on the machine and its load); docs/performance.md
holds a full run's.
"""

import subprocess
import sys

import pytest

from tests.support.stack import ROOT

pytestmark = pytest.mark.e2e

ROWS = (
    "overhead p50 (vs equal settings)",
    "siphon / plain (equal settings)",
    "siphon / plain (as typed)",
    "efficiency (ffmpeg / server)",
    "outside ffmpeg per job, rabbitmq",
    "throughput efficiency",
    "peak RSS growth, gateway",
    "peak RSS growth, upload",
    "peak RSS growth, conversion",
    "/status (completed job) requests per second",
    "/status (completed job) p99",
    "/status (completed job) CPU per request, gateway",
    "/status (completed job) CPU per request, metadata",
    "/status (completed job) CPU-bound ceiling",
    "video: siphon / plain",
    "video throughput efficiency",
)


def test_quick_benchmark_prints_its_table(tmp_path):
    report = tmp_path / "performance.md"
    argv = [sys.executable, "-m", "bench", "--quick", "--cache-dir", str(tmp_path), "--output", str(report)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("machine: ")
    assert "Python loop of 10⁶ additions at start" in done.stdout
    for row in ROWS:
        assert row in done.stdout, f"no {row!r} row in:\n{done.stdout}"
    assert "sandbox (SANDBOX=bwrap" in done.stdout and "under bwrap" in done.stdout  # bench/sandbox.py
    assert "<!-- bench:begin -->" in report.read_text()

"""``python -m bench`` (run it as ``./scripts/bench``): siphon against plain ffmpeg on this machine.

./scripts/bench                   everything, on the configuration ./scripts/up starts, into docs/performance.md
./scripts/bench --quick           tiny inputs, one run each: a smoke run in seconds
./scripts/bench --backends local,s3 --phases latency --runs 9   S3 (moto server) beside it
./scripts/bench --phases video --runs 3 --throughput-runs 1   the video phase alone
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.inputs import FULL, QUICK, Inputs, Variants, ensure_inputs
from bench.machine import describe, load_average, reference_loop
from bench.phases import Bench, measure_cpu, measure_latency, measure_memory, measure_status_both, measure_throughput
from bench.procs import CpuMeter, machine_cpu_seconds, own_cpu_seconds
from bench.report import BackendResults, details, render_markdown, render_text, table, write_markdown
from bench.sandbox import measure_sandbox_cost
from bench.video import (
    CPU_SAMPLE_SECONDS,
    FULL_VIDEO,
    QUICK_VIDEO,
    VIDEO_FIELDS,
    ensure_video_inputs,
    measure_video,
)
from shared.config import load_settings
from tests.support.moto import moto_server
from tests.support.stack import ROOT, Stack

PHASES = ("memory", "latency", "cpu", "throughput", "status", "video")
HIGH_LIMIT = "1000000"
STACK_ENV = {
    "WEB_WORKERS": "2",
    "WEB_THREADS": "32",
    "QUOTA_SUBMISSIONS_PER_MINUTE": HIGH_LIMIT,
    "QUOTA_UNFINISHED_JOBS": HIGH_LIMIT,
    "QUOTA_UPLOAD_BYTES_PER_DAY": str(10**15),
}
"""The configuration ``./scripts/up`` starts: gunicorn's two workers (the test stack's default is
one), the output cache on, open mode, default options. One change: the per-caller limits stay on
(every submission is counted in Redis as usual) but high, since the benchmark is one caller posting
40 jobs at once, which the defaults (20 unfinished jobs, 60 a minute) exist to refuse."""

DEFAULT_CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "siphon-bench"
"""Where the inputs are made once, outside the repository."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny inputs, one run of each phase, local backend")
    parser.add_argument("--backends", default="local", help="comma-separated: local,s3 (default local)")
    parser.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated subset of {','.join(PHASES)}")
    parser.add_argument("--runs", type=int, help="latency runs per input (default 5; --quick: 1)")
    parser.add_argument("--jobs", type=int, help="jobs posted at once in the throughput phase (default 40)")
    parser.add_argument("--cpu-jobs", type=int, help="distinct one-minute jobs of the CPU phase (default 20)")
    parser.add_argument("--throughput-runs", type=int, help="repetitions of the throughput phase (default 3)")
    parser.add_argument("--workers", type=int, default=2, help="conversion workers (default 2)")
    parser.add_argument("--status-seconds", type=float, help="length of the /status load, seconds (default 10)")
    parser.add_argument("--connections", type=int, default=64, help="concurrent /status connections (default 64)")
    parser.add_argument(
        "--field",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a form field sent with every upload, e.g. cover=none (repeatable)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=DEFAULT_CACHE_DIR,
        help=f"where inputs are cached (default {DEFAULT_CACHE_DIR})",
    )
    parser.add_argument("--output", type=Path, help="markdown file (default docs/performance.md; --quick: none)")
    parser.add_argument(
        "--section", default="main", help="which generated block of the markdown file to replace (default: main)"
    )
    parser.add_argument("--ffmpeg", default="ffmpeg")
    parser.add_argument("--ffprobe", default="ffprobe", help="timed bare and under the sandbox")
    args = parser.parse_args(argv)
    quick = args.quick
    args.backends = args.backends.split(",")
    args.phases = args.phases.split(",")
    args.runs = args.runs or (1 if quick else 5)
    args.jobs = args.jobs or (4 if quick else 40)
    args.cpu_jobs = args.cpu_jobs or (4 if quick else 20)
    args.throughput_runs = args.throughput_runs or (1 if quick else 3)
    args.status_seconds = args.status_seconds or (1 if quick else 10)
    if args.output is None and not quick:
        args.output = ROOT / "docs" / "performance.md"
    return args


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_backend(args: argparse.Namespace, inputs: Inputs, backend: str, s3_endpoint: str | None) -> BackendResults:
    """Start a stack on ``backend``, run the chosen phases against it, stop it."""
    scratch = Path(tempfile.mkdtemp(prefix=f"run-{backend}-", dir=args.cache_dir))
    stack = Stack(scratch, backend=backend, s3_endpoint=s3_endpoint, workers=args.workers, env_overrides=STACK_ENV)
    results = BackendResults()
    try:
        say(f"{backend}: starting the stack")
        stack.start()
        fields = dict(field.split("=", 1) for field in args.field)
        variants = Variants(scratch, uuid.uuid4().hex[:8], args.ffmpeg)
        bench = Bench(stack.processes, stack.url, args.ffmpeg, scratch, variants, fields)
        try:
            _run_phases(args, inputs, backend, stack, bench, results)
        finally:
            results.failed_jobs = bench.failed_jobs
    finally:
        stack.stop()
    shutil.rmtree(scratch, ignore_errors=True)
    return results


def _run_phases(args, inputs: Inputs, backend: str, stack: Stack, bench: Bench, results: BackendResults) -> None:
    # Memory first: VmHWM only grows, so no earlier large job may set the small input's peak.
    if "memory" in args.phases:
        say(f"{backend}: memory, {inputs.minute.label} then {inputs.huge.label} ({inputs.huge.megabytes:.0f} MB)")
        results.memory = measure_memory(bench, inputs.minute, inputs.huge)
    if "latency" in args.phases:
        measure_latency(bench, inputs.clip, 1)  # warm-up: lazy imports, first connections
        for source in (inputs.clip, inputs.long):
            say(f"{backend}: latency, {source.label} ({source.megabytes:.0f} MB) × {args.runs}")
            results.latency.append(measure_latency(bench, source, args.runs))
    if "cpu" in args.phases:
        say(f"{backend}: CPU, {args.cpu_jobs} distinct {inputs.minute.label}s")
        results.cpu = measure_cpu(bench, inputs.minute, args.cpu_jobs)
    if "throughput" in args.phases:
        say(f"{backend}: throughput, {args.jobs} × {inputs.minute.label} × {args.throughput_runs}")
        results.throughput = measure_throughput(bench, inputs.minute, args.jobs, args.workers, args.throughput_runs)
    if "status" in args.phases:
        say(f"{backend}: /status under load for {args.status_seconds:g} s, a completed job then a processing one")
        results.status = measure_status_both(bench, inputs.clip, inputs.huge, args.status_seconds, args.connections)
    if "video" in args.phases:
        _run_video_phase(args, backend, stack, bench, results)


def _run_video_phase(args, backend: str, stack: Stack, bench: Bench, results: BackendResults) -> None:
    """bench/video.py: the same stack, a client that asks for mp4/h264 at preset=fastest."""
    inputs = ensure_video_inputs(QUICK_VIDEO if args.quick else FULL_VIDEO, args.cache_dir, args.ffmpeg)
    say(f"{backend}: video, {inputs[0].label} × {args.runs}, then {len(inputs)} at once × {args.throughput_runs}")
    video = dataclasses.replace(bench, fields={**bench.fields, **VIDEO_FIELDS}, failed_jobs=0)
    try:
        results.video = measure_video(
            video.convert,
            load_settings(),
            inputs,
            bench.out_dir,
            args.workers,
            args.runs,
            args.throughput_runs,
            fresh=bench.variants.make,
            meter=lambda: CpuMeter(stack.processes, CPU_SAMPLE_SECONDS),
        )
    finally:
        bench.failed_jobs += video.failed_jobs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    machine = describe(args.ffmpeg)
    say(f"making inputs (cached under {args.cache_dir})")
    inputs = ensure_inputs(QUICK if args.quick else FULL, args.cache_dir, args.ffmpeg)
    results: dict[str, BackendResults] = {}
    machine_before, bench_before, started = machine_cpu_seconds(), own_cpu_seconds(), time.monotonic()
    with contextlib.ExitStack() as resources:
        s3_endpoint = None
        if "s3" in args.backends:
            logs = resources.enter_context(tempfile.TemporaryDirectory(prefix="moto-", dir=args.cache_dir))
            s3_endpoint = resources.enter_context(moto_server(Path(logs)))
        for backend in args.backends:
            results[backend] = run_backend(args, inputs, backend, s3_endpoint)
    machine["load average at end"] = load_average()
    elapsed = time.monotonic() - started
    busy = machine_cpu_seconds() - machine_before
    machine["whole run"] = (
        f"{elapsed:.0f} s; all cores busy {busy / elapsed:.2f} of {os.cpu_count()} on average "
        f"(this benchmark's client and baselines {(own_cpu_seconds() - bench_before) / elapsed:.2f}, "
        "the rest siphon's stack and everything else on the machine)"
    )
    machine["Python loop of 10⁶ additions at end"] = reference_loop()
    rows, notes = table(results), details(results)
    runs = 5 if args.quick else 20
    say(f"sandbox cost: {runs} spawns of each kind, bare and confined")
    notes.append(measure_sandbox_cost(args.ffprobe, inputs.clip.path, args.cache_dir, runs).line())
    print(render_text(machine, rows, notes))
    if args.output:
        command = "./scripts/bench " + " ".join(sys.argv[1:] if argv is None else argv)
        write_markdown(args.output, render_markdown(machine, rows, notes, command.strip(), args.section), args.section)
        say(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

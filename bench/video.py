"""The video phase (issue #17, deliverable 8): a 720p clip to mp4/h264 at ``preset=fastest``,
through siphon and through plain ffmpeg with the very same arguments.

Two measurements, each alternating plain and siphon runs so both see the same noise:

- one job at a time: siphon's whole job (POST until the MP4 is on disk) over plain ffmpeg's
  wall time, medians (target ≤ 1.05); with the CPU seconds of each: plain ffmpeg's, and siphon's
  ffmpeg's (as sampled inside the sandbox) and the rest of the server's (every service's process
  tree and the brokers: :class:`~bench.procs.CpuMeter`);
- :attr:`VideoProfile.jobs` jobs at once on the stack's workers against as many plain ffmpeg
  processes at a time: plain's wall time over siphon's (target ≥ 0.9). The jobs are distinct
  files (a copy of the clip with its own ``comment`` tag, stream-copied), so no output cache
  could answer one from another.

The plain command is the one the worker runs, built by the conversion service's own planner
(``services.conversion.plan.plan_encode`` and ``services.conversion.encode.build_command``) on
the same probe, so the two differ only in what siphon adds around ffmpeg: upload, queue,
probes, the bubblewrap sandbox, storage and download.
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from bench.inputs import Input, cached, duration_label, run_ffmpeg
from bench.procs import CpuMeter
from services.conversion.encode import EncodeLimits, build_command
from services.conversion.plan import VideoInput, plan_encode
from services.conversion.probe import probe_media
from services.conversion.video import probe_video
from shared.config import Settings
from shared.options import options_from_form
from shared.video_codecs import encoder_for, ffmpeg_filters
from tests.support.sources import H264_FAST

VIDEO_FIELDS = {"format": "mp4", "video_codec": "h264", "preset": "fastest"}
"""The form fields of every video job (and so of the plain command)."""


@dataclass(frozen=True)
class VideoProfile:
    """The clip: ``seconds`` long, ``size`` WxH at ``fps`` and ``video_kbps`` kbit/s H.264 with
    128 kbit/s AAC; ``jobs`` distinct copies for the throughput measurement."""

    name: str
    seconds: int
    size: str
    video_kbps: int
    fps: int
    jobs: int


CPU_SAMPLE_SECONDS = 0.05
"""How often the video phase's :class:`~bench.procs.CpuMeter` samples the sandbox, seconds: coarser
than the audio phases' 5 ms, whose sampling costs a tenth of a core (measured), which a one-job
wall-time ratio on two cores cannot spare; a probe shorter than this may go unseen (≤ 0.1 s of CPU)."""

FULL_VIDEO = VideoProfile("full", 120, "1280x720", 2500, 30, 8)
QUICK_VIDEO = VideoProfile("quick", 3, "320x180", 300, 15, 2)


@dataclass(frozen=True)
class VideoResults:
    """Wall seconds of every run: one job (``plain``/``siphon``) and a batch of ``jobs`` jobs on
    ``workers`` workers (``batch_plain``/``batch_siphon``); CPU seconds of each single job: plain
    ffmpeg's (``plain_cpu``), siphon's ffmpeg's (``siphon_ffmpeg_cpu``) and the rest of the
    server's (``siphon_rest_cpu``; empty when not metered)."""

    label: str
    jobs: int
    workers: int
    plain: list[float]
    siphon: list[float]
    batch_plain: list[float]
    batch_siphon: list[float]
    plain_cpu: list[float] = field(default_factory=list)
    siphon_ffmpeg_cpu: list[float] = field(default_factory=list)
    siphon_rest_cpu: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        """siphon's median over plain ffmpeg's, one job at a time (1.0: siphon adds nothing)."""
        return statistics.median(self.siphon) / statistics.median(self.plain)

    @property
    def efficiency(self) -> float:
        """Plain ffmpeg's median batch time over siphon's (1.0: siphon adds nothing)."""
        return statistics.median(self.batch_plain) / statistics.median(self.batch_siphon)


def video_row_specs() -> list[tuple]:
    """The table's rows, as ``bench.report.Row`` arguments (metric, target, value, show, meets);
    the value reads ``BackendResults.video``."""

    def pick(read):
        return lambda r: read(r.video) if r.video else None

    def seconds(v: float) -> str:
        return f"{v:.2f} s"

    def median_of(values: list[float]) -> float | None:
        return statistics.median(values) if values else None

    return [
        ("video: plain ffmpeg p50", "", pick(lambda v: statistics.median(v.plain)), seconds),
        ("video: siphon p50", "", pick(lambda v: statistics.median(v.siphon)), seconds),
        ("video: siphon / plain", "≤ 1.05", pick(lambda v: v.ratio), lambda v: f"{v:.3f}", lambda v: v <= 1.05),
        ("video CPU: plain ffmpeg p50", "", pick(lambda v: median_of(v.plain_cpu)), seconds),
        ("video CPU: siphon's ffmpeg p50", "", pick(lambda v: median_of(v.siphon_ffmpeg_cpu)), seconds),
        ("video CPU: siphon outside ffmpeg p50", "", pick(lambda v: median_of(v.siphon_rest_cpu)), seconds),
        ("video batch: plain ffmpeg", "", pick(lambda v: statistics.median(v.batch_plain)), seconds),
        ("video batch: siphon", "", pick(lambda v: statistics.median(v.batch_siphon)), seconds),
        (
            "video throughput efficiency (plain / siphon)",
            "≥ 0.9",
            pick(lambda v: v.efficiency),
            lambda v: f"{v:.2f}",
            lambda v: v >= 0.9,
        ),
    ]


def video_details(backend: str, v: VideoResults) -> list[str]:
    """The raw figures behind the video rows."""

    def samples(values: list[float]) -> str:
        return "[" + ", ".join(f"{x:.3f}" for x in values) + "] s"

    return [
        f"{backend}, video ({v.label}, {', '.join(f'{k}={x}' for k, x in VIDEO_FIELDS.items())}): "
        f"plain {samples(v.plain)}; siphon {samples(v.siphon)}",
        f"{backend}, video CPU per job: plain ffmpeg {samples(v.plain_cpu)}; siphon's ffmpeg "
        f"{samples(v.siphon_ffmpeg_cpu)}; siphon outside ffmpeg {samples(v.siphon_rest_cpu)}",
        f"{backend}, video batch ({v.jobs} jobs, {v.workers} workers / plain processes): "
        f"plain {samples(v.batch_plain)}; siphon {samples(v.batch_siphon)}",
    ]


def ensure_video_inputs(profile: VideoProfile, cache_dir: Path, ffmpeg: str = "ffmpeg") -> list[Input]:
    """``profile.jobs`` distinct clips under ``cache_dir/<profile>/`` (made once, then reused):
    the first synthesized with lavfi (testsrc2 and a sine tone), the others stream copies of it
    tagged ``comment=copy <n>``, so their bytes differ and their pictures do not."""
    folder = cache_dir / profile.name
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"video-{profile.seconds}s-{profile.size}"
    first = cached(folder / f"{stem}.mp4", lambda out: _synthesize(ffmpeg, out, profile))
    paths = [first] + [
        cached(folder / f"{stem}-copy{n}.mp4", lambda out, n=n: _tagged_copy(ffmpeg, first, out, n))
        for n in range(1, profile.jobs)
    ]
    label = f"{duration_label(profile.seconds)} {profile.size.split('x')[1]}p clip"
    return [Input(path, profile.seconds, label) for path in paths]


def _synthesize(ffmpeg: str, out: Path, p: VideoProfile) -> None:
    rate = f"{p.video_kbps}k"
    run_ffmpeg(
        ffmpeg,
        *("-f", "lavfi", "-i", f"testsrc2=size={p.size}:rate={p.fps}"),
        *("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"),
        *("-t", str(p.seconds), *H264_FAST, "-b:v", rate, "-maxrate", rate, "-bufsize", f"{2 * p.video_kbps}k"),
        *("-c:a", "aac", "-b:a", "128k", "-ac", "2", "-f", "mp4", str(out)),
    )


def _tagged_copy(ffmpeg: str, source: Path, out: Path, n: int) -> None:
    run_ffmpeg(ffmpeg, "-i", str(source), "-c", "copy", "-metadata", f"comment=copy {n}", "-f", "mp4", str(out))


def siphon_command(s: Settings, source: Path, target: Path) -> list[str]:
    """The ffmpeg argv a worker with settings ``s`` runs for ``source`` with :data:`VIDEO_FIELDS`
    (its probes run here unconfined; the worker confines the same command with bubblewrap).

    Raises:
        MediaError: the worker would refuse the file (no video stream, no libx264, too large).
    """
    options = options_from_form(VIDEO_FIELDS, (VIDEO_FIELDS["video_codec"],))
    probe = probe_media(source, s.ffprobe_path)
    stream = probe.moving_picture()
    video = VideoInput(
        facts=probe_video(source, stream.index, s.ffprobe_path) if stream is not None else None,
        encoder=encoder_for(options.codec, s.ffmpeg_path),
        can_tonemap="zscale" in ffmpeg_filters(s.ffmpeg_path),
        max_pixels=s.max_video_pixels,
    )
    plan = plan_encode(probe, options, s.mp3_vbr_quality, s.max_duration_seconds, video)
    limits = EncodeLimits(s.max_duration_seconds, s.max_output_bytes, s.conversion_timeout_seconds)
    return build_command(s.ffmpeg_path, plan, source, target, limits)


def plain_video_seconds(command: list[str]) -> float:
    """Wall time of one plain run of ``command`` (its ``-progress pipe:1`` output discarded), seconds."""
    return plain_video_run(command)[0]


def plain_video_run(command: list[str]) -> tuple[float, float]:
    """``(wall, cpu)`` seconds of one plain run of ``command``: its CPU is user + system, as this
    process reaps it (``RUSAGE_CHILDREN``; only one child may run at a time).

    Raises:
        subprocess.CalledProcessError: ffmpeg failed.
    """
    before = _reaped_cpu_seconds()
    started = time.perf_counter()
    subprocess.run(command, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started, _reaped_cpu_seconds() - before


def _reaped_cpu_seconds() -> float:
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    return reaped.ru_utime + reaped.ru_stime


def measure_video(
    convert: Callable[[Path, Path], float],
    s: Settings,
    inputs: list[Input],
    out_dir: Path,
    workers: int,
    runs: int,
    batch_runs: int,
    fresh: Callable[[Path], Path] = lambda path: path,
    meter: Callable[[], CpuMeter] | None = None,
) -> VideoResults:
    """``runs`` alternating single jobs of ``inputs[0]``, then ``batch_runs`` alternating batches
    of every input (``workers`` plain processes at a time against siphon's ``workers`` workers).
    ``convert(source, target)`` is one whole siphon job with :data:`VIDEO_FIELDS`, in seconds
    (``bench.phases.Bench.convert`` on a client that sends them). ``fresh(path)`` gives a distinct
    copy of an input for each siphon job, made before its timing starts (the output cache is on in
    the configuration measured, and would answer a repeated file); the copies are removed at the end.
    ``meter()``, when given, makes an unstarted CPU meter of the stack for each single siphon job.

    Raises:
        bench.client.BenchError: a job failed or the stack answered something unexpected.
        subprocess.CalledProcessError: a plain ffmpeg run failed.
    """
    commands = [siphon_command(s, i.path, out_dir / f"plain-{n}.mp4") for n, i in enumerate(inputs)]
    plain, siphon = [], []
    plain_cpu, ffmpeg_cpu, rest_cpu = [], [], []
    copies: list[Path] = []

    def copy_of(path: Path) -> Path:
        copies.append(fresh(path))
        return copies[-1]

    convert(copy_of(inputs[0].path), out_dir / "warm-up.mp4")  # lazy imports, first connections
    for _ in range(runs):
        wall, cpu = plain_video_run(commands[0])
        plain.append(wall)
        plain_cpu.append(cpu)
        source = copy_of(inputs[0].path)
        metered = meter().start() if meter else None
        siphon.append(convert(source, out_dir / "siphon-0.mp4"))
        if metered is not None:
            metered.stop()
            ffmpeg_cpu.append(metered.ffmpeg)
            rest_cpu.append(metered.server_total - metered.ffmpeg)
    batch_plain, batch_siphon = [], []
    for _ in range(batch_runs):
        batch_plain.append(_batch_seconds(workers, [lambda c=c: plain_video_seconds(c) for c in commands]))
        sources = [copy_of(i.path) for i in inputs]
        jobs = [lambda n=n, src=src: convert(src, out_dir / f"siphon-{n}.mp4") for n, src in enumerate(sources)]
        batch_siphon.append(_batch_seconds(len(jobs), jobs))
    for output in out_dir.glob("*.mp4"):
        output.unlink()
    for copy in copies:
        if copy not in {i.path for i in inputs}:
            copy.unlink(missing_ok=True)
    return VideoResults(
        inputs[0].label,
        len(inputs),
        workers,
        plain,
        siphon,
        batch_plain,
        batch_siphon,
        plain_cpu,
        ffmpeg_cpu,
        rest_cpu,
    )


def _batch_seconds(parallel: int, tasks: list) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(lambda task: task(), tasks))
    return time.perf_counter() - started

"""The benchmark's inputs, made with ffmpeg's lavfi sources (testsrc2 video, a sine tone) and cached.

Full profile (720p H.264 CBR at ~1.5 Mbit/s with 128 kbit/s AAC, like a phone or web video)::

    clip      30 s of the 10-minute video                 ~5.6 MB
    minute    60 s of it                                  ~11 MB
    long      10 minutes, 720p                            ~117 MB
    huge      2 hours: a 10-minute 360p file ×12 (copy)   ~1 GB

The quick profile makes the same shapes from a few seconds of 180p, so a smoke run takes seconds.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support.sources import H264_FAST


@dataclass(frozen=True)
class Profile:
    """Sizes of one input set: durations in seconds, video as WxH and kbit/s."""

    name: str
    clip_seconds: int
    minute_seconds: int
    long_seconds: int
    long_size: str
    long_video_kbps: int
    huge_size: str
    huge_video_kbps: int
    huge_repeats: int
    fps: int


FULL = Profile("full", 30, 60, 600, "1280x720", 1372, "640x360", 1000, 12, 30)
QUICK = Profile("quick", 2, 3, 5, "320x180", 300, "320x180", 300, 3, 15)


@dataclass(frozen=True)
class Input:
    """One input file, its duration (seconds) and a label for the table."""

    path: Path
    seconds: int
    label: str

    @property
    def megabytes(self) -> float:
        return self.path.stat().st_size / 1e6


@dataclass(frozen=True)
class Inputs:
    clip: Input
    minute: Input
    long: Input
    huge: Input


def duration_label(seconds: int) -> str:
    """``30 s``, ``1 min``, ``10 min``, ``2 h``."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def ensure_inputs(profile: Profile, cache_dir: Path, ffmpeg: str = "ffmpeg") -> Inputs:
    """Make whatever input is missing under ``cache_dir/<profile>/``; return all four."""
    folder = cache_dir / profile.name
    folder.mkdir(parents=True, exist_ok=True)
    p = profile
    long = cached(
        folder / f"long-{p.long_seconds}s.mp4",
        lambda out: _synthesize(ffmpeg, out, p.long_seconds, p.long_size, p.long_video_kbps, p.fps),
    )
    clip = cached(folder / f"clip-{p.clip_seconds}s.mp4", lambda out: _cut(ffmpeg, long, out, p.clip_seconds))
    minute = cached(folder / f"minute-{p.minute_seconds}s.mp4", lambda out: _cut(ffmpeg, long, out, p.minute_seconds))
    segment = cached(
        folder / f"segment-{p.long_seconds}s-{p.huge_size}.mp4",
        lambda out: _synthesize(ffmpeg, out, p.long_seconds, p.huge_size, p.huge_video_kbps, p.fps),
    )
    huge_seconds = p.long_seconds * p.huge_repeats
    huge = cached(folder / f"huge-{huge_seconds}s.mp4", lambda out: _repeat(ffmpeg, segment, out, p.huge_repeats))
    return Inputs(
        clip=Input(clip, p.clip_seconds, f"{duration_label(p.clip_seconds)} clip"),
        minute=Input(minute, p.minute_seconds, f"{duration_label(p.minute_seconds)} clip"),
        long=Input(long, p.long_seconds, f"{duration_label(p.long_seconds)} {p.long_size.split('x')[1]}p video"),
        huge=Input(huge, huge_seconds, f"{duration_label(huge_seconds)} video"),
    )


def cached(path: Path, make) -> Path:
    """``path``, made by ``make(partial)`` first if it does not exist yet (renamed into place, so an
    interrupted run leaves no half-made input under the final name). The partial file's name is
    this process's own, so two benchmarks filling one cache at once cannot write into one file."""
    if not path.exists():
        partial = path.with_name(f".partial-{os.getpid()}-{path.name}")
        make(partial)
        partial.rename(path)
    return path


def run_ffmpeg(ffmpeg: str, *args: str) -> None:
    """Run ``ffmpeg`` quietly with ``args``, overwriting its output; raises on failure."""
    subprocess.run([ffmpeg, "-nostdin", "-v", "error", "-y", *args], check=True, stdin=subprocess.DEVNULL)


def _synthesize(ffmpeg: str, out: Path, seconds: int, size: str, video_kbps: int, fps: int) -> None:
    """H.264 at a constant ``video_kbps`` (filler data keeps testsrc2 from compressing to nothing)."""
    rate = f"{video_kbps}k"
    run_ffmpeg(
        ffmpeg,
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size={size}:rate={fps}",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        str(seconds),
        *H264_FAST,
        "-b:v",
        rate,
        "-minrate",
        rate,
        "-maxrate",
        rate,
        "-bufsize",
        f"{2 * video_kbps}k",
        "-x264-params",
        "nal-hrd=cbr",
        "-c:a",
        "aac",
        "-b:a",
        "128k",
        "-ac",
        "2",
        "-f",
        "mp4",
        str(out),
    )


def _cut(ffmpeg: str, source: Path, out: Path, seconds: int) -> None:
    run_ffmpeg(
        ffmpeg,
        "-i",
        str(source),
        "-t",
        str(seconds),
        "-c",
        "copy",
        "-f",
        "mp4",
        str(out),
    )


def _repeat(ffmpeg: str, source: Path, out: Path, times: int) -> None:
    """``source`` played ``times`` times in a row, stream-copied (the concat demuxer)."""
    listing = out.with_suffix(".txt")
    listing.write_text(f"file '{source.resolve()}'\n" * times)
    try:
        run_ffmpeg(
            ffmpeg,
            "-f",
            "concat",
            "-safe",
            "0",
            "-i",
            str(listing),
            "-c",
            "copy",
            "-f",
            "mp4",
            str(out),
        )
    finally:
        listing.unlink(missing_ok=True)


class Variants:
    """Distinct copies of the inputs, one per siphon job, so the output cache (on by default,
    ``OUTPUT_CACHE``) cannot answer a job from an earlier one: each is the input stream-copied
    (``-c copy``, the same audio and video packets, so ffmpeg does the same work on it) with a
    ``comment`` tag naming this run and a counter, which changes the file's SHA-256.

    Args:
        folder: where the copies are written (each is removed by :meth:`release`).
        tag: names this benchmark run inside every copy.
    """

    def __init__(self, folder: Path, tag: str, ffmpeg: str = "ffmpeg"):
        self.folder = folder
        self.tag = tag
        self.ffmpeg = ffmpeg
        self.made = 0

    def make(self, source: Path) -> Path:
        """A fresh distinct copy of ``source`` (an MP4), ``folder/variant-<n>-<name>``."""
        self.made += 1
        out = self.folder / f"variant-{self.made}-{source.name}"
        run_ffmpeg(
            self.ffmpeg,
            "-i",
            str(source),
            "-map",
            "0",
            "-c",
            "copy",
            "-metadata",
            f"comment=siphon-bench {self.tag} #{self.made}",
            "-f",
            "mp4",
            str(out),
        )
        return out

    def many(self, source: Path, count: int) -> list[Path]:
        """``count`` fresh copies of ``source``."""
        return [self.make(source) for _ in range(count)]

    @staticmethod
    def release(paths: list[Path]) -> None:
        """Remove copies made by :meth:`make`."""
        for path in paths:
            path.unlink(missing_ok=True)

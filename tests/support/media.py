"""Looking at audio files the way a client would: ffprobe facts, the plain-ffmpeg reference
conversion, and the media corpus's MANIFEST.tsv."""

from __future__ import annotations

import csv
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support.sources import ffmpeg

MP3_SAMPLE_RATES_HZ = frozenset({8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000})
"""Sample rates an MP3 can carry (MPEG-1, MPEG-2 and MPEG-2.5 layer III), Hz."""

DURATION_TOLERANCE_RATIO = 0.03
DURATION_TOLERANCE_FLOOR_SECONDS = 0.15
FFMPEG_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class AudioFacts:
    """What ffprobe says about a file's first audio stream; ``frames`` are decoded, not just counted."""

    format_name: str
    codec: str
    duration_seconds: float
    sample_rate_hz: int
    channels: int
    frames: int


def probe_audio(path: Path) -> AudioFacts | None:
    """ffprobe ``path`` (decoding every frame); None when it cannot be read or holds no audio stream."""
    done = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "a:0",
            "-show_entries",
            "format=format_name,duration:stream=codec_name,sample_rate,channels,nb_read_frames",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        timeout=FFMPEG_TIMEOUT_SECONDS,
        stdin=subprocess.DEVNULL,
    )
    data = json.loads(done.stdout or b"{}")
    streams, fmt = data.get("streams", []), data.get("format", {})
    if done.returncode != 0 or not streams:
        return None
    stream = streams[0]
    return AudioFacts(
        format_name=fmt.get("format_name", ""),
        codec=stream.get("codec_name", ""),
        duration_seconds=float(fmt.get("duration") or 0),
        sample_rate_hz=int(stream.get("sample_rate") or 0),
        channels=int(stream.get("channels") or 0),
        frames=int(stream.get("nb_read_frames") or 0),
    )


def reference_mp3_seconds(source: Path, work_dir: Path) -> float | None:
    """Seconds of audio in what plain ``ffmpeg -i FILE -map 0:a:0 -c:a libmp3lame out.mp3`` makes
    of ``source``; None when that command fails or its output holds no audio frames."""
    target = work_dir / f"{source.name}.reference.mp3"
    done = subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-i",
            str(source),
            "-map",
            "0:a:0",
            "-c:a",
            "libmp3lame",
            str(target),
        ],
        capture_output=True,
        timeout=FFMPEG_TIMEOUT_SECONDS,
        stdin=subprocess.DEVNULL,
    )
    facts = probe_audio(target) if done.returncode == 0 else None
    return facts.duration_seconds if facts is not None and facts.frames > 0 else None


def duration_tolerance(reference_seconds: float) -> float:
    """How far a conversion's duration may be from the reference: 3 %, and at least 0.15 s."""
    return max(DURATION_TOLERANCE_RATIO * reference_seconds, DURATION_TOLERANCE_FLOOR_SECONDS)


def read_manifest(media_dir: Path) -> dict[str, dict[str, str]]:
    """MANIFEST.tsv's rows by ``local_name`` (columns as in its header, e.g. ``ffmpeg_to_mp3``)."""
    with open(media_dir / "MANIFEST.tsv", newline="", encoding="utf-8") as f:
        return {row["local_name"]: row for row in csv.DictReader(f, delimiter="\t")}


def make_tone_wav(path: Path, seconds: float, sample_rate_hz: int = 8000) -> Path:
    """Write a mono 440 Hz sine of ``seconds`` as 16-bit PCM WAV (16 KB per second at 8 kHz); return ``path``."""
    ffmpeg(
        "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={sample_rate_hz}:duration={seconds}",
        "-c:a", "pcm_s16le", str(path),
    )  # fmt: skip
    return path

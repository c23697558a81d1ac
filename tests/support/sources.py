"""Inputs made on the spot with ffmpeg's lavfi sources, and ways to look at outputs (ffprobe, mutagen,
loudness), for the conversion options' tests."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

FFMPEG_TIMEOUT_SECONDS = 120

H264_FAST = ("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p")
"""ffmpeg output arguments for H.264 made quickly, in the 4:2:0 pixel format every player decodes
(test and benchmark inputs, where the encode's speed matters and its quality does not)."""

SOURCE_TAGS = {
    "title": "Source Title",
    "artist": "Source Artist",
    "album": "Source Album",
    "date": "2021",
    "genre": "Podcast",
    "comment": "Source comment",
    "track": "3/12",
}
"""The tags :func:`make_tagged_video` writes; the outputs must carry them."""

LEAKY_TAGS = {"location": "+48.8584+002.2945/", "copyright": "not carried"}
"""Tags :func:`make_tagged_video` also writes, which no output may carry (a GPS position above all)."""

CHAPTERS = (("Intro", 0.0, 2.0), ("Middle", 2.0, 4.0), ("End", 4.0, 6.0))
"""``(title, start, end)`` of :func:`make_tagged_video`'s chapters, seconds."""


def ffmpeg(*args: str) -> None:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args],
        check=True,
        capture_output=True,
        timeout=FFMPEG_TIMEOUT_SECONDS,
    )


def make_tagged_video(path: Path, seconds: float = 6.0) -> Path:
    """An MP4 (H.264 test pattern, 48 kHz stereo AAC tone) with :data:`SOURCE_TAGS`, :data:`LEAKY_TAGS`
    and :data:`CHAPTERS`, from an ffmetadata file (ffmpeg-formats(1), "Metadata")."""
    lines = [";FFMETADATA1", *(f"{key}={value}" for key, value in {**SOURCE_TAGS, **LEAKY_TAGS}.items())]
    for title, start, end in CHAPTERS:
        lines += [
            "[CHAPTER]",
            "TIMEBASE=1/1000",
            f"START={int(start * 1000)}",
            f"END={int(end * 1000)}",
            f"title={title}",
        ]
    metadata = path.with_suffix(".ffmetadata")
    metadata.write_text("\n".join(lines) + "\n")
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        f"testsrc=size=320x240:rate=25:duration={seconds}",
        "-f",
        "lavfi",
        "-i",
        f"sine=frequency=440:sample_rate=48000:duration={seconds}",
        "-i",
        str(metadata),
        "-map",
        "0:v",
        "-map",
        "1:a",
        "-map_metadata",
        "2",
        "-map_chapters",
        "2",
        *H264_FAST,
        "-c:a",
        "aac",
        "-ac",
        "2",
        str(path),
    )
    return path


def make_two_track_audio(path: Path) -> Path:
    """A Matroska file with two audio tracks told apart by length: track 0 is 2 s of mono 440 Hz,
    track 1 (marked default) 4 s of stereo 880 Hz."""
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=44100:duration=2",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=880:sample_rate=44100:duration=4",
        "-map",
        "0:a",
        "-map",
        "1:a",
        "-c:a",
        "flac",
        "-ac:a:1",
        "2",
        "-disposition:a:0",
        "0",
        "-disposition:a:1",
        "default",
        str(path),
    )
    return path


def make_covered_m4a(path: Path) -> Path:
    """An M4A (AAC) with a JPEG cover picture (``covr``) and a title."""
    picture = path.with_suffix(".jpg")
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=200x200:duration=1", "-frames:v", "1", str(picture))
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=330:sample_rate=44100:duration=3",
        "-i",
        str(picture),
        "-map",
        "0:a",
        "-map",
        "1:v",
        "-c:a",
        "aac",
        "-c:v",
        "copy",
        "-disposition:v:0",
        "attached_pic",
        "-metadata",
        "title=Covered",
        "-f",
        "ipod",
        str(path),
    )
    return path


def make_tone(path: Path, seconds: float, sample_rate_hz: int = 8000, channels: int = 1, frequency: int = 440) -> Path:
    """``seconds`` of tone; the container follows the suffix (``.wav``, ``.flac``). Tones of other
    ``frequency`` are other files (siphon may reuse the output of an identical upload)."""
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        f"sine=frequency={frequency}:sample_rate={sample_rate_hz}:duration={seconds}",
        "-ac",
        str(channels),
        str(path),
    )
    return path


def probe(path: Path) -> dict:
    """ffprobe's format and streams of ``path``, as JSON."""
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        check=True,
        timeout=FFMPEG_TIMEOUT_SECONDS,
    )
    return json.loads(done.stdout)


def audio_stream(path: Path) -> dict:
    """The first audio stream ffprobe sees in ``path``."""
    return next(s for s in probe(path)["streams"] if s["codec_type"] == "audio")


def duration(path: Path) -> float:
    return float(probe(path)["format"]["duration"])


def integrated_loudness(path: Path) -> float:
    """EBU R128 integrated loudness of ``path``, LUFS (ffmpeg's ebur128 filter summary)."""
    done = subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-i", str(path), "-af", "ebur128", "-f", "null", "-"],
        capture_output=True,
        timeout=FFMPEG_TIMEOUT_SECONDS,
    )
    summary = done.stderr.decode(errors="replace").rsplit("Summary:", 1)[-1]
    return float(re.search(r"I:\s+(-?[\d.]+) LUFS", summary)[1])

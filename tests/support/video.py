"""Checking a video output with ffprobe against its source: the codecs, the height, the display
aspect ratio (rotation applied), the duration, and that audio and video start and end together.

The limits are issue #17's: aspect within 1 %, duration within 3 % (and at least one frame at
25 fps, as a 0.1 s clip cannot be cut finer than its frames), starts within 50 ms, ends within
100 ms.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

ASPECT_TOLERANCE_RATIO = 0.01
DURATION_TOLERANCE_RATIO = 0.03
DURATION_TOLERANCE_FLOOR_SECONDS = 0.04
START_TOLERANCE_SECONDS = 0.05
END_TOLERANCE_SECONDS = 0.1
FFPROBE_TIMEOUT_SECONDS = 60


def ffprobe_json(path: Path, *options: str) -> dict:
    """``ffprobe -v error <options> -of json path``, decoded."""
    done = subprocess.run(
        ["ffprobe", "-v", "error", *options, "-of", "json", str(path)],
        capture_output=True,
        check=True,
        timeout=FFPROBE_TIMEOUT_SECONDS,
        stdin=subprocess.DEVNULL,
    )
    return json.loads(done.stdout)


@dataclass(frozen=True)
class Span:
    """When one stream's packets start and end, seconds (first pts; last pts + its duration)."""

    start: float
    end: float


def stream_spans(path: Path) -> dict[str, Span]:
    """The span of the first video and the first audio stream (keys ``video``, ``audio``): the
    stream's start_time and duration where the container gives them (MP4's edit lists hide the
    encoder's priming), else its packets' (Matroska and WebM give no per-stream duration)."""
    data = ffprobe_json(
        path, "-show_entries", "stream=index,codec_type,start_time,duration:packet=stream_index,pts_time,duration_time"
    )
    streams = {}
    for stream in data.get("streams", []):
        streams.setdefault(stream["codec_type"], stream)
    spans = {}
    for kind, stream in streams.items():
        times = [
            (float(p["pts_time"]), float(p.get("duration_time") or 0))
            for p in data.get("packets", [])
            if p["stream_index"] == stream["index"] and p.get("pts_time") not in (None, "N/A")
        ]
        if not times:
            continue
        start = _seconds(stream.get("start_time"), min(t for t, _ in times))
        end = start + float(stream["duration"]) if _seconds(stream.get("duration")) else max(t + d for t, d in times)
        spans[kind] = Span(start, end)
    return spans


def _seconds(text: str | None, default: float | None = None) -> float | None:
    return float(text) if text not in (None, "N/A") else default


def display_aspect(path: Path) -> float:
    """The first video stream's width over height as shown: pixel aspect ratio, then rotation."""
    data = ffprobe_json(
        path,
        "-select_streams",
        "v:0",
        "-show_entries",
        "stream=width,height,sample_aspect_ratio:stream_side_data=rotation",
    )
    [stream] = data["streams"]
    sar_text = stream.get("sample_aspect_ratio") or "1:1"
    num, _, den = sar_text.partition(":")
    sar = Fraction(int(num), int(den)) if int(num) > 0 and int(den) > 0 else Fraction(1)
    ratio = stream["width"] * float(sar) / stream["height"]
    rotation = next((int(d["rotation"]) for d in stream.get("side_data_list", []) if "rotation" in d), 0)
    return 1 / ratio if abs(rotation) % 180 == 90 else ratio


def reference_seconds(source: Path) -> float:
    """Where plain ffmpeg finds ``source``'s picture ending when it decodes its first video and audio
    streams (on the same timeline as a conversion: from the earlier track's start), seconds; what a
    container's header says can be wrong, or missing. The picture sets a video output's length
    (``services.conversion.video``)."""
    with tempfile.TemporaryDirectory(prefix="siphon-reference-") as tmp:
        decoded = Path(tmp) / "decoded.nut"
        subprocess.run(
            ["ffmpeg", "-nostdin", "-v", "error", "-i", str(source), "-map", "0:v:0", "-map", "0:a:0?"]
            + ["-c:v", "rawvideo", "-s", "16x16", "-pix_fmt", "gray", "-c:a", "pcm_s16le", "-y", str(decoded)],
            capture_output=True,
            timeout=FFPROBE_TIMEOUT_SECONDS,
            stdin=subprocess.DEVNULL,
            check=True,
        )
        spans = stream_spans(decoded)
    return spans["video"].end  # from the file's start: a video output starts both tracks at 0


def codecs(path: Path) -> tuple[str | None, str | None]:
    """The codec names of the first video and first audio stream (None for a missing one)."""
    data = ffprobe_json(path, "-show_entries", "stream=codec_type,codec_name,height,pix_fmt")
    found = {}
    for stream in data["streams"]:
        found.setdefault(stream["codec_type"], stream)
    return (found.get("video", {}).get("codec_name"), found.get("audio", {}).get("codec_name"))


def output_height_and_format(path: Path) -> tuple[int, int, str]:
    """Width, height and pixel format of the first video stream."""
    [stream] = ffprobe_json(path, "-select_streams", "v:0", "-show_entries", "stream=width,height,pix_fmt")["streams"]
    return stream["width"], stream["height"], stream["pix_fmt"]


def video_problems(source: Path, output: Path, video_codec: str, audio_codec: str | None, max_height: int) -> list[str]:
    """What is wrong with ``output`` (made from ``source``); empty when it passes every check."""
    problems = []
    found = codecs(output)
    if found != (video_codec, audio_codec):
        problems.append(f"codecs {found}, expected {(video_codec, audio_codec)}")
    width, height, pix_fmt = output_height_and_format(output)
    if height > max_height or height % 2 or width % 2:
        problems.append(f"size {width}x{height}: not even or above {max_height}")
    if pix_fmt != "yuv420p":
        problems.append(f"pixel format {pix_fmt}")
    want, got = display_aspect(source), display_aspect(output)
    if abs(got / want - 1) > ASPECT_TOLERANCE_RATIO:
        problems.append(f"display aspect {got:.4f}, source {want:.4f}")
    spans = stream_spans(output)
    expected = reference_seconds(source)
    duration = max(s.end for s in spans.values()) - min(s.start for s in spans.values())
    if abs(duration - expected) > max(DURATION_TOLERANCE_RATIO * expected, DURATION_TOLERANCE_FLOOR_SECONDS):
        problems.append(f"duration {duration:.3f} s, source {expected:.3f} s")
    if "audio" in spans:
        video, audio = spans["video"], spans["audio"]
        if abs(video.start - audio.start) > START_TOLERANCE_SECONDS:
            problems.append(f"starts apart: video {video.start:.3f} s, audio {audio.start:.3f} s")
        if abs(video.end - audio.end) > END_TOLERANCE_SECONDS:
            problems.append(f"ends apart: video {video.end:.3f} s, audio {audio.end:.3f} s")
    return problems

"""The MP3 duration read from the Xing/Info header in-process equals what ffprobe reports."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from services.conversion.mp3info import xing_seconds

pytestmark = pytest.mark.integration

ENCODINGS = {
    "vbr_stereo_48k": ["-q:a", "2"],
    "cbr_mono_44k": ["-b:a", "320k", "-ac", "1", "-ar", "44100"],
    "mpeg2_22k": ["-b:a", "64k", "-ar", "22050"],
    "mpeg25_mono_8k": ["-q:a", "5", "-ac", "1", "-ar", "8000"],
}


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


def ffprobe_seconds(path: Path) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", str(path)],
        capture_output=True,
        check=True,
    ).stdout
    return float(json.loads(out)["format"]["duration"])


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("src") / "video.mp4"
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=160x120:rate=10:duration=7.3",
        "-f",
        "lavfi",
        "-i",
        "sine=sample_rate=48000:duration=7.3",
        "-c:v",
        "libx264",
        "-c:a",
        "aac",
        "-ac",
        "2",
        str(path),
    )
    return path


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_the_header_gives_ffprobes_duration(video, tmp_path, encoding):
    target = tmp_path / "out.mp3"
    ffmpeg("-i", str(video), "-map", "0:a", "-c:a", "libmp3lame", *ENCODINGS[encoding], str(target))
    assert xing_seconds(target) == ffprobe_seconds(target)


def test_a_cover_picture_in_front_is_skipped(video, tmp_path):
    target = tmp_path / "covered.mp3"
    ffmpeg(
        "-i",
        str(video),
        "-ss",
        "1",
        "-t",
        "1",
        "-i",
        str(video),
        "-map",
        "0:a",
        "-map",
        "1:v",
        "-c:a",
        "libmp3lame",
        "-c:v",
        "mjpeg",
        "-frames:v",
        "1",
        "-disposition:v:0",
        "attached_pic",
        "-id3v2_version",
        "4",
        str(target),
    )
    assert xing_seconds(target) == ffprobe_seconds(target)


@pytest.mark.parametrize("extension", ["m4a", "flac", "wav"])
def test_other_formats_are_left_to_ffprobe(video, tmp_path, extension):
    target = tmp_path / f"out.{extension}"
    ffmpeg("-i", str(video), "-map", "0:a", str(target))
    assert xing_seconds(target) is None


def test_bytes_that_are_no_mp3_are_left_to_ffprobe(tmp_path):
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(b"ID3\x04\x00\x00\x00\x00\x00\x05hello" + bytes(100))
    assert xing_seconds(junk) is None

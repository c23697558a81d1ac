"""The Converter with the real ffmpeg and ffprobe, on files of the media corpus and generated ones."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import pytest

from services.conversion.converter import Converter
from services.conversion.encode import ConversionInterrupted
from shared.config import load_settings
from shared.errors import MediaError
from tests.support.processes import live_mentioning

pytestmark = pytest.mark.integration


def ffprobe_audio(path: Path) -> dict:
    """Format and first audio stream of ``path`` as ffprobe reports them."""
    done = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "a:0",
            "-of",
            "json",
            "-show_entries",
            "format=format_name,duration:stream=codec_name,sample_rate,channels",
            str(path),
        ],
        capture_output=True,
        check=True,
        timeout=30,
    )
    data = json.loads(done.stdout)
    [stream] = data["streams"]
    return {
        "format": data["format"]["format_name"],
        "duration": float(data["format"]["duration"]),
        "codec": stream["codec_name"],
        "sample_rate": int(stream["sample_rate"]),
        "channels": stream["channels"],
    }


def generate(path: Path, lavfi: str, *options: str) -> Path:
    """Render an ffmpeg lavfi source (e.g. ``sine=...``) into ``path``."""
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            lavfi,
            *options,
            "-y",
            str(path),
        ],
        check=True,
        timeout=60,
    )
    return path


@pytest.fixture
def converter(tmp_path) -> Converter:
    return Converter(load_settings(work_dir=tmp_path))


@pytest.fixture(scope="module")
def long_input(tmp_path_factory) -> Path:
    """Ten minutes of 44.1 kHz mono FLAC: generated in a fraction of a second, seconds to encode."""
    return generate(
        tmp_path_factory.mktemp("long") / "long.flac",
        "sine=frequency=440:sample_rate=44100:duration=600",
        "-c:a",
        "flac",
        "-compression_level",
        "0",
    )


def convert(converter: Converter, source: Path, target: Path):
    return converter.to_mp3(converter.probe(source), source, target)


def test_an_ordinary_mp4_becomes_an_mp3_of_the_same_length(converter, media_dir, tmp_path):
    target = tmp_path / "out.mp3"
    result = convert(converter, media_dir / "ordinary_h264_aac_stereo_48k_8s.mp4", target)
    audio = ffprobe_audio(target)
    assert (audio["format"], audio["codec"], audio["sample_rate"], audio["channels"]) == ("mp3", "mp3", 48000, 2)
    assert audio["duration"] == pytest.approx(8.0, abs=0.15)
    assert result.duration_seconds == pytest.approx(8.0, abs=0.15)
    assert result.size_bytes == target.stat().st_size > 10_000


def test_8_khz_mono_stays_8_khz_mono(converter, media_dir, tmp_path):
    target = tmp_path / "out.mp3"
    convert(converter, media_dir / "sr8k_aac_lc_mono.m4a", target)
    audio = ffprobe_audio(target)
    assert (audio["sample_rate"], audio["channels"]) == (8000, 1)
    assert audio["duration"] == pytest.approx(3.2, abs=0.3)


def test_5_1_ac3_is_downmixed_to_stereo(converter, media_dir, tmp_path):
    target = tmp_path / "out.mp3"
    probe = converter.probe(media_dir / "ac3_5.1_48k_audio_only.mp4")
    assert probe.default_audio().channels == 6
    converter.to_mp3(probe, media_dir / "ac3_5.1_48k_audio_only.mp4", target)
    assert ffprobe_audio(target)["channels"] == 2


def test_96_khz_input_becomes_48_khz(converter, tmp_path):
    source = generate(tmp_path / "hi-res.flac", "sine=frequency=1000:sample_rate=96000:duration=2", "-c:a", "flac")
    target = tmp_path / "out.mp3"
    assert converter.probe(source).default_audio().sample_rate_hz == 96000
    result = convert(converter, source, target)
    assert ffprobe_audio(target)["sample_rate"] == 48000
    assert result.duration_seconds == pytest.approx(2.0, abs=0.1)


def test_an_init_segment_without_samples_fails_no_audio_frames(converter, media_dir, tmp_path):
    with pytest.raises(MediaError) as info:
        convert(converter, media_dir / "fmp4_init_segment_only_aac_no_samples.mp4", tmp_path / "out.mp3")
    assert info.value.code == "no_audio_frames"


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("zero_byte.mp4", "empty_file"),
        ("not_media_text_file.mp4", "not_media"),
        ("encrypted_cenc_fmp4_clearkey.mp4", "encrypted"),
        ("truncated_init_segment_100b.mp4", "truncated"),
        ("corrupt_malformed_free_box_no_moov.mp4", "corrupt_media"),
        ("no_audio_h264_1s.mp4", "no_audio_stream"),
        ("ac4_stereo_unsupported_codec.mp4", "unsupported_codec"),
    ],
)
def test_files_that_cannot_become_audio_fail_with_their_code(converter, media_dir, tmp_path, name, code):
    with pytest.raises(MediaError) as info:
        convert(converter, media_dir / name, tmp_path / "out.mp3")
    assert info.value.code == code


def test_a_playlist_posing_as_mp4_is_refused(converter, tmp_path):
    playlist = tmp_path / "video.mp4"
    playlist.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n")
    with pytest.raises(MediaError) as info:
        converter.probe(playlist)
    assert info.value.code == "unsupported_format"


def test_a_conversion_past_the_time_limit_is_killed_with_timeout(tmp_path, long_input):
    converter = Converter(load_settings(work_dir=tmp_path, conversion_timeout_seconds=0.3))
    target = tmp_path / "slow.mp3"
    started = time.monotonic()
    with pytest.raises(MediaError) as info:
        convert(converter, long_input, target)
    assert info.value.code == "timeout"
    assert time.monotonic() - started < 5
    assert live_mentioning(str(target)) == [], "ffmpeg must not outlive its time limit"


def test_abort_from_another_thread_interrupts_the_conversion(converter, tmp_path, long_input):
    target = tmp_path / "aborted.mp3"
    probe = converter.probe(long_input)
    running = threading.Event()
    aborter = threading.Thread(target=lambda: running.wait(30) and converter.abort())
    aborter.start()
    started = time.monotonic()
    with pytest.raises(ConversionInterrupted):
        converter.to_mp3(probe, long_input, target, on_progress=lambda seconds: running.set())
    aborter.join()
    assert running.is_set() and time.monotonic() - started < 10
    assert live_mentioning(str(target)) == []
    with pytest.raises(ConversionInterrupted):  # an aborted converter starts nothing more
        converter.to_mp3(probe, long_input, tmp_path / "again.mp3")

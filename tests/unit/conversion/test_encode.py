"""Choosing MP3 parameters, building the ffmpeg command and judging a run (``services.conversion.encode``).

The :class:`FfmpegProcess` tests run tiny shell commands in ffmpeg's place: milliseconds, no media.
"""

from __future__ import annotations

import errno
import re
import subprocess
import time
from pathlib import Path

import pytest

from services.conversion import encode
from services.conversion.encode import (
    MP3_SAMPLE_RATES_HZ,
    ConversionInterrupted,
    EncodeLimits,
    FfmpegProcess,
    build_mp3_command,
    mp3_channels,
    mp3_sample_rate,
)
from services.conversion.probe import ALLOWED_DEMUXERS, AudioStream, ProbeResult
from shared.errors import MediaError
from tests.support.processes import live_in_group

LIMITS = EncodeLimits(max_duration_seconds=14400, max_output_bytes=512 * 1024 * 1024, timeout_seconds=1800)
SURROUND = AudioStream(index=2, codec="ac3", sample_rate_hz=96000, channels=6, is_default=True)
PROBE = ProbeResult(format_name="mov,mp4,m4a,3gp,3g2,mj2", duration_seconds=8.0, audio_streams=(SURROUND,))


@pytest.mark.parametrize(
    ("source", "mp3"),
    [
        (7350, 8000),
        (8000, 8000),
        (11025, 11025),
        (16000, 16000),
        (22050, 22050),
        (32000, 32000),
        (44100, 44100),
        (48000, 48000),
        (64000, 48000),
        (88200, 48000),
        (96000, 48000),
        (192000, 48000),
        (None, 44100),
        (1, 8000),
        (12001, 16000),
    ],
)
def test_mp3_sample_rate(source, mp3):
    assert mp3_sample_rate(source) == mp3


def test_mp3_sample_rate_never_lowers_a_rate_mp3_can_carry():
    for source in range(1000, 50000, 517):
        rate = mp3_sample_rate(source)
        assert rate in MP3_SAMPLE_RATES_HZ and rate >= min(source, 48000)


@pytest.mark.parametrize(("source", "mp3"), [(1, 1), (2, 2), (6, 2), (8, 2), (None, 2)])
def test_mp3_channels(source, mp3):
    assert mp3_channels(source) == mp3


def command(**limits) -> list[str]:
    chosen = EncodeLimits(**{**LIMITS.__dict__, **limits})
    return build_mp3_command("/usr/bin/ffmpeg", PROBE, SURROUND, Path("/w/input"), Path("/w/output.mp3"), chosen, 4)


def option(argv: list[str], flag: str) -> str:
    """The value following ``flag``; fails the test if the flag is missing."""
    assert flag in argv, f"{flag} missing from {argv}"
    return argv[argv.index(flag) + 1]


def test_command_confines_ffmpeg_to_local_files_and_allowed_demuxers():
    argv = command()
    assert argv[0] == "/usr/bin/ffmpeg" and "-nostdin" in argv
    assert option(argv, "-protocol_whitelist") == "file"
    allowed = option(argv, "-format_whitelist").split(",")
    assert allowed == list(ALLOWED_DEMUXERS) and not {"hls", "concat", "image2", "tee"} & set(allowed)
    assert option(argv, "-f") == "mov", "the probed demuxer is forced, not guessed again"
    assert option(argv, "-i") == "file:/w/input"
    assert argv.index("-protocol_whitelist") < argv.index("-i")


def test_command_extracts_the_chosen_stream_only_as_mp3():
    argv = command()
    assert option(argv, "-map") == "0:2"
    assert {"-vn", "-sn", "-dn"} <= set(argv)
    assert option(argv, "-c:a") == "libmp3lame" and option(argv, "-q:a") == "4"
    assert option(argv, "-ar") == "48000" and option(argv, "-ac") == "2"
    assert argv[-4:] == ["-f", "mp3", "-y", "file:/w/output.mp3"]
    assert option(argv, "-progress") == "pipe:1"


def test_command_carries_the_limits():
    argv = command(max_duration_seconds=60.5, max_output_bytes=1000)
    assert float(option(argv, "-t")) == 60.5 and option(argv, "-fs") == "1000"


@pytest.mark.parametrize("seconds", [1_000_000, 4 * 3600, 0.1234567, 123456.789])
def test_duration_limit_is_written_as_a_plain_decimal_ffmpeg_accepts(seconds):
    value = option(command(max_duration_seconds=seconds), "-t")
    assert re.fullmatch(r"\d+(\.\d+)?", value), f"ffmpeg refuses durations like {value!r}"
    assert float(value) == pytest.approx(seconds, abs=1e-6)


def shell(script: str, tmp_path: Path) -> FfmpegProcess:
    """An FfmpegProcess running ``sh -c script`` (``-i`` names a file, as in a real command)."""
    return FfmpegProcess(["sh", "-c", script, "-i", f"file:{tmp_path / 'input'}"], tmp_path / "ffmpeg.log")


def test_progress_is_read_from_stdout(tmp_path):
    seen: list[float] = []
    script = "printf 'out_time_us=N/A\\nout_time_us=1500000\\nprogress=continue\\nout_time_us=2500000\\n'"
    assert shell(script, tmp_path).run(10, seen.append) == 2.5
    assert seen == [1.5, 2.5]


@pytest.mark.parametrize(
    ("stderr", "code"),
    [
        ("Decoder (codec none) not found for input stream #0:0", "unsupported_codec"),
        ("Error while decoding stream #0:1: something odd", "decode_failed"),
        ("", "decode_failed"),
    ],
)
def test_a_failed_run_becomes_a_media_error(tmp_path, stderr, code):
    with pytest.raises(MediaError) as info:
        shell(f"echo '{stderr}' >&2; exit 1", tmp_path).run(10, lambda s: None)
    assert info.value.code == code


def test_invalid_data_is_explained_from_the_input_bytes(tmp_path):
    (tmp_path / "input").write_bytes(b"This file looks like an mp4 but it isn't.")
    with pytest.raises(MediaError) as info:
        shell("echo 'file:input: Invalid data found when processing input' >&2; exit 1", tmp_path).run(10, print)
    assert info.value.code == "not_media"


def test_a_full_disk_is_an_os_error_not_the_files_fault(tmp_path):
    with pytest.raises(OSError) as info:
        shell("echo 'Error writing trailer: No space left on device' >&2; exit 1", tmp_path).run(10, print)
    assert info.value.errno == errno.ENOSPC


def test_a_crash_signal_interrupts_rather_than_fails(tmp_path):
    with pytest.raises(ConversionInterrupted, match="signal 11"):
        shell("kill -SEGV $$", tmp_path).run(10, print)


def test_the_time_limit_kills_the_process_group(tmp_path):
    process = shell("sleep 30 & sleep 30; wait", tmp_path)
    started = time.monotonic()
    with pytest.raises(MediaError) as info:
        process.run(0.2, print)
    assert info.value.code == "timeout" and time.monotonic() - started < 5
    assert process._process.poll() is not None
    # SIGKILL reaches the orphaned child asynchronously; on a loaded machine it may take a moment.
    deadline = time.monotonic() + 5
    while live_in_group(process._process.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert live_in_group(process._process.pid) == [], "what ffmpeg spawned must die with it"


def test_abort_before_start_never_spawns(tmp_path):
    process = shell("touch spawned", tmp_path)
    process.abort()
    with pytest.raises(ConversionInterrupted):
        process.run(10, print)
    assert process._process is None


def test_abort_while_running_interrupts(tmp_path):
    process = shell("printf 'out_time_us=1\\n'; sleep 30", tmp_path)
    started = time.monotonic()
    with pytest.raises(ConversionInterrupted, match="aborted"):
        process.run(60, lambda seconds: process.abort())
    assert time.monotonic() - started < 5


def test_abort_racing_the_spawn_still_stops_the_run(tmp_path, monkeypatch):
    """abort() landing after run() checked the flag but before the child existed must not be lost."""
    process = shell("sleep 10", tmp_path)
    real_popen = subprocess.Popen

    def abort_then_spawn(*args, **kwargs):
        process.abort()
        return real_popen(*args, **kwargs)

    monkeypatch.setattr(encode.subprocess, "Popen", abort_then_spawn)
    started = time.monotonic()
    with pytest.raises(ConversionInterrupted):
        process.run(60, print)
    assert time.monotonic() - started < 5


def test_stderr_tail_is_bounded(tmp_path):
    process = shell("head -c 100000 /dev/zero | tr '\\0' x >&2; echo END >&2", tmp_path)
    process.run(10, print)
    tail = process.stderr_tail()
    assert tail.endswith("xEND\n") and len(tail) == encode.STDERR_TAIL_BYTES

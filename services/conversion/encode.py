"""Running ffmpeg to extract one audio stream as MP3, under limits, with progress.

The command (FFmpeg's documentation: ffmpeg(1), "Main options"; libmp3lame in ffmpeg-codecs(1))::

    ffmpeg -nostdin -hide_banner -loglevel error
           -protocol_whitelist file -format_whitelist <ALLOWED_DEMUXERS> -f <probed demuxer>
           -i file:<input>
           -map 0:<stream> -vn -sn -dn
           -c:a libmp3lame -q:a <V> -ar <Hz> -ac <1|2>
           -t <max seconds> -fs <max bytes> -progress pipe:1 -nostats
           -f mp3 -y file:<output>

ffmpeg runs in its own process group, so a timeout or an abort kills it and anything it spawned.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from services.conversion import media_codes as codes
from services.conversion.probe import AudioStream, ProbeResult, confinement_options, explain_unreadable
from shared.errors import MediaError

MP3_SAMPLE_RATES_HZ = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
"""Sample rates MP3 can carry: MPEG-1 (ISO/IEC 11172-3), MPEG-2 (13818-3) and MPEG-2.5 layer III."""

DEFAULT_SAMPLE_RATE_HZ = 44100
STDERR_TAIL_BYTES = 4096

TRUNCATION_MESSAGES = (": partial file", "File ended prematurely")
"""What FFmpeg's MP4 (mov) and Matroska demuxers log when the file ends before media its index
declares. ffmpeg still exits 0 with the audio before the cut, so a run that logged one of these
is a truncated file, not a conversion."""

PR_SET_PDEATHSIG = 1
"""prctl(2) option (<linux/prctl.h>): the signal a process gets when the thread that forked it exits."""

_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def _die_with(parent_pid: int) -> None:
    """``preexec_fn`` of ffmpeg (runs in the child, before exec): have the kernel SIGKILL it when
    the work thread that started it dies. ffmpeg runs in a session of its own and ignores its broken
    progress pipe, so a worker killed with SIGKILL would otherwise leave it encoding to the end."""
    if _prctl is None:
        return
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the worker died before prctl took effect
        os._exit(1)


class ConversionInterrupted(Exception):
    """ffmpeg was stopped from outside siphon's limits: an abort (shutdown) or a crash signal.

    Not the file's fault as far as we know; the task may be tried again.
    """


def mp3_sample_rate(source_hz: int | None) -> int:
    """The MP3 sample rate for a source rate: itself if MP3 allows it, else the next higher
    allowed rate (no band-limiting), else 48 000 Hz for sources above 48 kHz."""
    if source_hz is None:
        return DEFAULT_SAMPLE_RATE_HZ
    return next((rate for rate in MP3_SAMPLE_RATES_HZ if rate >= source_hz), MP3_SAMPLE_RATES_HZ[-1])


def mp3_channels(source_channels: int | None) -> int:
    """1 for mono sources, else 2: MP3 carries at most two channels, so 5.1 is downmixed."""
    return 1 if source_channels == 1 else 2


@dataclass(frozen=True)
class EncodeLimits:
    """Per-job limits: audio seconds kept, output bytes, wall-clock seconds."""

    max_duration_seconds: float
    max_output_bytes: int
    timeout_seconds: float


@dataclass(frozen=True)
class EncodeResult:
    """The MP3 written: its duration (seconds, from ffmpeg's own count) and size (bytes)."""

    duration_seconds: float
    size_bytes: int


def build_mp3_command(ffmpeg: str, probe: ProbeResult, stream: AudioStream, source: Path, target: Path,
                      limits: EncodeLimits, vbr_quality: int) -> list[str]:
    """The ffmpeg argv (see the module docstring)."""
    return [
        ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error",
        *confinement_options(), "-f", probe.demuxer, "-i", f"file:{source}",
        "-map", f"0:{stream.index}", "-vn", "-sn", "-dn",
        "-c:a", "libmp3lame", "-q:a", str(vbr_quality),
        "-ar", str(mp3_sample_rate(stream.sample_rate_hz)), "-ac", str(mp3_channels(stream.channels)),
        "-t", f"{limits.max_duration_seconds:.6f}", "-fs", str(limits.max_output_bytes),  # never "1e+06"
        "-progress", "pipe:1", "-nostats",
        "-f", "mp3", "-y", f"file:{target}",
    ]


class FfmpegProcess:
    """One ffmpeg run that can be aborted from another thread (:meth:`abort`)."""

    def __init__(self, command: list[str], stderr_path: Path):
        self.command = command
        self.stderr_path = stderr_path
        self._process: subprocess.Popen | None = None
        self._aborted = threading.Event()
        self._timed_out = threading.Event()

    def run(self, timeout_seconds: float, on_progress: Callable[[float], None]) -> float:
        """Run to the end; return the seconds of audio written (ffmpeg's ``out_time_us``).

        Raises:
            MediaError: ``timeout`` past ``timeout_seconds``, or a decoding failure.
            ConversionInterrupted: aborted, or killed by a signal siphon did not send.
        """
        if self._aborted.is_set():
            raise ConversionInterrupted("aborted before start")
        with open(self.stderr_path, "wb") as stderr:
            self._process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                             stderr=stderr, start_new_session=True,
                                             preexec_fn=functools.partial(_die_with, os.getpid()))
            if self._aborted.is_set():  # abort() ran after the check above, before there was a process to kill
                self.kill()
            timer = threading.Timer(timeout_seconds, self._on_timeout)
            timer.start()
            try:
                out_seconds = self._read_progress(on_progress)
                returncode = self._process.wait()
            finally:
                timer.cancel()
                self.kill()
        return self._judge(returncode, out_seconds)

    def _read_progress(self, on_progress: Callable[[float], None]) -> float:
        out_seconds = 0.0
        for raw in self._process.stdout:
            key, _, value = raw.decode(errors="replace").strip().partition("=")
            if key == "out_time_us" and value.isdigit():
                out_seconds = int(value) / 1e6
                on_progress(out_seconds)
        return out_seconds

    def _judge(self, returncode: int, out_seconds: float) -> float:
        if self._timed_out.is_set():
            raise MediaError("The conversion took longer than the time limit.", code=codes.TIMEOUT)
        if self._aborted.is_set():
            raise ConversionInterrupted("aborted")
        if returncode < 0:
            raise ConversionInterrupted(f"ffmpeg killed by signal {-returncode}")
        if returncode != 0:
            tail = self.stderr_tail()
            if "No space left on device" in tail:
                raise OSError(errno.ENOSPC, "No space left on device (ffmpeg)")
            raise self._decode_error(tail)
        if any(message in self.stderr_tail() for message in TRUNCATION_MESSAGES):
            raise MediaError("The file is cut short: its media ends before the length it declares.",
                             code=codes.TRUNCATED)
        return out_seconds

    def _decode_error(self, tail: str) -> MediaError:
        if "Decoder (codec" in tail and "not found" in tail:
            return MediaError("The audio stream uses a codec FFmpeg cannot decode.", code=codes.UNSUPPORTED_CODEC)
        if "Invalid data found" in tail or "not on whitelist" in tail:
            return explain_unreadable(Path(self.command[self.command.index("-i") + 1].removeprefix("file:")), tail)
        last = tail.strip().splitlines()[-1] if tail.strip() else "no message"
        return MediaError(f"FFmpeg could not decode the audio: {last[:300]}", code=codes.DECODE_FAILED)

    def stderr_tail(self) -> str:
        """The last few KB ffmpeg wrote to stderr."""
        try:
            with open(self.stderr_path, "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - STDERR_TAIL_BYTES))
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def _on_timeout(self) -> None:
        self._timed_out.set()
        self.kill()

    def abort(self) -> None:
        """Kill ffmpeg's process group now (safe from any thread, before or during :meth:`run`)."""
        self._aborted.set()
        self.kill()

    def kill(self) -> None:
        """SIGKILL ffmpeg's whole process group if it is still running."""
        process = self._process
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


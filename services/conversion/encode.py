"""Running ffmpeg to extract one audio stream in the chosen format, under limits, with progress.

The command (FFmpeg's documentation: ffmpeg(1) "Main options" and "Advanced options"; the
encoders in ffmpeg-codecs(1), the muxers in ffmpeg-formats(1))::

    ffmpeg -nostdin -hide_banner -loglevel error
           -protocol_whitelist file -format_whitelist <ALLOWED_DEMUXERS> -f <probed demuxer>
           [-ss <start>] [-to <end>] -i file:<input>
           -map 0:<audio stream> -vn -sn -dn
           -map_metadata:g -1 -map_metadata:s -1 [-metadata <tag>=<value> ...]
           -c:a <encoder> <rate control> -ar <Hz> -ac <1|2> [-af loudnorm=...]
           <muxer options: -id3v2_version 4 (mp3), -movflags +faststart (m4a)>
           -t <max seconds> -fs <max bytes> -progress pipe:1 -nostats
           -f <muxer> -y file:<output>

A video format (mp4, webm, mkv) maps the video stream as well, with its filters and encoder
(``services.conversion.video``), and the audio stream only when the input has one::

           -map 0:<video stream> [-map 0:<audio stream>] -sn -dn -map_chapters -1
           -vf <filters> -fps_mode vfr -c:v <encoder> <crf or bitrate> <preset> [-tag:v hvc1]
           [-c:a <encoder> ... -af aresample=async=1:first_pts=0,apad <SHORTEST>]  -movflags +faststart (mp4)

The input is confined (``-protocol_whitelist file``, ``-format_whitelist``) and is the only one:
with a second input ffmpeg 5.1 reads every input on a thread of its own, which costs CPU in
proportion to the file. So the output takes the one mapped audio stream and ``-vn -sn -dn``, and the
cover picture is made beside the encode and embedded after it (``services.conversion.picture``).
Tags are not copied wholesale
(``-map_metadata -1`` for global and stream metadata: no GPS location, encoder or brand tags leak
through); the ones siphon carries are set one by one. Chapters are copied by FFmpeg's default
(``-map_chapters``): the mp3 muxer writes them as ID3 CHAP/CTOC frames.

ffmpeg runs in its own process group, so a timeout or an abort kills it and anything it spawned;
given a ``jail`` (``services.conversion.sandbox``), under bwrap and rlimits.
"""

from __future__ import annotations

import errno
import functools
import os
import signal
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from services.conversion import media_codes as codes
from services.conversion.forked import die_with
from services.conversion.probe import AudioStream, ProbeResult, confinement_options, explain_unreadable
from services.conversion.sandbox import Jail, bwrap_failure
from services.conversion.video import VideoPlan
from shared.errors import MediaError, SandboxFailed
from shared.options import FORMATS, ConversionOptions, OutputFormat
from shared.options import MP3_SAMPLE_RATES_HZ as MP3_SAMPLE_RATES_HZ  # re-exported (imported from here)

DEFAULT_SAMPLE_RATE_HZ = 44100

VIDEO_SAMPLE_RATE_HZ = 48000
"""The audio rate of a video output unless the client sets ``sample_rate`` (video's usual rate,
and Opus's own: RFC 6716 §2), Hz."""

LAME_VBR_KBPS = (245, 225, 190, 175, 165, 130, 115, 100, 85, 65)
"""Average bitrate of LAME's VBR presets -V0 ... -V9 (LAME's usage notes, "VBR presets"), kbps: what
``quality`` asks of the encoders that have no -V scale of their own (AAC; Opus at half of it)."""

OPUS_MAX_KBPS_PER_CHANNEL = 256
"""libopus refuses bitrates above 256 kbps per channel (ffmpeg-codecs(1), libopus "b")."""

STDERR_TAIL_BYTES = 4096

NEARLY_FULL_BYTES = 1024 * 1024
"""Free space under which a failed ffmpeg run is put down to a full work dir, bytes. When the disk
filled up, ffmpeg's own "No space left on device" could not be written to its log there."""

TRUNCATION_MESSAGES = (": partial file", "File ended prematurely")
"""What FFmpeg's MP4 (mov) and Matroska demuxers log when the file ends before media its index
declares. ffmpeg still exits 0 with the audio before the cut, so a run that logged one of these
is a truncated file, not a conversion."""


def _nearly_full(directory: Path) -> bool:
    """Whether the filesystem holding ``directory`` has less than :data:`NEARLY_FULL_BYTES` free."""
    try:
        fs = os.statvfs(directory)
    except OSError:
        return False
    return fs.f_bavail * fs.f_frsize < NEARLY_FULL_BYTES


class ConversionInterrupted(Exception):
    """ffmpeg was stopped from outside siphon's limits: an abort (shutdown) or a crash signal.

    Not the file's fault as far as we know; the task may be tried again.
    """


def mp3_sample_rate(source_hz: int | None) -> int:
    """The MP3 sample rate for a source rate: itself if MP3 allows it, else the next higher
    allowed rate (no band-limiting), else 48 000 Hz for sources above 48 kHz."""
    return output_sample_rate(FORMATS["mp3"], source_hz)


def mp3_channels(source_channels: int | None) -> int:
    """1 for mono sources, else 2: MP3 carries at most two channels, so 5.1 is downmixed."""
    return 1 if source_channels == 1 else 2


def output_sample_rate(output: OutputFormat, source_hz: int | None) -> int:
    """The sample rate to write: :data:`VIDEO_SAMPLE_RATE_HZ` for a video format; for formats with a
    fixed set of rates, the source's if allowed, else the next higher one (no band-limiting), else
    the highest; otherwise the source's own."""
    if output.is_video and source_hz != VIDEO_SAMPLE_RATE_HZ:
        # Video's own rate: an 8 kHz AAC track has 128 ms frames, too coarse to end with the picture.
        return VIDEO_SAMPLE_RATE_HZ
    if output.sample_rates_hz is None:
        return source_hz or DEFAULT_SAMPLE_RATE_HZ
    if source_hz is None:
        source_hz = DEFAULT_SAMPLE_RATE_HZ
    return next((rate for rate in output.sample_rates_hz if rate >= source_hz), output.sample_rates_hz[-1])


def rate_control(output: OutputFormat, options: ConversionOptions, default_quality: int, channels: int) -> list[str]:
    """The encoder's bitrate arguments: constant ``bitrate`` (kbps) or VBR ``quality`` (LAME's -V
    scale, ``default_quality`` when neither is set), translated for each encoder; none for lossless."""
    if not output.lossy:
        return []
    opus_cap = OPUS_MAX_KBPS_PER_CHANNEL * channels
    if options.bitrate is not None:
        if output.encoder == "libopus":
            return ["-b:a", f"{min(options.bitrate, opus_cap)}k", "-vbr", "off"]
        return ["-b:a", f"{options.bitrate}k"]
    quality = default_quality if options.quality is None else options.quality
    if output.encoder == "libmp3lame":
        return ["-q:a", str(quality)]
    if output.encoder == "libvorbis":  # Vorbis -q 8 ≈ 256 kbps ... -q 0 ≈ 64 kbps, so -V0 → 8, -V2 → 6, -V9 → 0
        return ["-q:a", str(round(8 - quality * 8 / 9))]
    if output.encoder == "libopus":
        return ["-b:a", f"{min(LAME_VBR_KBPS[quality] // 2, opus_cap)}k", "-vbr", "on"]
    return ["-b:a", f"{LAME_VBR_KBPS[quality]}k"]  # FFmpeg's AAC encoder: its own VBR mode is experimental


def muxer_options(output: OutputFormat) -> list[str]:
    """What each muxer needs beyond its name."""
    if output.muxer == "mp3":
        return ["-id3v2_version", "4"]
    if output.muxer in ("ipod", "mp4"):
        return ["-movflags", "+faststart"]  # the index first, so players start before the whole file is in
    if output.encoder == "flac":
        return ["-sample_fmt", "s16"]  # 16-bit like the WAV output; FFmpeg would pick 32-bit for float sources
    return []


@dataclass(frozen=True)
class EncodeLimits:
    """Per-job limits: audio seconds kept, output bytes, wall-clock seconds."""

    max_duration_seconds: float
    max_output_bytes: int
    timeout_seconds: float


@dataclass(frozen=True)
class EncodeResult:
    """The audio file written: its duration (seconds, measured in the file) and size (bytes), and
    the conversion's speed (seconds of audio per wall-clock second, × realtime)."""

    duration_seconds: float
    size_bytes: int
    speed: float | None = None


@dataclass(frozen=True)
class EncodePlan:
    """Everything one conversion's ffmpeg command depends on (``services.conversion.plan`` makes it).

    ``start_seconds``/``end_seconds`` trim the input; ``tags`` are ``(key, value)`` pairs in
    FFmpeg's generic names; ``expected_seconds`` is how much audio the output should hold (for
    progress), None when the input does not say how long it is. ``video`` is set for a video
    format; then ``audio_index`` is None when the input has no audio (the output has none either).
    """

    demuxer: str
    audio_index: int | None
    output: OutputFormat
    rate_control: tuple[str, ...]
    sample_rate_hz: int
    channels: int
    start_seconds: float | None = None
    end_seconds: float | None = None
    tags: tuple[tuple[str, str], ...] = ()
    audio_filter: str | None = None
    expected_seconds: float | None = None
    video: VideoPlan | None = None


def _seconds(value: float) -> str:
    return f"{value:.6f}"  # a plain decimal: ffmpeg refuses "1e+06"


def input_options(plan: EncodePlan, source: Path) -> list[str]:
    """The confined, trimmed audio input (input 0)."""
    trim = []
    if plan.start_seconds is not None:
        trim += ["-ss", _seconds(plan.start_seconds)]
    if plan.end_seconds is not None:
        trim += ["-to", _seconds(plan.end_seconds)]
    return [*confinement_options(), "-f", plan.demuxer, *trim, "-i", f"file:{source}"]


def build_command(ffmpeg: str, plan: EncodePlan, source: Path, target: Path, limits: EncodeLimits) -> list[str]:
    """The ffmpeg argv (see the module docstring)."""
    inputs = input_options(plan, source)
    tags = [arg for key, value in plan.tags for arg in ("-metadata", f"{key}={value}")]
    if plan.video is None:
        maps = ["-map", f"0:{plan.audio_index}", "-vn", "-sn", "-dn"]
        audio = audio_options(plan, plan.audio_filter)
    else:
        maps = ["-map", f"0:{plan.video.index}"]
        maps += [] if plan.audio_index is None else ["-map", f"0:{plan.audio_index}"]
        maps += ["-sn", "-dn", "-map_chapters", "-1"]  # chapters become a text track in MP4, listed as a stream
        in_sync = ",".join(f for f in (plan.audio_filter, "aresample=async=1:first_pts=0", "apad") if f)
        audio = plan.video.arguments(plan.output.muxer)
        audio += [] if plan.audio_index is None else [*audio_options(plan, in_sync), *SHORTEST]
    return [
        ffmpeg,
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        *inputs,
        *maps,
        "-map_metadata:g",
        "-1",
        "-map_metadata:s",
        "-1",
        *tags,
        *audio,
        *muxer_options(plan.output),
        "-t",
        _seconds(limits.max_duration_seconds),
        "-fs",
        str(limits.max_output_bytes),
        "-progress",
        "pipe:1",
        "-nostats",
        "-f",
        plan.output.muxer,
        "-y",
        f"file:{target}",
    ]


SHORTEST = ("-shortest",)
"""End the (endlessly padded) audio with the picture. In ffmpeg 5.1 ``-shortest`` lets up to
~120 ms more audio through (what was queued for interleaving), so the converter cuts that off
afterwards (``services.conversion.converter``, ``cut_command``); the muxer's own ``shortest`` flag
is no cure: with an encoder that looks ahead (x264 past ``veryfast``, x265, libvpx) it cuts the
audio a quarter second early."""


def cut_command(ffmpeg: str, plan: EncodePlan, source: Path, target: Path, seconds: float) -> list[str]:
    """Copy ``source`` (an output siphon wrote) to ``target`` with nothing past ``seconds``
    (stream copy, packet-exact: at most one audio frame past it)."""
    return [
        ffmpeg,
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        *confinement_options(),
        "-f",
        plan.output.muxer if plan.output.muxer != "webm" else "matroska",
        "-i",
        f"file:{source}",
        "-map",
        "0",
        "-c",
        "copy",
        "-t",
        _seconds(seconds),
        *muxer_options(plan.output),
        "-progress",
        "pipe:1",
        "-nostats",
        "-f",
        plan.output.muxer,
        "-y",
        f"file:{target}",
    ]


def audio_options(plan: EncodePlan, audio_filter: str | None) -> list[str]:
    """The audio encoder's arguments: codec, rate control, rate (Hz), channels, then ``audio_filter``."""
    audio = [
        "-c:a",
        plan.output.encoder,
        *plan.rate_control,
        "-ar",
        str(plan.sample_rate_hz),
        "-ac",
        str(plan.channels),
    ]
    return [*audio, "-af", audio_filter] if audio_filter else audio


def build_mp3_command(
    ffmpeg: str,
    probe: ProbeResult,
    stream: AudioStream,
    source: Path,
    target: Path,
    limits: EncodeLimits,
    vbr_quality: int,
) -> list[str]:
    """The plain MP3's argv: ``stream`` at LAME -V ``vbr_quality``, no trim, tags or cover."""
    plan = EncodePlan(
        demuxer=probe.demuxer,
        audio_index=stream.index,
        output=FORMATS["mp3"],
        rate_control=("-q:a", str(vbr_quality)),
        sample_rate_hz=mp3_sample_rate(stream.sample_rate_hz),
        channels=mp3_channels(stream.channels),
    )
    return build_command(ffmpeg, plan, source, target, limits)


SIGNAL_EXIT_BASE = 128
"""bwrap exits with 128 + the signal's number when the signal ended the process it ran."""

FFMPEG_SIGNALLED_EXIT = 255
"""ffmpeg's exit status after a signal it catches (SIGINT, SIGTERM, SIGXCPU...): siphon sends none
of those (it kills with SIGKILL), so in a jail it is RLIMIT_CPU's SIGXCPU."""


class FfmpegProcess:
    """One ffmpeg run (``command``, in ``jail`` when given) that can be aborted from another
    thread (:meth:`abort`)."""

    def __init__(self, command: list[str], stderr_path: Path, jail: Jail | None = None):
        self.command = command
        self.stderr_path = stderr_path
        self.jail = jail
        self._process: subprocess.Popen | None = None
        self._aborted = threading.Event()
        self._timed_out = threading.Event()

    def run(self, timeout_seconds: float, on_progress: Callable[[float], None]) -> float:
        """Run to the end; return the seconds of audio written (ffmpeg's ``out_time_us``).

        Raises:
            MediaError: ``timeout`` past ``timeout_seconds`` (or past the jail's CPU seconds),
                ``output_too_large`` past the jail's file size, or a decoding failure.
            ConversionInterrupted: aborted, or killed by a signal siphon did not send.
            SandboxFailed: bwrap could not build the jail.
        """
        if self._aborted.is_set():
            raise ConversionInterrupted("aborted before start")
        with open(self.stderr_path, "wb") as stderr:
            self._process = subprocess.Popen(
                self.jail.command(self.command) if self.jail else self.command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                start_new_session=True,
                # bwrap sees to dying with the worker itself; a preexec_fn would cost a fork of the worker
                preexec_fn=None if self.jail and self.jail.confines else functools.partial(die_with, os.getpid()),
            )
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
        signum = self._signal(returncode)
        if signum == signal.SIGXCPU or (self.jail is not None and returncode == FFMPEG_SIGNALLED_EXIT):
            raise MediaError("The conversion used more CPU time than its limit.", code=codes.TIMEOUT)
        if signum == signal.SIGXFSZ:
            raise MediaError("The output would exceed the file size limit.", code=codes.OUTPUT_TOO_LARGE)
        if signum is not None:
            raise ConversionInterrupted(f"ffmpeg killed by signal {signum}")
        if returncode != 0:
            tail = self.stderr_tail()
            failure = bwrap_failure(tail) if self.jail is not None else None
            if failure is not None:
                raise SandboxFailed(f"ffmpeg could not be confined: {failure}")
            if "No space left on device" in tail or _nearly_full(self.stderr_path.parent):
                raise OSError(errno.ENOSPC, "No space left on device (ffmpeg)")
            raise self._decode_error(tail)
        if any(message in self.stderr_tail() for message in TRUNCATION_MESSAGES):
            raise MediaError(
                "The file is cut short: its media ends before the length it declares.", code=codes.TRUNCATED
            )
        return out_seconds

    def _signal(self, returncode: int) -> int | None:
        """The signal that ended ffmpeg, if one did (under bwrap, told by its exit status)."""
        if returncode < 0:
            return -returncode
        sandboxed = self.jail is not None and self.jail.sandbox.enabled
        if sandboxed and SIGNAL_EXIT_BASE < returncode <= SIGNAL_EXIT_BASE + signal.SIGRTMAX:
            return returncode - SIGNAL_EXIT_BASE
        return None

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

"""From a local input file to a checked MP3: probe, choose the stream, encode, verify."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from services.conversion import media_codes as codes
from services.conversion.encode import EncodeLimits, EncodeResult, FfmpegProcess, build_mp3_command
from services.conversion.probe import ProbeResult, measure_audio_seconds, probe_media
from shared.config import Settings
from shared.errors import MediaError

MIN_AUDIO_SECONDS = 0.001
"""An output holding less audio than this is treated as holding none, seconds."""


class Converter:
    """Converts local files to MP3 with the configured tools and limits.

    :meth:`abort` stops the conversion in progress from another thread (graceful shutdown).
    """

    def __init__(self, s: Settings):
        self.ffmpeg = s.ffmpeg_path
        self.ffprobe = s.ffprobe_path
        self.vbr_quality = s.mp3_vbr_quality
        self.limits = EncodeLimits(s.max_duration_seconds, s.max_output_bytes, s.conversion_timeout_seconds)
        self._current: FfmpegProcess | None = None
        self._aborted = False

    def probe(self, source: Path) -> ProbeResult:
        """See :func:`~services.conversion.probe.probe_media`."""
        return probe_media(source, self.ffprobe)

    def to_mp3(self, probe: ProbeResult, source: Path, target: Path,
               on_progress: Callable[[float], None] = lambda seconds: None) -> EncodeResult:
        """Encode the default audio stream of ``source`` into ``target`` (MP3).

        Raises:
            MediaError: no usable audio, a decoding failure, a limit exceeded, or no audio
                frames in the output (``no_audio_frames``: never an empty MP3).
            ConversionInterrupted: :meth:`abort` was called or ffmpeg crashed.
            OSError: the work directory is full (``errno.ENOSPC``).
        """
        stream = probe.default_audio()
        command = build_mp3_command(self.ffmpeg, probe, stream, source, target, self.limits, self.vbr_quality)
        process = self._current = FfmpegProcess(command, target.with_suffix(".ffmpeg.log"))
        if self._aborted:
            process.abort()
        try:
            process.run(self.limits.timeout_seconds, on_progress)
        finally:
            self._current = None
        size = target.stat().st_size if target.exists() else 0
        # ffmpeg's progress clock follows the input's timestamps, not the samples written (FFmpeg 5.1
        # reports 1.6 s for the 0.31 s it decodes of an E-AC-3 file), so the MP3 itself is measured.
        seconds = measure_audio_seconds(target, self.ffprobe) if size else 0.0
        if seconds < MIN_AUDIO_SECONDS:
            raise MediaError("The audio stream holds no decodable audio.", code=codes.NO_AUDIO_FRAMES)
        if size >= self.limits.max_output_bytes:
            raise MediaError(f"The MP3 would exceed the {self.limits.max_output_bytes}-byte limit.",
                             code=codes.OUTPUT_TOO_LARGE)
        return EncodeResult(duration_seconds=seconds, size_bytes=size)

    def abort(self) -> None:
        """Kill the running ffmpeg (if any) and refuse to start another."""
        self._aborted = True
        if self._current is not None:
            self._current.abort()

"""From a local input file to a checked audio (or video) file: probe, plan, (measure loudness,) encode, verify.

A video job also reads its video stream (``services.conversion.video.probe_video``) and gets a
time limit and a CPU allowance that grow with the input's duration and the codec
(``video.timeout_seconds``).

The cover picture is made in a forked child while ffmpeg encodes (``services.conversion.picture``)
and embedded in the output before it is verified.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from mutagen import MutagenError

from services.conversion import loudnorm
from services.conversion import media_codes as codes
from services.conversion.encode import (
    EncodeLimits,
    EncodePlan,
    EncodeResult,
    FfmpegProcess,
    build_command,
    cut_command,
)
from services.conversion.forked import Outcome
from services.conversion.picture import PictureFromProbe, PictureMaker, embed_picture
from services.conversion.plan import Cover, VideoInput, choose_cover, plan_encode
from services.conversion.probe import (
    ProbeResult,
    measure_audio_seconds,
    measure_video_seconds,
    probe_media,
    probe_media_then,
    track_ends,
)
from services.conversion.sandbox import Jail, Sandbox
from services.conversion.video import probe_video, timeout_seconds
from shared.config import Settings
from shared.errors import MediaError
from shared.options import ConversionOptions
from shared.video_codecs import encoder_for, ffmpeg_filters

logger = logging.getLogger(__name__)

AUDIO_OVERRUN_SECONDS = 0.04
"""Audio past a video output's last picture that is cut off afterwards, seconds (issue #17 wants
the tracks to end within 0.1 s)."""

MIN_AUDIO_SECONDS = 0.001
"""An output holding less audio than this is treated as holding none, seconds."""

Progress = Callable[[float], None]
"""Receives the fraction of the conversion done, 0.0 to 1.0."""


@dataclass(frozen=True)
class Probed:
    """What :meth:`Converter.probe_for` learned of an input: the probe ``result``, and the cover
    picture its child already made (``early_picture``: the forked call's outcome), if it made one.
    The task passes both on to :meth:`Converter.convert`; nothing is kept on the converter."""

    result: ProbeResult
    early_picture: Outcome | None = None


class Converter:
    """Converts local files with the configured tools and limits.

    :meth:`abort` stops the conversion in progress from another thread and refuses any further one
    (graceful shutdown); a ``cancelled`` event passed to :meth:`convert`, set from another thread
    followed by :meth:`abort_current`, stops just that conversion (a client's cancel).

    Every process that parses the input (the probe's child, ffprobe, ffmpeg, the picture's child)
    runs in ``sandbox`` (by default the one the settings configure), confined to the input and
    the output's directory (the job's temp dir).
    """

    def __init__(self, s: Settings, sandbox: Sandbox | None = None):
        self.ffmpeg = s.ffmpeg_path
        self.ffprobe = s.ffprobe_path
        self.vbr_quality = s.mp3_vbr_quality
        self.sandbox = sandbox or Sandbox.from_settings(s)
        self.limits = EncodeLimits(s.max_duration_seconds, s.max_output_bytes, s.conversion_timeout_seconds)
        self.max_video_pixels = s.max_video_pixels
        self._current: FfmpegProcess | None = None
        self._aborted = False

    def probe(self, source: Path) -> ProbeResult:
        """See :func:`~services.conversion.probe.probe_media` (in the sandbox, which may read ``source``)."""
        return probe_media(source, self.ffprobe, self.sandbox.jail(None, source))

    def probe_for(self, source: Path, options: ConversionOptions, picture_to: Path) -> Probed:
        """Probe ``source``; the probe's child also makes the cover picture ``options`` call for,
        at ``picture_to`` (one fork, one opening of the file, confined to ``picture_to``'s folder).
        Pass the result to :meth:`convert`, which then embeds that picture instead of starting a
        child of its own."""
        jail = self.sandbox.jail(picture_to.parent, source)
        result, made = probe_media_then(source, PictureFromProbe(options, picture_to), self.ffprobe, jail)
        return Probed(result, made)

    def to_mp3(
        self, probe: ProbeResult, source: Path, target: Path, on_progress: Progress = lambda fraction: None
    ) -> EncodeResult:
        """The plain MP3: :meth:`convert` with the default options."""
        return self.convert(probe, source, target, ConversionOptions(), on_progress)

    def convert(
        self,
        probe: ProbeResult,
        source: Path,
        target: Path,
        options: ConversionOptions,
        on_progress: Progress = lambda fraction: None,
        cancelled: threading.Event | None = None,
        early_picture: Outcome | None = None,
    ) -> EncodeResult:
        """Encode ``source`` into ``target`` as ``options`` ask (see ``services.conversion.plan``);
        ``early_picture`` is a :class:`Probed`'s, made by the probe's child.

        ``on_progress`` gets the fraction done while ffmpeg runs (not at all when the input's
        duration is unknown); with ``normalize``, the measuring pass is the first half.

        Raises:
            MediaError: no usable audio (or not the asked-for track), a decoding failure, a limit
                exceeded, or no audio frames in the output (``no_audio_frames``: never an empty file).
            ConversionInterrupted: :meth:`abort` was called, ``cancelled`` was set, or ffmpeg crashed.
            OSError: the work directory is full (``errno.ENOSPC``).
            SandboxFailed: a process could not be confined.
        """
        jail = self.sandbox.jail(target.parent, source)
        video = self._video_input(probe, source, options, jail) if options.output_format.is_video else None
        plan = plan_encode(probe, options, self.vbr_quality, self.limits.max_duration_seconds, video)
        timeout = self.limits.timeout_seconds
        if plan.video is not None:
            timeout = timeout_seconds(
                timeout, plan.expected_seconds, plan.video.codec, plan.video.output_pixels, options.preset
            )
            jail = self.sandbox.with_cpu_seconds(timeout * (os.cpu_count() or 1)).jail(target.parent, source)
        passes = 1 if options.normalize is None or plan.audio_index is None else 2
        started = time.monotonic()
        cover = choose_cover(probe, options, options.output_format)
        cover_path = target.with_suffix(".cover")
        picture = None if cover is None else self._picture(cover, source, cover_path, early_picture, jail)
        try:
            if passes == 2:
                plan = self._with_loudnorm(
                    plan,
                    options.normalize,
                    source,
                    target,
                    _share(on_progress, plan.expected_seconds, 0, passes),
                    cancelled,
                    jail,
                )
            share = _share(on_progress, plan.expected_seconds, passes - 1, passes)
            self._run(
                build_command(self.ffmpeg, plan, source, target, self.limits),
                target.with_suffix(".ffmpeg.log"),
                share,
                cancelled,
                jail,
                timeout,
            )
            if plan.video is not None and plan.audio_index is not None:
                self._cut_to_picture(plan, target, cancelled, jail)
            if picture is not None:
                self._embed(picture, plan, target)
        finally:
            if picture is not None:
                picture.cancel()
                picture.target.unlink(missing_ok=True)
        size = target.stat().st_size if target.exists() else 0
        # ffmpeg's progress clock follows the input's timestamps, not the samples written (FFmpeg 5.1
        # reports 1.6 s for the 0.31 s it decodes of an E-AC-3 file), so the output itself is measured.
        if plan.video is not None:
            seconds = measure_video_seconds(target, self.ffprobe, jail) if size else 0.0
            if seconds < MIN_AUDIO_SECONDS:
                raise MediaError("The video stream holds no decodable pictures.", code=codes.DECODE_FAILED)
        else:
            seconds = measure_audio_seconds(target, self.ffprobe, jail) if size else 0.0
        if seconds < MIN_AUDIO_SECONDS:
            raise MediaError("The audio stream holds no decodable audio.", code=codes.NO_AUDIO_FRAMES)
        if size >= self.limits.max_output_bytes:
            raise MediaError(
                f"The output would exceed the {self.limits.max_output_bytes}-byte limit.", code=codes.OUTPUT_TOO_LARGE
            )
        elapsed = time.monotonic() - started
        return EncodeResult(
            duration_seconds=seconds, size_bytes=size, speed=round(seconds / elapsed, 2) if elapsed > 0 else None
        )

    def _cut_to_picture(self, plan: EncodePlan, target: Path, cancelled: threading.Event | None, jail: Jail) -> None:
        """Cut the audio ``-shortest`` let past the last picture (see ``encode.SHORTEST``), when it
        is more than :data:`AUDIO_OVERRUN_SECONDS`: a stream copy of the output, so its cost is
        reading and writing the file once."""
        ends = track_ends(target, self.ffprobe, jail)
        if "video" not in ends or ends.get("audio", 0.0) - ends["video"] <= AUDIO_OVERRUN_SECONDS:
            return
        cut = target.with_name(f"cut-{target.name}")
        command = cut_command(self.ffmpeg, plan, target, cut, ends["video"])
        self._run(command, target.with_suffix(".cut.log"), lambda seconds: None, cancelled, jail)
        cut.replace(target)

    def _video_input(self, probe: ProbeResult, source: Path, options: ConversionOptions, jail: Jail) -> VideoInput:
        """What the plan needs of the video stream and of this worker's ffmpeg (the video stream
        read with ffprobe in ``jail``; no facts when the input has no moving picture)."""
        stream = probe.moving_picture()
        return VideoInput(
            facts=probe_video(source, stream.index, self.ffprobe, jail) if stream is not None else None,
            encoder=encoder_for(options.codec, self.ffmpeg),
            can_tonemap="zscale" in ffmpeg_filters(self.ffmpeg),
            max_pixels=self.max_video_pixels,
        )

    @staticmethod
    def _picture(cover: Cover, source: Path, path: Path, early: Outcome | None, jail: Jail) -> PictureMaker:
        """The maker of ``cover``: the one the probe's child made, else a confined child of its own."""
        made = PictureMaker.from_probe(early, cover, path) if early is not None else None
        return made if made is not None else PictureMaker.start(source, cover, path, confine=jail.enter)

    @staticmethod
    def _embed(picture: PictureMaker, plan: EncodePlan, target: Path) -> None:
        """Embed the finished cover picture, if the child made one; a picture that cannot be
        embedded is logged and left out (the audio is what was asked for)."""
        made = picture.result()
        if made is None:
            return
        try:
            embed_picture(target, plan.output.muxer, made)
        except (MutagenError, OSError, ValueError):
            logger.warning("could not embed the cover picture; the output goes without one", exc_info=True)

    def _with_loudnorm(
        self,
        plan: EncodePlan,
        target_lufs: float,
        source: Path,
        target: Path,
        on_progress: Callable[[float], None],
        cancelled: threading.Event | None,
        jail: Jail,
    ) -> EncodePlan:
        """The plan with pass 2's loudnorm filter, after running pass 1; unchanged for silence."""
        log = target.with_suffix(".loudnorm.log")
        command = loudnorm.measure_command(self.ffmpeg, plan, source, self.limits, target_lufs)
        measured = loudnorm.parse_measurement(self._run(command, log, on_progress, cancelled, jail).stderr_tail())
        if measured is None:
            return plan
        return replace(plan, audio_filter=loudnorm.normalize_filter(target_lufs, measured))

    def _run(
        self,
        command: list[str],
        log: Path,
        on_progress: Callable[[float], None],
        cancelled: threading.Event | None,
        jail: Jail,
        timeout_seconds: float | None = None,
    ) -> FfmpegProcess:
        process = self._current = FfmpegProcess(command, log, jail)
        # Checked after _current is set: a cancel landing before this line is seen here, one after it
        # finds the process in _current (abort_current), so none is lost.
        if self._aborted or (cancelled is not None and cancelled.is_set()):
            process.abort()
        try:
            process.run(timeout_seconds or self.limits.timeout_seconds, on_progress)
        finally:
            self._current = None
        return process

    def abort_current(self) -> None:
        """Kill the running ffmpeg, if any; later conversions run as usual (a cancel)."""
        current = self._current
        if current is not None:
            current.abort()

    def abort(self) -> None:
        """Kill the running ffmpeg (if any) and refuse to start another."""
        self._aborted = True
        if self._current is not None:
            self._current.abort()


def _share(on_progress: Progress, expected_seconds: float | None, index: int, passes: int) -> Callable[[float], None]:
    """Pass ``index`` of ``passes``' share of the progress: its seconds of output as a fraction of the whole."""
    if expected_seconds is None:
        return lambda seconds: None
    return lambda seconds: on_progress((index + min(seconds / expected_seconds, 1.0)) / passes)

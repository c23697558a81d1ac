"""Choosing what one conversion does from the probe and the client's options (an :class:`EncodePlan`).

* the audio stream: ``audio_track`` (0-based among audio streams), else the default one;
* rate control, sample rate and channels for the output format (``encode.rate_control``,
  ``encode.output_sample_rate``; at most two channels unless the client asks for one);
* the trim (``start``/``end``, refused when ``start`` is past the end of the media);
* the tags: the source's :data:`CARRIED_TAGS`, overridden by ``title``/``artist``/``album``;
* the cover picture (:func:`choose_cover`: a :class:`Cover`, made and embedded beside the ffmpeg
  command by ``services.conversion.picture``, so not part of the plan);
* how many seconds of audio the output should hold, for progress;
* for a video format, the video stream's part (``services.conversion.video.plan_video``); the
  audio track is then optional: an input without one gives an output without one.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from services.conversion import media_codes as codes
from services.conversion.encode import (
    EncodePlan,
    mp3_channels,
    output_sample_rate,
    rate_control,
)
from services.conversion.probe import AudioStream, ProbeResult
from services.conversion.video import VideoFacts, VideoPlan, plan_video
from shared.errors import MediaError
from shared.options import ConversionOptions, OutputFormat

CARRIED_TAGS = ("title", "artist", "album", "date", "genre", "comment", "track")
"""The source tags an output keeps, in FFmpeg's generic names (each muxer writes its own frames)."""

MAX_TAG_CHARS = 1024
"""Longest tag value written; a longer one from the source is cut, characters."""

COVER_AT_RATIO = 0.1
"""Where the cover frame is taken by default, as a fraction of the duration."""

COVER_END_MARGIN_SECONDS = 0.5
"""A requested cover time is held this far before the end, so the seek still finds a frame, seconds."""


@dataclass(frozen=True)
class VideoInput:
    """What a video job's plan needs beside the probe: the video stream's ``facts`` (None when the
    input has no moving picture), the worker's ``encoder`` for the asked codec (None when its
    ffmpeg has none), whether its ffmpeg can tone-map (zscale), and MAX_VIDEO_PIXELS."""

    facts: VideoFacts | None
    encoder: str | None
    can_tonemap: bool
    max_pixels: int


@dataclass(frozen=True)
class Cover:
    """A picture to embed from input stream ``index``: one frame near ``at_seconds`` seconds encoded
    as JPEG (exactly the frame at that time when ``exact``, else the keyframe at or before it), or,
    when ``at_seconds`` is None, the source's own cover picture (``services.conversion.picture``)."""

    index: int
    at_seconds: float | None = None
    exact: bool = False


def plan_encode(
    probe: ProbeResult,
    options: ConversionOptions,
    default_quality: int,
    max_duration_seconds: float,
    video: VideoInput | None = None,
) -> EncodePlan:
    """The plan for converting ``probe``'s file with ``options`` (``video`` for a video format).

    Raises:
        MediaError: ``no_audio_stream``, ``unsupported_codec``, ``audio_track_not_found``,
            ``trim_out_of_range``; for a video format ``no_video_stream``, ``too_large`` and
            ``video_codec_unavailable`` instead of ``no_audio_stream``.
    """
    output = options.output_format
    if output.is_video and not probe.audio_streams and options.audio_track is None:
        stream = None  # a silent video stays a video, without an audio track
    else:
        stream = probe.audio_track(options.audio_track)
    video_plan = _plan_video(options, video) if output.is_video else None
    channels = options.channels or mp3_channels(stream.channels if stream else None)
    _check_trim(probe, options)
    return EncodePlan(
        demuxer=probe.demuxer,
        audio_index=stream.index if stream else None,
        output=output,
        rate_control=tuple(rate_control(output, options, default_quality, channels)),
        sample_rate_hz=options.sample_rate or output_sample_rate(output, stream.sample_rate_hz if stream else None),
        channels=channels,
        start_seconds=options.start,
        end_seconds=options.end,
        tags=carried_tags(probe, stream, options),
        expected_seconds=expected_seconds(probe.duration_seconds, options, max_duration_seconds),
        video=video_plan,
    )


def _plan_video(options: ConversionOptions, video: VideoInput | None) -> VideoPlan:
    if video is None or video.facts is None:
        raise MediaError(
            f"The file has no video stream; {options.format} needs one (ask for an audio format).",
            code=codes.NO_VIDEO_STREAM,
        )
    if video.encoder is None:
        raise MediaError(f"This worker's FFmpeg has no {options.codec} encoder.", code=codes.VIDEO_CODEC_UNAVAILABLE)
    return plan_video(video.facts, options, video.encoder, video.can_tonemap, video.max_pixels)


def _check_trim(probe: ProbeResult, options: ConversionOptions) -> None:
    duration = probe.duration_seconds
    if options.start is not None and duration is not None and options.start >= duration:
        raise MediaError(
            f"The start ({options.start:g} s) is at or after the end of the media ({duration:g} s).",
            code=codes.TRIM_OUT_OF_RANGE,
        )


def expected_seconds(duration: float | None, options: ConversionOptions, max_duration_seconds: float) -> float | None:
    """Seconds of audio the output should hold: the probed duration, trimmed, at most
    ``max_duration_seconds``; None when neither the input nor ``end`` says."""
    stop = duration if options.end is None else min(options.end, duration or options.end)
    if stop is None:
        return None
    seconds = min(stop - (options.start or 0), max_duration_seconds)
    return seconds if seconds > 0 else None


def carried_tags(
    probe: ProbeResult, stream: AudioStream | None, options: ConversionOptions
) -> tuple[tuple[str, str], ...]:
    """The tags to write: the container's (else the audio stream's, as in Ogg) :data:`CARRIED_TAGS`,
    with the client's ``title``, ``artist`` and ``album`` in place of the source's."""
    chosen: dict[str, str] = {}
    for tags in (
        stream.tags if stream else {},
        probe.tags,
        {key: getattr(options, key) or "" for key in ("title", "artist", "album")},
    ):
        chosen.update({key: clean for key in CARRIED_TAGS if (clean := clean_tag(tags.get(key, "")))})
    return tuple(chosen.items())


def clean_tag(value: str) -> str:
    """A tag value safe to pass as an argument: no control or format characters but line breaks
    and tabs (a NUL cannot be passed at all), at most :data:`MAX_TAG_CHARS`, trimmed."""
    kept = "".join(ch for ch in value if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cf"))
    return kept.strip()[:MAX_TAG_CHARS]


def choose_cover(probe: ProbeResult, options: ConversionOptions, output: OutputFormat) -> Cover | None:
    """The picture to embed, if the format carries one (mp3, m4a, flac; not ogg, opus or wav).

    ``cover=source`` keeps the source's cover picture; ``cover=frame`` takes one video frame at
    ``cover_at`` seconds or at :data:`COVER_AT_RATIO` of the duration; ``cover=none`` embeds
    nothing. Without ``cover``: the source's cover if it has one, else nothing (a frame only on
    request, or when ``cover_at`` names its time). A mode the source cannot serve (no picture, no
    video) embeds nothing.
    """
    if not output.cover_art:
        return None
    picture, video = probe.attached_picture(), probe.moving_picture()
    mode = options.cover or default_cover_mode(options, has_picture=picture is not None)
    if mode == "source" and picture is not None:
        return Cover(index=picture.index)
    if mode == "frame" and video is not None:
        at = cover_time(probe.duration_seconds, options.cover_at)
        return Cover(index=video.index, at_seconds=at, exact=options.cover_at is not None)
    return None


def default_cover_mode(options: ConversionOptions, has_picture: bool) -> str:
    """The cover mode when the client named none: ``frame`` if it named a ``cover_at``, else
    ``source`` if the source has a picture, else ``none``. A frame is never added unasked: it made
    a short clip's MP3 mostly picture, and players and ffprobe then list a video stream in it."""
    if options.cover_at is not None:
        return "frame"
    return "source" if has_picture else "none"


def cover_time(duration: float | None, requested: float | None) -> float:
    """Seconds into the source where the cover frame is taken (kept within the media)."""
    if duration is None:
        return requested or 0.0
    at = duration * COVER_AT_RATIO if requested is None else requested
    return max(0.0, min(at, duration - COVER_END_MARGIN_SECONDS))

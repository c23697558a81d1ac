"""Conversion options: what a client may ask of a conversion, validated in one place.

The same names travel as multipart form fields on ``POST /convert``, inside the conversion task
and on the job record. Every field is optional; the defaults give the plain MP3 (LAME VBR -V2,
the source's sample rate and channels where MP3 allows them, the default audio track).

The video formats (``mp4``, ``webm``, ``mkv``) take the video options too (``video_codec``,
``height``, ``max_fps``, ``crf``, ``preset``, ``video_bitrate``); which codecs a deployment offers
is what its ffmpeg can encode (``shared.video_codecs``), checked by :func:`options_from_form`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.errors import RequestRejected

MP3_BITRATES_KBPS = (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
"""Constant bitrates of MPEG-1 Layer III (ISO/IEC 11172-3, Table 3-B.2), kbps."""

MP3_SAMPLE_RATES_HZ = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
"""Sample rates MP3 can carry: MPEG-1 (ISO/IEC 11172-3), MPEG-2 (13818-3) and MPEG-2.5 layer III, Hz."""


@dataclass(frozen=True)
class OutputFormat:
    """An output format: file extension, media type, FFmpeg encoder and muxer, whether lossy."""

    name: str
    extension: str
    media_type: str
    encoder: str
    muxer: str
    lossy: bool = True
    sample_rates_hz: tuple[int, ...] | None = None
    cover_art: bool = False
    """Whether the muxer can carry an embedded picture (ID3 APIC, MP4 ``covr``, FLAC PICTURE)."""
    video_codecs: tuple[str, ...] = ()
    """The video codecs the container takes, the default first; empty for an audio format."""

    @property
    def is_video(self) -> bool:
        """Whether the output holds moving pictures (mp4, webm, mkv)."""
        return bool(self.video_codecs)

    @property
    def allowed_sample_rates_hz(self) -> tuple[int, ...]:
        """The rates a client may ask for in ``sample_rate``."""
        return self.sample_rates_hz or COMMON_SAMPLE_RATES_HZ


COMMON_SAMPLE_RATES_HZ = (8000, 11025, 16000, 22050, 32000, 44100, 48000, 88200, 96000)
"""Rates offered for the formats that take any rate (Vorbis, FLAC, WAV), Hz."""

AAC_SAMPLE_RATES_HZ = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)
"""Sampling frequencies an AAC stream can signal by index (ISO/IEC 14496-3 §1.6.3.4), Hz."""

FORMATS = {
    f.name: f
    for f in (
        OutputFormat(
            "mp3", "mp3", "audio/mpeg", "libmp3lame", "mp3", sample_rates_hz=MP3_SAMPLE_RATES_HZ, cover_art=True
        ),
        OutputFormat("m4a", "m4a", "audio/mp4", "aac", "ipod", sample_rates_hz=AAC_SAMPLE_RATES_HZ, cover_art=True),
        # Opus codes at 48 kHz internally; libopus accepts only these input rates (RFC 6716 §2).
        # FFmpeg's ogg muxer has no picture support, so ogg and opus carry no cover.
        OutputFormat("opus", "opus", "audio/ogg", "libopus", "ogg", sample_rates_hz=(8000, 12000, 16000, 24000, 48000)),
        OutputFormat("ogg", "ogg", "audio/ogg", "libvorbis", "ogg"),
        OutputFormat("flac", "flac", "audio/flac", "flac", "flac", lossy=False, cover_art=True),
        OutputFormat("wav", "wav", "audio/wav", "pcm_s16le", "wav", lossy=False),
        # Video containers; ``encoder`` is the audio track's. MP4 (ISO/IEC 14496-14) as browsers play
        # it: H.264 or HEVC with AAC; WebM (webmproject.org/docs/container): VP9 or AV1 with Opus;
        # Matroska takes any of the four, with AAC.
        OutputFormat(
            "mp4", "mp4", "video/mp4", "aac", "mp4", sample_rates_hz=AAC_SAMPLE_RATES_HZ, video_codecs=("h264", "hevc")
        ),
        OutputFormat(
            "webm",
            "webm",
            "video/webm",
            "libopus",
            "webm",
            sample_rates_hz=(8000, 12000, 16000, 24000, 48000),
            video_codecs=("vp9", "av1"),
        ),
        OutputFormat(
            "mkv",
            "mkv",
            "video/x-matroska",
            "aac",
            "matroska",
            sample_rates_hz=AAC_SAMPLE_RATES_HZ,
            video_codecs=("h264", "hevc", "vp9", "av1"),
        ),
    )
}
"""Every output format, by the name clients send in ``format``."""

FORMATS_BY_EXTENSION = {f.extension: f for f in FORMATS.values()}
"""Every output format, by its file extension (the download URL's suffix)."""

VIDEO_CODECS = ("h264", "hevc", "vp9", "av1")
"""Every video codec siphon knows; a deployment offers those its ffmpeg can encode (``shared.video_codecs``)."""

CRF_RANGES = {"h264": (0, 51), "hevc": (0, 51), "vp9": (0, 63), "av1": (0, 63)}
"""``crf`` per codec, inclusive: libx264/libx265 0-51, libvpx-vp9 and the AV1 encoders 0-63
(ffmpeg-codecs(1)); lower is better and larger."""

PRESETS = ("fastest", "fast", "medium", "slow", "smallest")
"""siphon's one speed/size scale, mapped to each encoder's own presets (``services.conversion.video``)."""

VIDEO_OPTION_FIELDS = ("video_codec", "height", "max_fps", "crf", "preset", "video_bitrate")
"""The options that only a video format takes."""

MAX_HEIGHT = 4320
"""Largest ``height`` a client may ask for (8K UHD), pixels."""

VIDEO_BITRATE_RANGE_KBPS = (50, 100_000)
"""``video_bitrate`` bounds, kbps."""

_TIMESTAMP = re.compile(r"^(?:(\d+):)?(\d{1,2}):(\d{1,2}(?:\.\d{1,3})?)$")


def parse_seconds(value: str | float) -> float:
    """Seconds from ``12.5`` or ``HH:MM:SS.mmm`` / ``MM:SS`` (FFmpeg's time duration syntax, ffmpeg-utils(1)).

    Raises:
        ValueError: neither form, or negative.
    """
    if isinstance(value, int | float):
        seconds = float(value)
    elif match := _TIMESTAMP.fullmatch(value.strip()):
        hours, minutes, secs = match.groups()
        if int(minutes) >= 60 or float(secs) >= 60:
            raise ValueError("minutes and seconds must be below 60")
        seconds = int(hours or 0) * 3600 + int(minutes) * 60 + float(secs)
    else:
        seconds = float(value)
    if not seconds >= 0 or seconds == float("inf"):
        raise ValueError("must be a non-negative number of seconds")
    return seconds


class InvalidOption(RequestRejected):
    """An option is out of range (400 ``invalid_option``); the body names the field and what is allowed."""

    code = "invalid_option"

    def __init__(self, field: str, allowed: str, message: str | None = None):
        super().__init__(message or f"Invalid value for '{field}': allowed {allowed}.")
        self.field = field
        self.allowed = allowed

    def to_dict(self) -> dict[str, str]:
        return {**super().to_dict(), "field": self.field, "allowed": self.allowed}


class ConversionOptions(BaseModel):
    """Validated options; ``None`` means "the default" for every field."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["mp3", "m4a", "opus", "ogg", "flac", "wav", "mp4", "webm", "mkv"] = "mp3"
    bitrate: int | None = Field(None, description="Constant bitrate, kbps (one of MP3_BITRATES_KBPS).")
    quality: int | None = Field(None, ge=0, le=9, description="VBR quality, LAME -V scale: 0 best, 9 smallest.")
    sample_rate: int | None = Field(None, description="Output sample rate, Hz.")
    channels: int | None = Field(None, ge=1, le=2, description="Output channels: 1 (mono) or 2 (stereo).")
    start: float | None = Field(None, ge=0, description="Trim start, seconds.")
    end: float | None = Field(None, gt=0, description="Trim end, seconds.")
    audio_track: int | None = Field(None, ge=0, description="0-based index among the audio streams.")
    normalize: float | None = Field(None, ge=-70, le=-5, description="EBU R128 integrated loudness target, LUFS.")
    title: str | None = Field(None, max_length=1024)
    artist: str | None = Field(None, max_length=1024)
    album: str | None = Field(None, max_length=1024)
    cover: Literal["frame", "source", "none"] | None = None
    cover_at: float | None = Field(None, ge=0, description="Cover frame time, seconds.")
    video_codec: Literal["h264", "hevc", "vp9", "av1"] | None = Field(
        None, description="Video codec; the format's first when unset (mp4 h264, webm vp9, mkv h264)."
    )
    height: int | None = Field(
        None, ge=16, le=MAX_HEIGHT, description="Largest output height, pixels; never upscaled, made even."
    )
    max_fps: float | None = Field(None, gt=0, le=240, description="Highest frame rate kept, frames per second.")
    crf: int | None = Field(None, ge=0, le=63, description="Constant rate factor; the range is per codec.")
    preset: Literal["fastest", "fast", "medium", "slow", "smallest"] | None = Field(
        None, description="Speed against size, mapped to the encoder's presets; medium when unset."
    )
    video_bitrate: int | None = Field(
        None,
        ge=VIDEO_BITRATE_RANGE_KBPS[0],
        le=VIDEO_BITRATE_RANGE_KBPS[1],
        description="Average video bitrate, kbps (instead of crf).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> ConversionOptions:
        fmt = FORMATS[self.format]
        if self.bitrate is not None and self.quality is not None:
            raise ValueError("bitrate: give either bitrate (CBR) or quality (VBR), not both")
        if self.bitrate is not None and self.bitrate not in MP3_BITRATES_KBPS:
            raise ValueError("bitrate: not an MP3 bitrate")
        if not fmt.lossy and (self.bitrate is not None or self.quality is not None):
            raise ValueError(
                f"{'bitrate' if self.bitrate is not None else 'quality'}: {self.format} is lossless; "
                "bitrate and quality do not apply"
            )
        allowed_rates = fmt.allowed_sample_rates_hz
        if self.sample_rate is not None and self.sample_rate not in allowed_rates:
            raise ValueError(f"sample_rate: {self.format} allows {', '.join(map(str, allowed_rates))} Hz")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValueError("end: must be after start")
        self._check_video(fmt)
        return self

    def _check_video(self, fmt: OutputFormat) -> None:
        if not fmt.is_video:
            given = next((name for name in VIDEO_OPTION_FIELDS if getattr(self, name) is not None), None)
            if given:
                raise ValueError(f"{given}: only the video formats (mp4, webm, mkv) take it")
            return
        if self.cover is not None or self.cover_at is not None:
            raise ValueError(f"{'cover' if self.cover is not None else 'cover_at'}: a video format carries no cover")
        if self.video_codec is not None and self.video_codec not in fmt.video_codecs:
            raise ValueError(f"video_codec: {fmt.name} takes {', '.join(fmt.video_codecs)}")
        low, high = CRF_RANGES[self.codec]
        if self.crf is not None and not low <= self.crf <= high:
            raise ValueError(f"crf: {self.codec} takes {low} to {high}")
        if self.crf is not None and self.video_bitrate is not None:
            raise ValueError("crf: give either crf or video_bitrate, not both")

    @property
    def output_format(self) -> OutputFormat:
        """The :class:`OutputFormat` named by ``format``."""
        return FORMATS[self.format]

    @property
    def codec(self) -> str | None:
        """The video codec the output gets: ``video_codec``, else the format's default; None for audio."""
        codecs = FORMATS[self.format].video_codecs
        return (self.video_codec or codecs[0]) if codecs else None

    def recorded(self) -> dict:
        """The options the client set (for the job record and /status)."""
        return self.model_dump(exclude_none=True, exclude_defaults=True)


OPTION_FIELDS = tuple(ConversionOptions.model_fields)
_SECONDS_FIELDS = ("start", "end", "cover_at")


def options_from_form(form: Mapping[str, str], video_codecs: tuple[str, ...]) -> ConversionOptions:
    """Options from multipart form fields (strings); unknown fields are ignored. ``video_codecs``
    are the codecs this deployment can encode (``shared.video_codecs.offered_video_codecs``): a
    video job whose codec is not among them is refused.

    Raises:
        InvalidOption: a value is malformed or out of range, or the codec is not offered; names the
            field and what is allowed.
    """
    options = _validated(form)
    if options.codec is not None and options.codec not in video_codecs:
        offered = [c for c in options.output_format.video_codecs if c in video_codecs]
        raise InvalidOption(
            "video_codec",
            ", ".join(offered) or f"none: this server has no encoder for {options.format}",
            f"Invalid 'video_codec': this server cannot encode {options.codec}.",
        )
    return options


def _validated(form: Mapping[str, str]) -> ConversionOptions:
    raw = {name: form[name] for name in OPTION_FIELDS if form.get(name) not in (None, "")}
    for name in _SECONDS_FIELDS:
        if name in raw:
            try:
                raw[name] = parse_seconds(raw[name])
            except ValueError:
                raise InvalidOption(name, "seconds (e.g. 12.5) or HH:MM:SS.mmm") from None
    try:
        return ConversionOptions.model_validate(raw)
    except ValueError as exc:
        error = exc.errors()[0]
        message = error["msg"].removeprefix("Value error, ")
        if error["loc"]:
            field = str(error["loc"][0])
        else:  # a cross-field rule: its message starts with "<field>: "
            field, _, message = message.partition(": ")
        raise InvalidOption(field, _allowed(field, raw.get("format")), f"Invalid '{field}': {message}.") from None


def _allowed(field: str, format_name: object = None) -> str:
    fmt = FORMATS.get(format_name) if isinstance(format_name, str) else None
    fmt = fmt or FORMATS["mp3"]
    return {
        "format": ", ".join(FORMATS),
        "bitrate": f"one of {', '.join(map(str, MP3_BITRATES_KBPS))} (kbps); not with quality, nor for flac or wav",
        "quality": "0 (best) to 9 (smallest); not with bitrate, nor for flac or wav",
        "sample_rate": f"one of {', '.join(map(str, fmt.allowed_sample_rates_hz))} (Hz) for {fmt.name}",
        "channels": "1 or 2",
        "title": "text of at most 1024 characters",
        "artist": "text of at most 1024 characters",
        "album": "text of at most 1024 characters",
        "start": "seconds ≥ 0 or HH:MM:SS.mmm",
        "end": "seconds > start or HH:MM:SS.mmm",
        "audio_track": "an integer ≥ 0 (index among audio streams)",
        "normalize": "a loudness target from -70 to -5 (LUFS)",
        "cover": "frame, source, none; not for video formats",
        "cover_at": "seconds ≥ 0; not for video formats",
        "video_codec": f"{', '.join(fmt.video_codecs or VIDEO_CODECS)} (the ones this server can encode)",
        "height": f"an integer from 16 to {MAX_HEIGHT} (pixels); video formats only",
        "max_fps": "a number above 0, at most 240 (frames per second); video formats only",
        "crf": ", ".join(f"{codec} {low}-{high}" for codec, (low, high) in CRF_RANGES.items())
        + "; not with video_bitrate",
        "preset": ", ".join(PRESETS),
        "video_bitrate": f"an integer from {VIDEO_BITRATE_RANGE_KBPS[0]} to {VIDEO_BITRATE_RANGE_KBPS[1]} (kbps)",
    }.get(field, "see the API documentation")

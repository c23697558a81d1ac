"""Conversion options: what a client may ask of a conversion, validated in one place.

The same names travel as multipart form fields on ``POST /convert``, inside the conversion task
and on the job record. Every field is optional; the defaults give the plain MP3 (LAME VBR -V2,
the source's sample rate and channels where MP3 allows them, the default audio track).
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
    )
}
"""Every output format, by the name clients send in ``format``."""

FORMATS_BY_EXTENSION = {f.extension: f for f in FORMATS.values()}
"""Every output format, by its file extension (the download URL's suffix)."""

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

    format: Literal["mp3", "m4a", "opus", "ogg", "flac", "wav"] = "mp3"
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
        return self

    @property
    def output_format(self) -> OutputFormat:
        return FORMATS[self.format]

    def recorded(self) -> dict:
        """The options the client set (for the job record and /status)."""
        return self.model_dump(exclude_none=True, exclude_defaults=True)


OPTION_FIELDS = tuple(ConversionOptions.model_fields)
_SECONDS_FIELDS = ("start", "end", "cover_at")


def options_from_form(form: Mapping[str, str]) -> ConversionOptions:
    """Options from multipart form fields (strings); unknown fields are ignored.

    Raises:
        InvalidOption: a value is malformed or out of range; names the field and what is allowed.
    """
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
        "cover": "frame, source, none",
        "cover_at": "seconds ≥ 0",
    }.get(field, "see the API documentation")

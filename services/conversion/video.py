"""The video half of a video job: what the input's picture is, and the filters, encoder arguments
and time limit that make it a picture every browser plays.

The filter chain (ffmpeg-filters(1)), in order, each only where it is needed::

    setpts='if(eq(N,0),0,PTS)'                the first picture from 0, where the audio starts
    [bwdif=mode=send_frame:deint=all]         interlaced input (the probe's field_order is tt, bb, tb or bt)
    scale=w='max(2,trunc(oh*dar/2)*2)':h='trunc(min(<height>,ih)/2)*2'
                                              square pixels at the display aspect ratio, never
                                              upscaled, even width and height (yuv420p needs both)
    setsar=1
    [zscale...,tonemap=hable,zscale...]       HDR input (PQ or HLG transfer), when the build has zscale
    [fps=<max_fps>]                           a source faster than max_fps
    format=yuv420p                            8-bit 4:2:0, what every browser decodes

Rotation needs no filter: ffmpeg's ``-autorotate`` (on by default) turns the picture by the
input's display matrix before the chain, so ``ih`` is already the upright height, and writes no
display matrix to the output. Timestamps are kept (``-fps_mode vfr``: a variable frame rate stays
variable instead of frames being duplicated), and the audio is resampled to its timestamps
(``aresample=async=1:first_pts=0``: stretched or padded with silence to them, from 0) so the two
tracks stay together. The picture sets the length: audio that ends early is padded with silence
(``apad``) and audio past the last picture is cut (``-shortest``), since containers' own
durations are too often wrong to pad by (a 1 s fragmented MP4 declaring 143 165 s). Sources
often start one track a few frames after the other (B-frame delay without an edit list); both
tracks then start at 0: the first picture is shown from 0 and the audio is padded with silence
from 0, every later timestamp kept.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from services.conversion import media_codes as codes
from services.conversion.probe import run_ffprobe
from services.conversion.sandbox import Jail
from shared.errors import MediaError
from shared.options import ConversionOptions

VIDEO_ENTRIES = (
    "stream=index,width,height,sample_aspect_ratio,pix_fmt,field_order,color_transfer"
    ",r_frame_rate,avg_frame_rate:stream_side_data=rotation"
)
"""What :func:`probe_video` reads of the video stream (``ffprobe -show_entries``)."""

INTERLACED_FIELD_ORDERS = ("tt", "bb", "tb", "bt")
"""ffprobe's ``field_order`` values of interlaced video (``progressive`` and ``unknown`` are not)."""

HDR_TRANSFERS = ("smpte2084", "arib-std-b67")
"""Transfer characteristics of HDR video: PQ (SMPTE ST 2084) and HLG (ARIB STD-B67), ITU-T H.273."""

TONEMAP_CHAIN = (
    "zscale=t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,tonemap=tonemap=hable:desat=0,zscale=t=bt709:m=bt709:r=tv"
)
"""HDR to BT.709 SDR: to linear light, BT.709 primaries, Hable's curve, back to BT.709 (the
zscale and tonemap documentation in ffmpeg-filters(1)). Needs an ffmpeg built with zimg."""

DEFAULT_CRF = {"h264": 23, "hevc": 28, "vp9": 33, "av1": 35}
"""``crf`` when the client gives neither it nor ``video_bitrate``: each encoder's usual default
(libx264 23, libx265 28; libvpx-vp9 and SVT-AV1 have none of use, so the ones their guides suggest)."""

PRESET_ARGS = {
    "libx264": {
        p: ["-preset", x]
        for p, x in zip(
            ("fastest", "fast", "medium", "slow", "smallest"),
            ("ultrafast", "veryfast", "medium", "slow", "veryslow"),
            strict=True,
        )
    },
    "libx265": {
        p: ["-preset", x]
        for p, x in zip(
            ("fastest", "fast", "medium", "slow", "smallest"),
            ("ultrafast", "veryfast", "medium", "slow", "veryslow"),
            strict=True,
        )
    },
    "libvpx-vp9": {
        "fastest": ["-deadline", "realtime", "-cpu-used", "8"],
        "fast": ["-deadline", "good", "-cpu-used", "5"],
        "medium": ["-deadline", "good", "-cpu-used", "4"],
        "slow": ["-deadline", "good", "-cpu-used", "2"],
        "smallest": ["-deadline", "good", "-cpu-used", "0"],
    },
    "libsvtav1": {
        p: ["-preset", x]
        for p, x in zip(("fastest", "fast", "medium", "slow", "smallest"), ("12", "10", "8", "5", "2"), strict=True)
    },
    "libaom-av1": {
        "fastest": ["-usage", "realtime", "-cpu-used", "8"],
        "fast": ["-cpu-used", "6"],
        "medium": ["-cpu-used", "4"],
        "slow": ["-cpu-used", "2"],
        "smallest": ["-cpu-used", "1"],
    },
}
"""siphon's ``preset`` scale in each encoder's own terms (ffmpeg-codecs(1); x264 --fullhelp;
libvpx's ``--deadline``/``--cpu-used``; SVT-AV1's presets 0-13; libaom's ``cpu-used`` 0-8)."""

DEFAULT_PRESET = "medium"

ENCODE_SECONDS_PER_SECOND = {"h264": 3.0, "hevc": 12.0, "vp9": 12.0, "av1": 15.0}
"""Wall-clock seconds one second of 1080p input may take to encode at ``preset=medium``, per codec:
a bound for the time limit, not an estimate. Measured on this project's 2-core machine under a
load of 5 per core (Debian's ffmpeg 5.1, 1 s of 1080p testsrc2): libx265 13 s, libsvtav1 11 s,
libvpx-vp9 11 s; libx264 about a quarter of libx265."""

PRESET_TIME_FACTOR = {"fastest": 0.5, "fast": 0.75, "medium": 1.0, "slow": 2.5, "smallest": 8.0}
"""How much longer than ``medium`` each preset may take (x264's own guide puts ``veryslow`` at
~5 × ``medium``; SVT-AV1 preset 2 against 8 is slower still)."""

REFERENCE_PIXELS = 1920 * 1080
"""The frame size :data:`ENCODE_SECONDS_PER_SECOND` is for; larger outputs get proportionally longer."""


@dataclass(frozen=True)
class VideoFacts:
    """The video stream to convert: ``index`` among all streams, coded ``width`` × ``height``
    (pixels, before rotation), ``sar`` (pixel aspect ratio), ``rotation`` (degrees, the display
    matrix's), ``field_order``, ``pix_fmt``, ``color_transfer``, ``frame_rate`` (frames per second,
    ffprobe's ``r_frame_rate``; None when unknown)."""

    index: int
    width: int
    height: int
    sar: Fraction = Fraction(1)
    rotation: int = 0
    field_order: str | None = None
    pix_fmt: str | None = None
    color_transfer: str | None = None
    frame_rate: float | None = None

    @property
    def pixels(self) -> int:
        """Pixels in one frame (width × height)."""
        return self.width * self.height

    @property
    def interlaced(self) -> bool:
        return self.field_order in INTERLACED_FIELD_ORDERS

    @property
    def hdr(self) -> bool:
        return self.color_transfer in HDR_TRANSFERS

    def display_aspect(self) -> float:
        """Width over height as shown: pixel aspect ratio applied, then the rotation."""
        ratio = self.width * float(self.sar) / self.height
        return 1 / ratio if abs(self.rotation) % 180 == 90 else ratio


@dataclass(frozen=True)
class VideoPlan:
    """The video part of one ffmpeg command: the stream ``index``, the ``encoder`` (an FFmpeg
    encoder name), its arguments, the ``-vf`` chain and muxer arguments the codec needs."""

    index: int
    codec: str
    encoder: str
    encoder_args: tuple[str, ...]
    filter_chain: str
    output_pixels: int

    def arguments(self, muxer: str) -> list[str]:
        """``-vf``, ``-c:v`` and the rest, for ``muxer`` (mp4 tags HEVC ``hvc1``, as Apple and browsers ask)."""
        tag = ["-tag:v", "hvc1"] if self.codec == "hevc" and muxer == "mp4" else []
        return ["-vf", self.filter_chain, "-fps_mode", "vfr", "-c:v", self.encoder, *self.encoder_args, *tag]


def probe_video(path: Path, index: int, ffprobe: str = "ffprobe", jail: Jail | None = None) -> VideoFacts:
    """Read stream ``index`` of ``path`` with ffprobe (in ``jail``): see :class:`VideoFacts`.

    Raises:
        MediaError: ``no_video_stream`` when ffprobe reports no size for it (it cannot be decoded),
            ``timeout`` when ffprobe ran too long.
        SandboxFailed: ffprobe could not be confined.
    """
    done = run_ffprobe(ffprobe, path, "-select_streams", str(index), "-show_entries", VIDEO_ENTRIES, jail=jail)
    if done is None:
        raise MediaError("Reading the video stream took too long.", code=codes.TIMEOUT)
    streams = json.loads(done.stdout or b"{}").get("streams") or []
    entry = next((s for s in streams if s.get("index") == index), {})
    return parse_video(index, entry)


def parse_video(index: int, entry: dict) -> VideoFacts:
    """:class:`VideoFacts` from stream ``entry`` of ``ffprobe -show_entries`` :data:`VIDEO_ENTRIES` JSON.

    Raises:
        MediaError: ``no_video_stream`` when the entry has no width or height.
    """
    if not entry.get("width") or not entry.get("height"):
        raise MediaError("The video stream has no picture FFmpeg can decode.", code=codes.NO_VIDEO_STREAM)
    rotation = next((int(d["rotation"]) for d in entry.get("side_data_list", []) if "rotation" in d), 0)
    return VideoFacts(
        index=index,
        width=int(entry["width"]),
        height=int(entry["height"]),
        sar=_ratio(entry.get("sample_aspect_ratio")) or Fraction(1),
        rotation=rotation,
        field_order=entry.get("field_order"),
        pix_fmt=entry.get("pix_fmt"),
        color_transfer=entry.get("color_transfer"),
        frame_rate=float(rate) if (rate := _ratio(entry.get("r_frame_rate"))) else None,
    )


def _ratio(text: str | None) -> Fraction | None:
    """``"16:11"`` or ``"30000/1001"`` as a fraction; None for missing, zero or malformed."""
    if not text:
        return None
    num, _, den = text.replace(":", "/").partition("/")
    try:
        value = Fraction(int(num), int(den or 1))
    except (ValueError, ZeroDivisionError):
        return None
    return value if value > 0 else None


def plan_video(
    facts: VideoFacts,
    options: ConversionOptions,
    encoder: str,
    can_tonemap: bool,
    max_pixels: int,
) -> VideoPlan:
    """The video part of the command for ``facts`` as ``options`` ask, with ``encoder`` (for
    ``options.codec``); ``can_tonemap`` when the ffmpeg build has the zscale filter.

    Raises:
        MediaError: ``too_large`` when a frame has more than ``max_pixels`` pixels (a decompression
            bomb: a tiny file declaring a huge frame).
    """
    if facts.pixels > max_pixels:
        raise MediaError(
            f"The video frame is {facts.width}×{facts.height} pixels, more than the {max_pixels}-pixel limit.",
            code=codes.TOO_LARGE,
        )
    codec = options.codec
    return VideoPlan(
        index=facts.index,
        codec=codec,
        encoder=encoder,
        encoder_args=tuple(encoder_args(encoder, codec, options)),
        filter_chain=filter_chain(facts, options, can_tonemap),
        output_pixels=output_pixels(facts, options.height),
    )


def filter_chain(facts: VideoFacts, options: ConversionOptions, can_tonemap: bool) -> str:
    """The ``-vf`` chain (see the module docstring)."""
    upright_height = facts.width if abs(facts.rotation) % 180 == 90 else facts.height
    height = min(options.height or upright_height, upright_height)
    chain = ["setpts='if(eq(N,0),0,PTS)'"]
    chain += ["bwdif=mode=send_frame:deint=all"] if facts.interlaced else []
    chain += [f"scale=w='max(2,trunc(oh*dar/2)*2)':h='trunc(min({height},ih)/2)*2'", "setsar=1"]
    if facts.hdr and can_tonemap:
        chain.append(TONEMAP_CHAIN)
    if options.max_fps is not None and (facts.frame_rate is None or facts.frame_rate > options.max_fps):
        chain.append(f"fps={options.max_fps:g}")
    chain.append("format=yuv420p")
    return ",".join(chain)


def output_pixels(facts: VideoFacts, height: int | None) -> int:
    """About how many pixels each output frame has (for the time limit)."""
    upright_height = facts.width if abs(facts.rotation) % 180 == 90 else facts.height
    out_height = min(height or upright_height, upright_height)
    return round(out_height * out_height * facts.display_aspect())


def encoder_args(encoder: str, codec: str, options: ConversionOptions) -> list[str]:
    """Rate control and preset for ``encoder``: ``video_bitrate`` (kbps, average) if given, else
    ``crf`` (:data:`DEFAULT_CRF` when unset); then :data:`PRESET_ARGS` for ``preset``."""
    if options.video_bitrate is not None:
        rate = ["-b:v", f"{options.video_bitrate}k"]
    else:
        rate = ["-crf", str(DEFAULT_CRF[codec] if options.crf is None else options.crf)]
        if encoder in ("libvpx-vp9", "libaom-av1"):
            rate += ["-b:v", "0"]  # constant quality: without it the CRF is a cap under a default bitrate
    extra = {
        "libx265": ["-x265-params", "log-level=error"],
        "libvpx-vp9": ["-row-mt", "1"],
        "libaom-av1": ["-row-mt", "1"],
    }.get(encoder, [])
    return [*rate, *PRESET_ARGS[encoder][options.preset or DEFAULT_PRESET], *extra]


def timeout_seconds(
    base_seconds: float, media_seconds: float | None, codec: str, pixels: int, preset: str | None = None
) -> float:
    """The wall-clock limit of a video job's ffmpeg, seconds: ``base_seconds`` (the audio jobs'
    CONVERSION_TIMEOUT_SECONDS) plus ``media_seconds`` of input × :data:`ENCODE_SECONDS_PER_SECOND`
    for ``codec`` × :data:`PRESET_TIME_FACTOR` for ``preset`` (``medium`` when None), scaled by the
    output's ``pixels`` against 1080p (never below 1080p's share). A 10-minute 1080p AV1 job at
    ``medium`` gets 1800 + 600 × 15 = 10 800 s."""
    scale = max(1.0, pixels / REFERENCE_PIXELS) * PRESET_TIME_FACTOR[preset or DEFAULT_PRESET]
    return base_seconds + (media_seconds or 0.0) * ENCODE_SECONDS_PER_SECOND[codec] * scale

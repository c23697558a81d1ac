"""Probing an input with libav (PyAV) in a forked child, confined to the local file and to real
media containers.

The child (``services.conversion.forked``) reads the file as ffprobe does (``avformat_open_input``,
``avformat_find_stream_info``) and answers in the shape of ``ffprobe -show_entries`` JSON, which
:func:`_parse` reads; it costs ~10 ms a job where starting ffprobe cost ~60 ms (docs/performance.md).
A file the child cannot read (libav refuses it, crashes or hangs on it) goes to ffprobe, whose
verdict stands, so a bad file gets the error code the converting ffmpeg's own libav gives. PyAV's
libav is newer than Debian's: on files both read, the streams, codecs, rates, channels,
dispositions and carried tags are the same (tests/integration/test_probe_parity.py); durations may
differ where the newer demuxer reads a file's fragments instead of trusting its header.

FFmpeg's HLS, concat and similar demuxers open further URLs named inside the file; a playlist
named ``.mp4`` has been used to read server files and reach internal hosts (CVE-2016-1898,
HackerOne #242831). So every input opened here gets ``protocol_whitelist=file`` and
``format_whitelist`` with :data:`ALLOWED_DEMUXERS` (FFmpeg's formats documentation, "format_whitelist"),
in the child's ``avformat_open_input`` options as on every ffmpeg command line.

Given a ``jail`` (``services.conversion.sandbox``), the child and every ffprobe run are confined to
the job's files, without network, under rlimits.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.conversion import media_codes as codes
from services.conversion.forked import ForkedCall, Outcome
from services.conversion.mp3info import xing_seconds
from services.conversion.sandbox import Jail, bwrap_failure
from services.conversion.sniff import has_encryption_boxes, walk_top_level_boxes
from shared.errors import MediaError, SandboxFailed
from shared.jobs import MediaFacts
from shared.sniff import SNIFF_BYTES, not_media_kind

ALLOWED_DEMUXERS = (
    # video containers
    "mov",
    "matroska",
    "avi",
    "flv",
    "mpegts",
    "mpeg",
    "asf",
    "ogg",
    # audio-only formats
    "mp3",
    "aac",
    "loas",
    "wav",
    "w64",
    "flac",
    "ac3",
    "eac3",
    "dts",
    "truehd",
    "aiff",
    "caf",
    "amr",
    "ape",
    "au",
    "wv",
    "tta",
    "mpc",
    "mpc8",
    "dsf",
)
"""FFmpeg demuxer names a job may use; anything else (hls, concat, image2, ...) is refused."""

PROBE_TIMEOUT_SECONDS = 60
"""Wall-clock limit of one probe (the child, or an ffprobe run), seconds."""


PROBE_ENTRIES = (
    "format=format_name,duration:format_tags"
    ":stream=index,codec_type,codec_name,sample_rate,channels:stream_disposition=default,attached_pic:stream_tags"
)
"""What a probe reads (``ffprobe -show_entries``); :func:`libav_probe` answers with the same fields."""


def confinement() -> dict[str, str]:
    """libav input options that allow only local files and the allowed demuxers."""
    return {"protocol_whitelist": "file", "format_whitelist": ",".join(ALLOWED_DEMUXERS)}


def open_confined(path: Path | str):
    """``av.open`` of the local file ``path`` with :func:`confinement`: an ``av.container.InputContainer``.
    Tags that are not UTF-8 are read with U+FFFD in place of the bad bytes, as ffprobe's JSON
    writer replaces them, instead of failing the whole file.

    Raises:
        av.FFmpegError: libav could not open the file or read its streams.
    """
    import av

    return av.open(f"file:{path}", container_options=confinement(), metadata_errors="replace")


def confinement_options() -> list[str]:
    """:func:`confinement` as ffmpeg/ffprobe command-line options."""
    return [arg for key, value in confinement().items() for arg in (f"-{key}", value)]


@dataclass(frozen=True)
class AudioStream:
    """One audio stream: ``index`` among all streams, ``codec`` None when FFmpeg has no decoder."""

    index: int
    codec: str | None
    sample_rate_hz: int | None
    channels: int | None
    is_default: bool
    tags: dict[str, str] = field(default_factory=dict)
    """The stream's tags, keys lower-cased (Ogg and FLAC keep a file's tags here, not globally)."""


@dataclass(frozen=True)
class VideoStream:
    """One video stream: ``index`` among all streams; ``is_attached_pic`` for a cover picture
    (an MP4 ``covr``, an ID3 APIC, a Matroska attachment) rather than moving images."""

    index: int
    codec: str | None
    is_attached_pic: bool


@dataclass(frozen=True)
class ProbeResult:
    """What the probe found: the demuxer (``format_name``), duration in seconds, the audio streams,
    the video streams and the container's tags (keys lower-cased)."""

    format_name: str
    duration_seconds: float | None
    audio_streams: tuple[AudioStream, ...]
    video_streams: tuple[VideoStream, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def demuxer(self) -> str:
        """The demuxer name to force with ``-f`` (the first of ``format_name``'s aliases)."""
        return self.format_name.split(",")[0]

    def default_audio(self) -> AudioStream:
        """The stream to convert: the first decodable one marked default, else the first decodable.

        Raises:
            MediaError: ``no_audio_stream`` or ``unsupported_codec``.
        """
        if not self.audio_streams:
            raise MediaError("The file has no audio stream.", code=codes.NO_AUDIO_STREAM)
        decodable = [s for s in self.audio_streams if s.codec]
        if not decodable:
            raise MediaError("The audio stream uses a codec FFmpeg cannot decode.", code=codes.UNSUPPORTED_CODEC)
        return next((s for s in decodable if s.is_default), decodable[0])

    def audio_track(self, number: int | None) -> AudioStream:
        """Audio stream ``number`` (0-based among the audio streams), or :meth:`default_audio` for None.

        Raises:
            MediaError: ``audio_track_not_found`` (no such stream) or ``unsupported_codec``.
        """
        if number is None:
            return self.default_audio()
        if number >= len(self.audio_streams):
            count = len(self.audio_streams)
            raise MediaError(
                f"There is no audio track {number}: the file has {count} (audio_track counts from 0).",
                code=codes.AUDIO_TRACK_NOT_FOUND,
            )
        stream = self.audio_streams[number]
        if not stream.codec:
            raise MediaError(f"Audio track {number} uses a codec FFmpeg cannot decode.", code=codes.UNSUPPORTED_CODEC)
        return stream

    def attached_picture(self) -> VideoStream | None:
        """The first cover picture stream, if any."""
        return next((s for s in self.video_streams if s.is_attached_pic and s.codec), None)

    def moving_picture(self) -> VideoStream | None:
        """The first video stream that is not a cover picture, if any."""
        return next((s for s in self.video_streams if not s.is_attached_pic and s.codec), None)

    def facts(self, stream: AudioStream | None = None) -> MediaFacts:
        """The media facts recorded on the job."""
        return MediaFacts(
            container=self.format_name,
            audio_codec=stream.codec if stream else None,
            duration_seconds=self.duration_seconds,
            sample_rate_hz=stream.sample_rate_hz if stream else None,
            channels=stream.channels if stream else None,
            video_codec=video.codec if (video := self.moving_picture()) else None,
        )


def run_ffprobe(
    ffprobe: str, path: Path, *options: str, jail: Jail | None = None
) -> subprocess.CompletedProcess | None:
    """Run ffprobe confined (:func:`confinement_options`, and ``jail`` when given) on ``path`` with
    ``options``, JSON out; None when it ran past :data:`PROBE_TIMEOUT_SECONDS` (it is killed).

    Raises:
        SandboxFailed: bwrap could not build the jail.
    """
    command = [ffprobe, "-v", "error", *confinement_options(), *options, "-of", "json", f"file:{path}"]
    try:
        done = subprocess.run(
            jail.command(command) if jail else command,
            capture_output=True,
            timeout=PROBE_TIMEOUT_SECONDS,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return None
    failure = bwrap_failure(done.stderr.decode(errors="replace")) if jail and done.returncode else None
    if failure is not None:
        raise SandboxFailed(f"ffprobe could not be confined: {failure}")
    return done


def probe_media(path: Path, ffprobe: str = "ffprobe", jail: Jail | None = None) -> ProbeResult:
    """Probe ``path`` with libav in a forked child (:func:`libav_probe`); a file that child cannot
    read (refused, crashed on, too slow) is left to ffprobe, whose verdict stands: what siphon says
    about a bad file is what the ffmpeg that converts it says. Both run in ``jail``, if given.

    Raises:
        MediaError: the file is empty, not media, in a refused format, encrypted, truncated,
            corrupt, or the probe did not finish within :data:`PROBE_TIMEOUT_SECONDS`.
        SandboxFailed: the child or ffprobe could not be confined in ``jail``.
    """
    return probe_media_then(path, None, ffprobe, jail)[0]


def probe_media_then(
    path: Path, then: Callable[[Path, ProbeResult], Any] | None, ffprobe: str = "ffprobe", jail: Jail | None = None
) -> tuple[ProbeResult, Outcome | None]:
    """:func:`probe_media`, and ``then(path, result)`` in the same child right after the probe (one
    fork and one opening of the file for both): how ``then`` ended (its JSON-able value, or the
    exception it raised as text), or None when it did not run (no ``then``, or the child's answer
    was not used and ffprobe probed the file).

    Raises:
        MediaError, SandboxFailed: as :func:`probe_media`.
    """
    if path.stat().st_size == 0:
        raise MediaError("The file is empty.", code=codes.EMPTY_FILE)
    confine = jail.enter if jail else None
    outcome = ForkedCall(_probe_then, str(path), then, timeout_seconds=PROBE_TIMEOUT_SECONDS, confine=confine).result()
    if outcome.ok:
        result = _parse(outcome.value["probe"])
        after = outcome.value["then"]
        then_outcome = Outcome(ok=after["ok"], value=after.get("value"), error=after.get("error")) if then else None
    else:
        result, then_outcome = _ffprobe(path, ffprobe, jail), None
    if result.format_name.startswith("mov") and has_encryption_boxes(path):
        raise MediaError("The file is encrypted (DRM); it cannot be converted.", code=codes.ENCRYPTED)
    if not result.audio_streams and walk_top_level_boxes(path).truncated:
        raise MediaError("The file is cut short: its structure ends before its media.", code=codes.TRUNCATED)
    return result, then_outcome


def _probe_then(path: str, then: Callable[[Path, ProbeResult], Any] | None) -> dict:
    """The child's work: :func:`libav_probe`, then ``then``; an exception from ``then`` is its
    answer's, not the probe's."""
    probe = libav_probe(path)
    after: dict = {"ok": True, "value": None}
    if then is not None:
        try:
            after["value"] = then(Path(path), _parse(probe))
        except Exception as exc:  # noqa: BLE001 - reported with the probe, which stands
            after = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:1000]}
    return {"probe": probe, "then": after}


def _ffprobe(path: Path, ffprobe: str, jail: Jail | None) -> ProbeResult:
    done = run_ffprobe(ffprobe, path, "-show_entries", PROBE_ENTRIES, jail=jail)
    if done is None:
        raise MediaError("Reading the file's structure took too long.", code=codes.TIMEOUT)
    if done.returncode != 0:
        raise explain_unreadable(path, done.stderr.decode(errors="replace"))
    return _parse(json.loads(done.stdout or b"{}"))


def libav_probe(path: str) -> dict:
    """What ``ffprobe -show_entries`` :data:`PROBE_ENTRIES` ``-of json`` prints for ``path``, read
    with PyAV in this process (the forked child runs it).

    ``codec_name`` is left out for a stream libav has no decoder for, as for an unknown codec.

    Raises:
        av.FFmpegError: libav could not open the file or read its streams.
    """
    import av

    with open_confined(path) as container:
        streams = []
        for stream in container.streams:
            context = stream.codec_context
            entry = {
                "index": stream.index,
                "codec_type": stream.type,
                "disposition": {
                    "default": int(bool(stream.disposition & av.stream.Disposition.default)),
                    "attached_pic": int(bool(stream.disposition & av.stream.Disposition.attached_pic)),
                },
                "tags": dict(stream.metadata),
            }
            if context is not None:
                entry["codec_name"] = context.codec.canonical_name  # the codec's name, not its decoder's
                if stream.type == "audio":
                    entry["sample_rate"] = context.sample_rate or None
                    entry["channels"] = context.channels or None
            streams.append(entry)
        duration = container.duration / av.time_base if container.duration is not None else None
        return {
            "format": {"format_name": container.format.name, "duration": duration, "tags": dict(container.metadata)},
            "streams": streams,
        }


def _parse(data: dict) -> ProbeResult:
    fmt = data.get("format", {})
    streams = tuple(
        AudioStream(
            index=int(s["index"]),
            codec=s.get("codec_name"),
            sample_rate_hz=int(s["sample_rate"]) if s.get("sample_rate") else None,
            channels=int(s["channels"]) if s.get("channels") else None,
            is_default=bool(s.get("disposition", {}).get("default")),
            tags=_tags(s),
        )
        for s in data.get("streams", [])
        if s.get("codec_type") == "audio"
    )
    videos = tuple(
        VideoStream(
            index=int(s["index"]),
            codec=s.get("codec_name"),
            is_attached_pic=bool(s.get("disposition", {}).get("attached_pic")),
        )
        for s in data.get("streams", [])
        if s.get("codec_type") == "video"
    )
    duration = float(fmt["duration"]) if fmt.get("duration") not in (None, "N/A") else None
    return ProbeResult(
        format_name=fmt.get("format_name", ""),
        duration_seconds=duration,
        audio_streams=streams,
        video_streams=videos,
        tags=_tags(fmt),
    )


def _tags(entry: dict) -> dict[str, str]:
    """An ffprobe entry's tags with lower-cased keys (Vorbis comments are upper-case, MP4's lower)."""
    return {str(key).lower(): str(value) for key, value in (entry.get("tags") or {}).items()}


def measure_audio_seconds(path: Path, ffprobe: str = "ffprobe", jail: Jail | None = None) -> float:
    """Seconds of audio in a file siphon wrote, as ffprobe reads it back; 0.0 when it holds none.

    For an MP3 the duration comes from the Xing/Info header LAME writes (its frame count), so it
    is the audio actually encoded, whatever timestamps the input carried; that header is read
    in-process (:func:`~services.conversion.mp3info.xing_seconds`, the same figure), other formats
    and MP3s without one are asked of ffprobe (in ``jail``, if given).
    """
    counted = xing_seconds(path)
    if counted is not None:
        return counted
    return _duration_with(path, "a:0", ffprobe, jail)


def measure_video_seconds(path: Path, ffprobe: str = "ffprobe", jail: Jail | None = None) -> float:
    """Seconds of media in a video file siphon wrote (the container's duration, read back with
    ffprobe in ``jail``); 0.0 when it holds no video stream."""
    return _duration_with(path, "v:0", ffprobe, jail)


def _duration_with(path: Path, stream: str, ffprobe: str, jail: Jail | None) -> float:
    """The container's duration (seconds) when it has a ``stream`` (a stream specifier), else 0.0."""
    entries = ("-select_streams", stream, "-show_entries", "format=duration:stream=index")
    done = run_ffprobe(ffprobe, path, *entries, jail=jail)
    if done is None:
        return 0.0
    data = json.loads(done.stdout or b"{}")
    duration = data.get("format", {}).get("duration")
    if done.returncode != 0 or not data.get("streams") or duration in (None, "N/A"):
        return 0.0
    return float(duration)


def track_ends(path: Path, ffprobe: str = "ffprobe", jail: Jail | None = None) -> dict[str, float]:
    """Where the first video and first audio stream of a file siphon wrote end (keys ``video``,
    ``audio``), seconds: start_time + duration, or the Matroska ``DURATION`` tag; a stream whose end
    ffprobe does not report is left out."""
    done = run_ffprobe(
        ffprobe, path, "-show_entries", "stream=codec_type,start_time,duration:stream_tags=DURATION", jail=jail
    )
    ends: dict[str, float] = {}
    for stream in json.loads(done.stdout or b"{}").get("streams", []) if done is not None else []:
        kind, start = stream.get("codec_type"), stream.get("start_time")
        if kind in ends or start in (None, "N/A"):
            continue
        if stream.get("duration") not in (None, "N/A"):
            ends[kind] = float(start) + float(stream["duration"])
        elif tag := (stream.get("tags") or {}).get("DURATION"):
            hours, minutes, seconds = tag.split(":")
            ends[kind] = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    return ends


def explain_unreadable(path: Path, stderr: str) -> MediaError:
    """The :class:`MediaError` for a file ffprobe or ffmpeg could not open, judged from its bytes."""
    if "not on whitelist" in stderr:
        return MediaError("The file is not in a supported media container.", code=codes.UNSUPPORTED_FORMAT)
    if "encryption" in stderr or has_encryption_boxes(path):
        return MediaError("The file is encrypted (DRM); it cannot be converted.", code=codes.ENCRYPTED)
    boxes = walk_top_level_boxes(path)
    if boxes.truncated:
        return MediaError("The file is cut short: it ends in the middle of its structure.", code=codes.TRUNCATED)
    if boxes.is_bmff:
        return MediaError(
            "The file looks like MP4 but its structure is broken (no usable moov box).", code=codes.CORRUPT
        )
    return MediaError(f"The file is not a video or audio file.{looks_like(path)}", code=codes.NOT_MEDIA)


def looks_like(path: Path) -> str:
    """ " It looks like <kind>." when the head of ``path`` shows what it is instead of media (an
    S3 event's or a queue message's PNG, say: ``POST /convert`` refuses those itself), else ""."""
    with open(path, "rb") as f:
        kind = not_media_kind(f.read(SNIFF_BYTES))
    return f" It looks like {kind}." if kind else ""

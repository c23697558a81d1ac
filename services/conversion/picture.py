"""The cover picture: made beside the encode in a forked child with PyAV, embedded after it with mutagen.

Why not inside the ffmpeg command: ffmpeg 5.1 reads each input on a thread of its own once a
command has two inputs, and every packet of the audio input then crosses a thread queue. A second
input for the picture cost 60 ms of CPU on a 1-minute 720p video and 650 ms on a 10-minute one,
and a second ffmpeg process costs ~50 ms just to load Debian's ffmpeg and its 215 shared libraries
(docs/performance.md). In a child forked from the worker, with libav already loaded, opening the
file and making the picture takes ~10-20 ms, while ffmpeg encodes the audio on the other core.

Why a child at all: libav parses the uploaded bytes. A crash or a hang there ends the child, not
the worker (``services.conversion.forked``), and costs only the picture: the audio is what was
asked for.

The frame (``cover=frame``):

* at the default time (:data:`~services.conversion.plan.COVER_AT_RATIO` of the duration) it is the
  keyframe at or before that time: only that one frame is decoded (``skip_frame=nokey``), and a
  keyframe is the sharpest picture a codec stores;
* at a time the client named (``cover_at``) it is the first frame at or after that time, decoded
  from the keyframe before it (as ffmpeg's accurate ``-ss`` does).

The source's picture (``cover=source``, an attached picture such as an .m4a's ``covr``) is taken as
stored when it is JPEG or PNG, else decoded and encoded as JPEG.

Embedding (after the encode, on siphon's own output): ID3v2.4 APIC with picture type 3, "Cover
(front)" (ID3v2.4 native frames §4.14), MP4 ``covr``, FLAC METADATA_BLOCK_PICTURE (RFC 9639
§8.8); the formats without pictures (ogg, opus, wav) never get here (``OutputFormat.cover_art``).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from services.conversion.forked import Confine, ForkedCall, Outcome
from services.conversion.plan import Cover, choose_cover
from services.conversion.probe import ProbeResult, open_confined
from shared.options import ConversionOptions

logger = logging.getLogger(__name__)

PICTURE_TIMEOUT_SECONDS = 30.0
"""Wall-clock limit of the child that makes the picture, seconds; past it the job has no picture."""

MAX_DECODED_FRAMES = 2000
"""Frames an exact ``cover_at`` may decode past the keyframe before it (a broken index otherwise
decodes the whole video for one picture)."""

JPEG = "image/jpeg"
PNG = "image/png"
STORED_AS_IS = {"mjpeg": JPEG, "png": PNG}
"""Picture codecs kept byte for byte, with the MIME type every tag format records for them."""


@dataclass(frozen=True)
class Picture:
    """A finished cover picture: the image file and its MIME type (``image/jpeg`` or ``image/png``)."""

    path: Path
    mime: str


@dataclass(frozen=True)
class PictureFromProbe:
    """Makes the cover picture ``options`` call for in the probe's own child, right after the
    probe (``probe_media_then``): one fork and one opening of the file for both, ~20 ms of CPU a
    video job less than a child of its own. Its answer: ``{"cover": <Cover's fields>, "mime"}``,
    or None when the job gets no picture; :meth:`PictureMaker.from_probe` reads it.
    """

    options: ConversionOptions
    target: Path

    def __call__(self, source: Path, probe: ProbeResult) -> dict | None:
        cover = choose_cover(probe, self.options, self.options.output_format)
        if cover is None:
            return None
        return {"cover": asdict(cover), "mime": make_picture(source, cover, self.target)}


class PictureMaker:
    """One picture being made in a forked child (:class:`~services.conversion.forked.ForkedCall`)
    while the encode runs; :meth:`result` collects it.

    A picture that cannot be made (libav refuses the stream, crashes or hangs) is logged and the
    job goes on without one; only a child that could not be confined raises (``SandboxFailed``).
    """

    def __init__(self, target: Path, call: ForkedCall | None = None, made: Outcome | None = None):
        """A maker of the picture at ``target``: running in ``call``, or already ended as ``made``
        (neither: no picture). Use :meth:`start` or :meth:`from_probe`."""
        self.target = target
        self._call = call
        self._made = made

    @classmethod
    def start(
        cls,
        source: Path,
        cover: Cover,
        target: Path,
        timeout_seconds: float | None = None,
        confine: Confine | None = None,
    ) -> PictureMaker:
        """Fork a child (confined by ``confine``, if given) that makes the picture ``cover`` names
        from ``source`` into ``target``."""
        timeout = PICTURE_TIMEOUT_SECONDS if timeout_seconds is None else timeout_seconds
        try:
            call = ForkedCall(make_picture, source, cover, target, timeout_seconds=timeout, confine=confine)
            return cls(target, call=call)
        except OSError:
            logger.warning("could not fork the cover picture's child", exc_info=True)
            return cls(target)

    @classmethod
    def from_probe(cls, made: Outcome, cover: Cover, target: Path) -> PictureMaker | None:
        """The picture :class:`PictureFromProbe` made (``made``) if it is the one ``cover`` names,
        as a finished maker; None when it is another (then :meth:`start` one)."""
        if not made.ok:
            return cls(target, made=made)  # making it failed: trying again would fail the same way
        if made.value is None or made.value.get("cover") != asdict(cover):
            return None
        return cls(target, made=Outcome(ok=True, value=made.value["mime"]))

    def result(self) -> Picture | None:
        """Wait for the child (until its deadline); the picture, or None when there is none.

        Raises:
            SandboxFailed: the child could not confine itself.
        """
        if self._call is None and self._made is None:
            return None
        outcome = self._made if self._made is not None else self._call.result()
        if outcome.ok:
            return Picture(self.target, outcome.value) if outcome.value else None
        if outcome.timed_out:
            logger.warning("no cover picture: its child ran out of time")
        else:
            logger.warning("no cover picture: %s", outcome.error or "its child died without an answer")
        return None

    def cancel(self) -> None:
        """Stop the child if it still runs; safe to call more than once."""
        if self._call is not None:
            self._call.cancel()


def make_picture(source: Path, cover: Cover, target: Path) -> str | None:
    """Write the cover picture of ``source`` that ``cover`` names to ``target``; its MIME type, or
    None when the stream yields no picture. Runs libav in this process (the child calls it).

    Raises:
        av.FFmpegError: libav could not open, seek or decode the input.
    """
    with open_confined(source) as container:
        stream = container.streams[cover.index]
        if cover.at_seconds is None:
            return _source_picture(container, stream, target)
        frame = _frame_at(container, stream, cover.at_seconds, cover.exact, seek=True)
    if frame is None:  # the seek found no keyframe to start from (an input without an index, as MPEG-TS)
        with open_confined(source) as container:
            frame = _frame_at(container, container.streams[cover.index], cover.at_seconds, cover.exact, seek=False)
    if frame is None:
        return None
    target.write_bytes(_jpeg(frame))
    return JPEG


def _source_picture(container, stream, target: Path) -> str | None:
    for packet in container.demux(stream):
        if packet.size == 0:
            continue
        mime = STORED_AS_IS.get(stream.codec_context.name)
        if mime is not None:
            target.write_bytes(bytes(packet))
            return mime
        frames = stream.codec_context.decode(packet) or stream.codec_context.decode(None)
        if not frames:
            return None
        target.write_bytes(_jpeg(frames[0]))
        return JPEG
    return None


def _frame_at(container, stream, at_seconds: float, exact: bool, seek: bool):
    """The keyframe at or before ``at_seconds`` (counted from the stream's start), or (``exact``)
    the first frame at or after it; found after a backward seek to that time, or (not ``seek``)
    by decoding from the start, at most :data:`MAX_DECODED_FRAMES` frames."""
    import av

    context = stream.codec_context
    context.thread_type = "NONE"  # one frame: frame threads would only add start-up latency
    if not exact:
        context.skip_frame = "NONKEY"
    origin = float(stream.start_time * stream.time_base) if stream.start_time is not None and stream.time_base else 0.0
    at = origin + at_seconds
    if seek and stream.time_base:
        try:
            container.seek(int(at / stream.time_base), stream=stream, backward=True)
        except (av.FFmpegError, OSError):
            return None  # an input that cannot seek: decoded from the start by the caller
    chosen = None
    for decoded, frame in enumerate(container.decode(stream)):
        late = frame.time is not None and frame.time > at
        if late and not exact and chosen is not None:
            break  # from the start: the keyframe before this one
        chosen = frame
        if (exact and (frame.time is None or frame.time >= at)) or (seek and not exact) or late:
            break
        if decoded >= MAX_DECODED_FRAMES:
            break
    return chosen


def _jpeg(frame) -> bytes:
    """One decoded frame as a baseline JPEG, full size (FFmpeg's mjpeg encoder, full-range YUV 4:2:0)."""
    import av

    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width, encoder.height = frame.width, frame.height
    encoder.pix_fmt = "yuvj420p"
    encoder.time_base = frame.time_base or "1/25"
    image = frame.reformat(format="yuvj420p")
    image.pts = 0
    return b"".join(bytes(packet) for packet in [*encoder.encode(image), *encoder.encode(None)])


def embed_picture(target: Path, muxer: str, picture: Picture) -> None:
    """Put ``picture`` into siphon's output ``target`` (written by the ``muxer`` ffmpeg used) as its
    front cover, in place.

    Raises:
        ValueError: ``muxer`` is not one that carries pictures (mp3, ipod/mp4, flac).
        mutagen.MutagenError: the output's tags could not be read or written.
    """
    data = picture.path.read_bytes()
    if muxer == "mp3":
        from mutagen.id3 import APIC, ID3, ID3NoHeaderError, PictureType

        try:
            tags = ID3(target)
        except ID3NoHeaderError:
            tags = ID3()
        tags.add(APIC(encoding=3, mime=picture.mime, type=PictureType.COVER_FRONT, desc="", data=data))
        tags.save(target, v2_version=4)
    elif muxer in ("ipod", "mp4"):
        from mutagen.mp4 import MP4, MP4Cover

        image_format = MP4Cover.FORMAT_PNG if picture.mime == PNG else MP4Cover.FORMAT_JPEG
        tagged = MP4(target)
        if tagged.tags is None:
            tagged.add_tags()
        tagged.tags["covr"] = [MP4Cover(data, imageformat=image_format)]
        tagged.save()
    elif muxer == "flac":
        from mutagen.flac import FLAC
        from mutagen.flac import Picture as FlacPicture
        from mutagen.id3 import PictureType

        tagged = FLAC(target)
        block = FlacPicture()
        block.type, block.mime, block.data = PictureType.COVER_FRONT, picture.mime, data
        tagged.add_picture(block)
        tagged.save()
    else:
        raise ValueError(f"the {muxer} muxer carries no picture")

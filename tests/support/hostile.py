"""Hostile inputs made in a test's temp dir, and a loopback listener that records who called it.

* :func:`hls_playlist`, :func:`ffconcat_script`, :func:`avi_carrying_playlist` — files (named
  ``.mp4`` by the tests) that ask FFmpeg to open a local file and a URL: the attack of
  CVE-2016-1898 and HackerOne #242831.
* :func:`wav_declaring` — a WAV whose header claims far more audio than the file holds.
* :func:`silent_flac` — a few KB of FLAC that really decodes to hours of silence.
* :func:`truncated_copy`, :func:`corrupt_moov_copy` — a real MP4 cut short, or with its index box renamed.
* :class:`LoopbackListener` — a TCP server on 127.0.0.1 that records every connection made to it.
"""

from __future__ import annotations

import math
import socket
import struct
import threading
from pathlib import Path

from tests.support.sources import ffmpeg

MARKER_PREFIX = "SIPHON-SECRET-"


# --- files that point elsewhere ---------------------------------------------------------------
def hls_playlist(secret: Path, url: str) -> bytes:
    """An HLS media playlist whose two segments are ``url`` and ``secret`` (a local path)."""
    return (
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:10\n#EXT-X-MEDIA-SEQUENCE:0\n"
        f"#EXTINF:10.0,\n{url}\n#EXTINF:10.0,\nfile:{secret}\n#EXT-X-ENDLIST\n"
    ).encode()


def ffconcat_script(secret: Path, url: str) -> bytes:
    """An ffconcat script (FFmpeg's concat demuxer) listing ``url``, then ``secret``."""
    return f"ffconcat version 1.0\nfile '{url}'\nfile 'file:{secret}'\n".encode()


def _chunk(fourcc: bytes, data: bytes) -> bytes:
    return fourcc + struct.pack("<I", len(data)) + data + (b"\0" if len(data) % 2 else b"")


def _list(kind: bytes, *children: bytes) -> bytes:
    return _chunk(b"LIST", kind + b"".join(children))


def _strh(kind: bytes, scale: int, rate: int, length: int, sample_size: int) -> bytes:
    """An AVI stream header (AVISTREAMHEADER, 56 bytes)."""
    return _chunk(
        b"strh",
        kind
        + b"\0\0\0\0"
        + struct.pack("<IHHIIIIIIII4h", 0, 0, 0, 0, scale, rate, 0, length, 0, 0xFFFFFFFF, sample_size, 0, 0, 0, 0),
    )


def gab2_subtitle(payload: bytes, title: str = "subtitles") -> bytes:
    """A GAB2 subtitle chunk (the layout FFmpeg's AVI demuxer reads in ``read_gab2_sub``):
    ``"GAB2\\0"``, version 2, the UTF-16 title, then the embedded subtitle file."""
    name = title.encode("utf-16-le") + b"\0\0"
    return b"GAB2\0" + struct.pack("<HI", 2, len(name)) + name + struct.pack("<HI", 4, len(payload)) + payload


def pcm_tone(seconds: float, rate_hz: int = 8000) -> bytes:
    """Mono signed 16-bit little-endian samples of a 440 Hz sine."""
    return b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate_hz))) for i in range(int(seconds * rate_hz))
    )


def avi_carrying_playlist(playlist: bytes, pcm_8k_mono: bytes | None = None) -> bytes:
    """An AVI whose text stream's GAB2 chunk holds ``playlist`` (the HackerOne #242831 layout),
    with an 8 kHz mono PCM audio stream when ``pcm_8k_mono`` is given.

    FFmpeg opens what a GAB2 chunk holds with a second demuxer; before 3.3.2 that could be HLS.
    """
    streams = [_list(b"strl", _strh(b"txts", 1, 1, 1, 0), _chunk(b"strf", b""))]
    movi = [_chunk(b"00tx", gab2_subtitle(playlist))]
    if pcm_8k_mono is not None:
        wave_format = struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16)  # PCM, mono, 8 kHz, 16 bit
        streams.append(_list(b"strl", _strh(b"auds", 1, 8000, len(pcm_8k_mono) // 2, 2), _chunk(b"strf", wave_format)))
        movi.append(_chunk(b"01wb", pcm_8k_mono))
    main_header = _chunk(b"avih", struct.pack("<14I", 40000, 0, 0, 0x10, 1, 0, len(streams), 0, 0, 0, 0, 0, 0, 0))
    body = b"AVI " + _list(b"hdrl", main_header, *streams) + _list(b"movi", *movi)
    return b"RIFF" + struct.pack("<I", len(body)) + body


# --- files that lie about their length -----------------------------------------------------------
def wav_declaring(declared_seconds: float, real_seconds: float, rate_hz: int = 8000) -> bytes:
    """A mono 16-bit WAV whose RIFF and data sizes claim ``declared_seconds`` of audio (capped at
    what 32 bits can say) while it holds ``real_seconds``."""
    samples = pcm_tone(real_seconds, rate_hz)
    declared = min(int(declared_seconds * rate_hz * 2), 0xFFFFFFFF - 36)
    fmt = struct.pack("<HHIIHH", 1, 1, rate_hz, rate_hz * 2, 2, 16)
    return (
        b"RIFF"
        + struct.pack("<I", declared + 36)
        + b"WAVE"
        + _chunk(b"fmt ", fmt)
        + b"data"
        + struct.pack("<I", declared)
        + samples
    )


def silent_flac(path: Path, seconds: int, rate_hz: int = 8000, channels: int = 1) -> Path:
    """Write ``seconds`` of digital silence as FLAC with 65535-sample frames: every frame is one
    constant subframe, so an hour of 8 kHz mono takes about 14 KB."""
    layout = "mono" if channels == 1 else "stereo"
    ffmpeg(
        "-f", "lavfi", "-i", f"anullsrc=r={rate_hz}:cl={layout}", "-t", str(seconds),
        "-c:a", "flac", "-frame_size", "65535", str(path),
    )  # fmt: skip
    return path


# --- damaged copies of real files ---------------------------------------------------------------
def truncated_copy(source: Path, target: Path, fraction: float = 0.5) -> Path:
    """``source``'s first ``fraction`` of bytes."""
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * fraction)])
    return target


def corrupt_moov_copy(source: Path, target: Path) -> Path:
    """``source`` with its ``moov`` box (the MP4's index) renamed ``junk``: a well-formed box
    sequence that no longer says where any sample is. (Not ``free``: FFmpeg reads a ``free`` box
    that starts like a ``moov`` as one, for the sake of some cameras.)"""
    data = source.read_bytes()
    at = data.index(b"moov")
    target.write_bytes(data[:at] + b"junk" + data[at + 4 :])
    return target


# --- the network ------------------------------------------------------------------------------
class LoopbackListener:
    """A TCP server thread on 127.0.0.1 that accepts, records and closes every connection.

    ``connections`` holds ``(peer address, first bytes received)`` per connection.
    """

    def __init__(self):
        self.connections: list[tuple[tuple[str, int], bytes]] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self.port = self._server.getsockname()[1]
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="loopback-listener", daemon=True)

    def url(self, path: str = "/segment.ts") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> LoopbackListener:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stopping.set()
        self._thread.join(5)
        self._server.close()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                client, peer = self._server.accept()
            except TimeoutError:
                continue
            with client:
                client.settimeout(1)
                try:
                    first = client.recv(4096)
                except OSError:
                    first = b""
                self.connections.append((peer, first))

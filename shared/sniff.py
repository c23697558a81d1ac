"""What the first bytes of a file say it is, when that is clearly not audio or video.

The upload service refuses such a file before a job exists (415 ``not_media``); the conversion
worker names what it looks like when FFmpeg could not read a file. Both read only a file's head:
:data:`SNIFF_BYTES`.

Conservative by design: a real video refused here is far worse than a file that fails later in
the worker, so only signatures no audio or video container begins with are listed, the short
ones are checked further (gzip's method byte, a PE's header), and anything unknown is "can't
tell" (None). Text is judged last: valid UTF-8 with no control characters but tabs, line and
page breaks, except the few text-headed audio formats FFmpeg reads (AMR's ``#!AMR``, SILK,
M3U playlists, left to the worker's own verdict). Sources: each format's specification, as
summarised by ``file(1)``'s magic database.
"""

from __future__ import annotations

import unicodedata

SNIFF_BYTES = 8192
"""How much of a file's head is judged, bytes."""

SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    # (offset, bytes there, what the file is)
    (0, b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (0, b"GIF87a", "a GIF image"),
    (0, b"GIF89a", "a GIF image"),
    (0, b"\xff\xd8\xff", "a JPEG image"),
    (0, b"II*\x00", "a TIFF image"),
    (0, b"MM\x00*", "a TIFF image"),
    (0, b"%PDF-", "a PDF document"),
    (0, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an Office document"),
    (0, b"PK\x03\x04", "a ZIP archive"),
    (0, b"PK\x05\x06", "a ZIP archive"),
    (0, b"PK\x07\x08", "a ZIP archive"),
    (0, b"Rar!\x1a\x07", "a RAR archive"),
    (0, b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (0, b"\xfd7zXZ\x00", "an xz archive"),
    (0, b"\x28\xb5\x2f\xfd", "a zstd archive"),
    (257, b"ustar", "a tar archive"),
    (0, b"SQLite format 3\x00", "an SQLite database"),
    (0, b"\x7fELF", "an executable"),
    (0, b"\xfe\xed\xfa\xce", "an executable"),
    (0, b"\xfe\xed\xfa\xcf", "an executable"),
    (0, b"\xce\xfa\xed\xfe", "an executable"),
    (0, b"\xcf\xfa\xed\xfe", "an executable"),
    (0, b"\xca\xfe\xba\xbe", "an executable"),
    (0, b"\x00asm", "an executable"),
)
"""Byte strings that begin (or, for tar, sit inside the head of) files that are never media."""

TEXT_HEADED_MEDIA = (b"#!AMR", b"#!SILK", b"#EXTM3U")
"""Heads of formats FFmpeg reads that start as text: never judged as text here."""

TEXT_CONTROLS = "\t\n\r\f"
"""The control characters text may hold."""


def not_media_kind(head: bytes) -> str | None:
    """What ``head`` (a file's first bytes, up to :data:`SNIFF_BYTES`) shows the file to be when it
    is clearly not audio or video ("a ZIP archive", "an HTML page", "text", ...); None when it may
    be media or the bytes cannot tell (an empty head included)."""
    head = head[:SNIFF_BYTES]
    for offset, signature, kind in SIGNATURES:
        if head[offset : offset + len(signature)] == signature:
            return kind
    return _checked_short_signature(head) or _text_kind(head)


def _checked_short_signature(head: bytes) -> str | None:
    """Formats whose magic is too short to trust alone, with a second check each."""
    # gzip: method 8 (deflate, the only one defined) and no reserved flag bits (RFC 1952 §2.3.1)
    if head[:3] == b"\x1f\x8b\x08" and len(head) > 3 and head[3] & 0xE0 == 0:
        return "a gzip archive"
    if head[:3] == b"BZh" and head[3:4].isdigit() and head[4:10] == b"1AY&SY":
        return "a bzip2 archive"
    if head[:2] == b"BM" and len(head) >= 14 and head[6:10] == b"\x00\x00\x00\x00":
        return "a BMP image"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":  # RIFF also holds WAV and AVI: the form decides
        return "a WebP image"
    if head[:2] == b"MZ" and len(head) >= 64:  # a DOS stub; a Windows executable's PE header follows
        pe_offset = int.from_bytes(head[60:64], "little")
        if head[pe_offset : pe_offset + 4] == b"PE\x00\x00":
            return "an executable"
    return None


def _text_kind(head: bytes) -> str | None:
    """ "an HTML page" or "text" when ``head`` is text, else None."""
    text = _decoded(head)
    if not text or head.startswith(TEXT_HEADED_MEDIA):
        return None
    if any(unicodedata.category(ch) == "Cc" and ch not in TEXT_CONTROLS for ch in text):
        return None
    start = text.lstrip("\ufeff \t\r\n").lower()
    if start.startswith(("<!doctype html", "<html")):
        return "an HTML page"
    return "text"


def _decoded(head: bytes) -> str | None:
    """``head`` as UTF-8 (a character cut by the end of the head is dropped), or None."""
    try:
        return head.decode("utf-8")
    except UnicodeDecodeError as exc:
        cut_at_the_end = exc.reason == "unexpected end of data" and exc.start >= len(head) - 3
        return head[: exc.start].decode("utf-8") if cut_at_the_end else None

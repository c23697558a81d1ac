"""Client file names: made safe to store and to send back (RFC 6266 ``Content-Disposition``).

A client's file name is only ever a label. It never becomes a storage key or a path.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import quote

MAX_FILENAME_CHARS = 255


def clean_filename(raw: str | None) -> str:
    """The client's file name reduced to a safe label.

    Keeps the last path component (``/`` and ``\\`` both separate), drops control and format
    characters (NUL, CR/LF, bidi overrides such as U+202E: Unicode categories Cc and Cf), trims
    whitespace and dots at the ends, and cuts to 255 characters. May return ``""``.
    """
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf"))
    return name.strip().strip(".").strip()[:MAX_FILENAME_CHARS]


def download_name(original: str, extension: str, fallback_stem: str) -> str:
    """``<original's stem>.<extension>``, or ``<fallback_stem>.<extension>`` when there is no stem."""
    stem = original.rsplit(".", 1)[0] if "." in original else original
    return f"{stem or fallback_stem}.{extension}"


def content_disposition(filename: str) -> str:
    """An ``attachment`` header value with an ASCII fallback and the UTF-8 ``filename*`` (RFC 6266 §4.3, RFC 8187)."""
    ascii_name = unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode()
    ascii_name = "".join(ch for ch in ascii_name if ch.isprintable() and ch not in '"\\;') or "audio"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"

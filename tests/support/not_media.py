"""A file that passes the upload's first-bytes verdict and fails in the conversion as ``not_media``.

Text used to serve for that, until ``POST /convert`` refused text itself (415, ``shared/sniff.py``).
These bytes are binary (a NUL and a 0x01 in every line), match no signature, and no allowed
demuxer recognises them: the job is made, and fails in the worker.
"""

from __future__ import annotations

from pathlib import Path

UNREADABLE_BYTES = b"\x00\x01 definitely not a video\n" * 40
"""1 KB of bytes only the conversion can refuse (``not_media``)."""


def write_unreadable(path: Path, data: bytes = UNREADABLE_BYTES) -> Path:
    """Write :data:`UNREADABLE_BYTES` (or ``data``) to ``path``; return ``path``."""
    path.write_bytes(data)
    return path

"""Looking at the bytes of a file FFmpeg could not use, to say why in the user's terms.

ISO base media files (MP4, MOV, M4A, 3GP; ISO/IEC 14496-12) are a sequence of boxes, each
``size:u32be type:4cc [largesize:u64be if size == 1]`` with ``size == 0`` meaning "to the end".
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

CENC_BOXES = (b"encv", b"enca", b"tenc", b"pssh", b"senc")
"""Box types that only appear in encrypted files (ISO/IEC 23001-7, Common Encryption)."""

SCAN_BYTES = 4 * 1024 * 1024
"""How much of the head and tail of a file is searched for encryption boxes, bytes."""


@dataclass(frozen=True)
class BoxWalk:
    """The top level of an ISO BMFF file: whether it is one, and how it ends."""

    is_bmff: bool
    truncated: bool = False
    malformed: bool = False


def walk_top_level_boxes(path: Path) -> BoxWalk:
    """Walk the top-level boxes of ``path`` without reading their payloads."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8 or head[4:8] != b"ftyp":
            return BoxWalk(is_bmff=False)
        offset = 0
        while offset < size:
            f.seek(offset)
            header = f.read(16)
            if len(header) < 8:
                return BoxWalk(is_bmff=True, truncated=True)
            box_size, box_type = struct.unpack(">I4s", header[:8])
            if not all(0x20 <= b < 0x7F for b in box_type):
                return BoxWalk(is_bmff=True, malformed=True)
            if box_size == 1:
                if len(header) < 16:
                    return BoxWalk(is_bmff=True, truncated=True)
                box_size = struct.unpack(">Q", header[8:16])[0]
            elif box_size == 0:
                box_size = size - offset
            if box_size < 8:
                return BoxWalk(is_bmff=True, malformed=True)
            if offset + box_size > size:
                return BoxWalk(is_bmff=True, truncated=True)
            offset += box_size
    return BoxWalk(is_bmff=True)


def has_encryption_boxes(path: Path) -> bool:
    """Whether the head or tail of ``path`` holds a CENC box type (see :data:`CENC_BOXES`)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(SCAN_BYTES)
        f.seek(max(size - SCAN_BYTES, len(head)))
        tail = f.read(SCAN_BYTES)
    return any(marker in head or marker in tail for marker in CENC_BOXES)

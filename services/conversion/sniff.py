"""Looking at the bytes of a file FFmpeg could not use, to say why in the user's terms.

ISO base media files (MP4, MOV, M4A, 3GP; ISO/IEC 14496-12) are a sequence of boxes, each
``size:u32be type:4cc [largesize:u64be if size == 1]`` with ``size == 0`` meaning "to the end".
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

CENC_BOXES = (b"encv", b"enca", b"tenc", b"pssh", b"senc")
"""Box types that only appear in encrypted files (ISO/IEC 23001-7, Common Encryption)."""

SCAN_BYTES = 4 * 1024 * 1024
"""How much of the head and tail of a file is searched for encryption boxes when its ``moov`` box
cannot be found, bytes."""

MAX_MOOV_BYTES = 256 * 1024 * 1024
"""Largest ``moov`` box read whole to search it, bytes (a 2-hour video's is a few MB)."""


@dataclass(frozen=True)
class BoxWalk:
    """The top level of an ISO BMFF file: whether it is one, how it ends, and the boxes walked as
    ``(type, offset, size)`` (bytes)."""

    is_bmff: bool
    truncated: bool = False
    malformed: bool = False
    boxes: tuple[tuple[bytes, int, int], ...] = field(default=(), compare=False)


def walk_top_level_boxes(path: Path) -> BoxWalk:
    """Walk the top-level boxes of ``path`` without reading their payloads."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8 or head[4:8] != b"ftyp":
            return BoxWalk(is_bmff=False)
        offset, boxes = 0, []
        while offset < size:
            f.seek(offset)
            header = f.read(16)
            if len(header) < 8:
                return BoxWalk(is_bmff=True, truncated=True, boxes=tuple(boxes))
            box_size, box_type = struct.unpack(">I4s", header[:8])
            if not all(0x20 <= b < 0x7F for b in box_type):
                return BoxWalk(is_bmff=True, malformed=True, boxes=tuple(boxes))
            if box_size == 1:
                if len(header) < 16:
                    return BoxWalk(is_bmff=True, truncated=True, boxes=tuple(boxes))
                box_size = struct.unpack(">Q", header[8:16])[0]
            elif box_size == 0:
                box_size = size - offset
            if box_size < 8:
                return BoxWalk(is_bmff=True, malformed=True, boxes=tuple(boxes))
            if offset + box_size > size:
                return BoxWalk(is_bmff=True, truncated=True, boxes=tuple(boxes))
            boxes.append((box_type, offset, box_size))
            offset += box_size
    return BoxWalk(is_bmff=True, boxes=tuple(boxes))


def has_encryption_boxes(path: Path) -> bool:
    """Whether ``path`` holds a CENC box type (see :data:`CENC_BOXES`).

    An encrypted track's sample entry is ``encv``/``enca`` inside ``moov`` (ISO/IEC 23001-7 §4.2,
    fragmented files included), so for a well-formed file only its ``moov`` box is read; for
    any other file the first and last :data:`SCAN_BYTES` are searched.
    """
    moov = next((box for box in walk_top_level_boxes(path).boxes if box[0] == b"moov"), None)
    if moov is not None and moov[2] <= MAX_MOOV_BYTES:
        with open(path, "rb") as f:
            f.seek(moov[1])
            payload = f.read(moov[2])
        return any(marker in payload for marker in CENC_BOXES)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(SCAN_BYTES)
        f.seek(max(size - SCAN_BYTES, len(head)))
        tail = f.read(SCAN_BYTES)
    return any(marker in head or marker in tail for marker in CENC_BOXES)

"""Reading ISO BMFF box headers of small synthetic files (``services.conversion.sniff``)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from services.conversion import sniff
from services.conversion.sniff import BoxWalk, has_encryption_boxes, walk_top_level_boxes

FTYP = struct.pack(">I4s4sI4s", 20, b"ftyp", b"isom", 512, b"isom")


def box(kind: bytes, payload: bytes = b"", size: int | None = None) -> bytes:
    """A box: 32-bit size (default: the real one), 4-character type, payload."""
    return struct.pack(">I4s", len(payload) + 8 if size is None else size, kind) + payload


def large_box(kind: bytes, payload: bytes, largesize: int | None = None) -> bytes:
    """A box with ``size == 1`` and a 64-bit ``largesize`` (default: the real one)."""
    real = len(payload) + 16
    return struct.pack(">I4sQ", 1, kind, real if largesize is None else largesize) + payload


@pytest.fixture
def write(tmp_path):
    def write(data: bytes) -> Path:
        path = tmp_path / "file.mp4"
        path.write_bytes(data)
        return path

    return write


@pytest.mark.parametrize(
    ("data", "walk"),
    [
        (FTYP + box(b"moov", b"m" * 30) + box(b"mdat", b"d" * 100), BoxWalk(is_bmff=True)),
        (FTYP + box(b"moov") + box(b"mdat", b"d" * 10, size=0), BoxWalk(is_bmff=True)),  # size 0: to the end
        (FTYP + large_box(b"mdat", b"d" * 40) + box(b"moov"), BoxWalk(is_bmff=True)),
        (FTYP + box(b"moov") + box(b"mdat", b"d" * 10, size=5000), BoxWalk(is_bmff=True, truncated=True)),
        (FTYP + box(b"moov")[:5], BoxWalk(is_bmff=True, truncated=True)),  # header cut short
        (FTYP + large_box(b"mdat", b"d" * 40, largesize=1 << 40), BoxWalk(is_bmff=True, truncated=True)),
        (FTYP + struct.pack(">I4s", 1, b"mdat") + b"\0\0\0", BoxWalk(is_bmff=True, truncated=True)),  # cut largesize
        (FTYP + box(b"\x00\x01ab", b"x" * 8), BoxWalk(is_bmff=True, malformed=True)),  # type not printable
        (FTYP + box(b"mo\xffv", b"x" * 8), BoxWalk(is_bmff=True, malformed=True)),
        (FTYP + box(b"free", size=4) + b"xxxx", BoxWalk(is_bmff=True, malformed=True)),  # smaller than its header
        (FTYP + large_box(b"mdat", b"", largesize=3), BoxWalk(is_bmff=True, malformed=True)),
    ],
    ids=[
        "whole",
        "size-zero",
        "largesize",
        "past-eof",
        "cut-header",
        "largesize-past-eof",
        "cut-largesize",
        "control-type",
        "high-byte-type",
        "tiny-size",
        "tiny-largesize",
    ],
)
def test_walk_top_level_boxes(write, data, walk):
    assert walk_top_level_boxes(write(data)) == walk


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"ftyp",
        b"This file looks like an mp4 but it isn't.",
        b"RIFF\x24\0\0\0WAVEfmt ",
        box(b"moov", b"m" * 8) + FTYP,  # ftyp must come first
    ],
)
def test_files_not_starting_with_ftyp_are_not_bmff(write, data):
    assert walk_top_level_boxes(write(data)) == BoxWalk(is_bmff=False)


@pytest.mark.parametrize("marker", [b"encv", b"enca", b"tenc", b"pssh", b"senc"])
def test_encryption_boxes_are_found(write, marker):
    assert has_encryption_boxes(write(FTYP + box(b"moov", box(marker, b"k" * 16))))


def test_a_clear_file_has_no_encryption_boxes(write):
    assert not has_encryption_boxes(write(FTYP + box(b"moov", b"m" * 64) + box(b"mdat", b"d" * 64)))


def test_only_the_head_and_tail_are_scanned(write, monkeypatch):
    monkeypatch.setattr(sniff, "SCAN_BYTES", 64)
    filler = b"\0" * 200
    assert has_encryption_boxes(write(filler + b"pssh" + b"\0" * 20))  # in the tail
    assert not has_encryption_boxes(write(filler + b"pssh" + filler))  # in the unscanned middle


def test_in_a_well_formed_file_only_the_moov_box_is_searched(write):
    clear_moov = box(b"moov", b"m" * 64)
    assert not has_encryption_boxes(write(FTYP + clear_moov + box(b"mdat", b"audio that happens to say encv"))), (
        "media bytes may spell a box type: only the sample entries in moov say what is encrypted"
    )
    assert has_encryption_boxes(write(FTYP + box(b"mdat", b"d" * 64) + box(b"moov", box(b"enca", b"k" * 16))))


def test_a_file_without_a_readable_moov_falls_back_to_its_head_and_tail(write):
    assert has_encryption_boxes(write(FTYP + box(b"mdat", box(b"pssh", b"k" * 16))))

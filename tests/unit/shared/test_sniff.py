"""Judging a file by its head (``shared/sniff.py``): what is clearly not media, and what must pass."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest

from shared.sniff import SNIFF_BYTES, not_media_kind
from tests.support.media import read_manifest

ZIP = b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(100)
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(100)
ELF = Path("/bin/true").read_bytes()[:SNIFF_BYTES]
HTML = b"<!DOCTYPE html>\n<html><head><title>Not a video</title></head><body>hi</body></html>\n"


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"Shopping list: milk, eggs, a video converter.\n", "text"),
        ("Été à Paris — notes\n".encode() * 10, "text"),
        (b"\xef\xbb\xbf# notes with a byte order mark\n", "text"),
        (HTML, "an HTML page"),
        (b"\n  <html lang=en><body>x</body></html>", "an HTML page"),
        (b"#!/bin/sh\nexec ffmpeg -i http://127.0.0.1:1/ out.mp3\n", "text"),
        (ZIP, "a ZIP archive"),
        (PNG, "a PNG image"),
        (b"GIF89a\x01\x00\x01\x00" + bytes(20), "a GIF image"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "a JPEG image"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "a WebP image"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "a PDF document"),
        (b"\x1f\x8b\x08\x00" + bytes(20), "a gzip archive"),
        (b"BZh91AY&SY" + bytes(20), "a bzip2 archive"),
        (b"\x00" * 257 + b"ustar\x0000" + bytes(100), "a tar archive"),
        (ELF, "an executable"),
        (b"MZ" + bytes(58) + struct.pack("<I", 64) + b"PE\x00\x00" + bytes(20), "an executable"),
    ],
)
def test_what_is_clearly_not_media_is_named(head, kind):
    assert not_media_kind(head) == kind


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom", id="mp4"),
        pytest.param(b"\x1aE\xdf\xa3\x9fB\x86\x81\x01", id="matroska"),
        pytest.param(b"RIFF\x24\x08\x00\x00WAVEfmt \x10\x00\x00\x00", id="wav"),
        pytest.param(b"RIFF\x24\x08\x00\x00AVI LIST", id="avi"),
        pytest.param(b"OggS\x00\x02" + bytes(20), id="ogg"),
        pytest.param(b"fLaC\x00\x00\x00\x22", id="flac"),
        pytest.param(b"ID3\x04\x00\x00\x00\x00\x00\x00", id="mp3-id3"),
        pytest.param(b"\xff\xfb\x90\x64" + bytes(20), id="mp3-frame"),
        pytest.param(b"\xff\xf1\x50\x80" + bytes(20), id="adts-aac"),
        pytest.param(b"\x0bw" + bytes(20), id="ac3"),
        pytest.param(b"FORM\x00\x00\x10\x00AIFFCOMM\x00\x00\x00\x12", id="aiff"),
        pytest.param(b"#!AMR\n<\x91\x17\x16\xbe", id="amr"),
        pytest.param(b"#!AMR\nonly text after the header", id="amr-text-only"),
        pytest.param(b"#EXTM3U\n#EXTINF:10,\nclip.mp4\n", id="m3u"),
        pytest.param(b"G@\x00\x10\x00\x00\xb0\r", id="mpegts"),
        pytest.param(b"\x00\x00\x01\xba" + bytes(20), id="mpeg-ps"),
        pytest.param(b"MZ" + bytes(100), id="mz-without-pe"),
        pytest.param(b"\x1f\x8b", id="two-gzip-bytes"),
        pytest.param(b"\x00\x01 definitely not a video" * 40, id="binary-junk"),
        pytest.param(b"text\x1b[31m with an escape", id="text-with-escape"),
    ],
)
def test_what_may_be_media_or_cannot_be_told_passes(head):
    assert not_media_kind(head) is None


def test_a_character_cut_by_the_end_of_the_head_is_still_text():
    head = ("é" * SNIFF_BYTES).encode()[: SNIFF_BYTES - 1]  # ends in the middle of a 2-byte character
    assert not_media_kind(head) == "text"


def test_only_the_head_is_judged():
    assert not_media_kind(b"a" * SNIFF_BYTES + b"\x00\xff") == "text"


def test_random_bytes_are_never_judged():
    rng = random.Random(7)
    assert [not_media_kind(rng.randbytes(64)) for _ in range(20_000)].count(None) == 20_000


def test_no_media_file_of_the_corpus_is_refused_and_its_text_files_are(media_dir):
    """Every file of the corpus, whole head: only the two text files filed as ``not_media`` are
    refused (the empty file is the upload's ``empty_file``, not the sniffer's)."""
    refused = {}
    for name, row in read_manifest(media_dir).items():
        kind = not_media_kind((media_dir / name).read_bytes()[:SNIFF_BYTES])
        if kind is not None:
            refused[name] = (kind, row["category"])
    assert refused == {
        "not_media_text_file.mp4": ("text", "hostile;not_media"),
        "not_media_js_comment.mp4": ("text", "hostile;not_media"),
    }

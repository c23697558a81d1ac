"""Client file names: cleaned into safe labels and sent back per RFC 6266 (``shared.filenames``)."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote

import pytest
from werkzeug.http import parse_options_header

from shared.filenames import MAX_FILENAME_CHARS, clean_filename, content_disposition, download_name

HOSTILE_NAMES = [
    "../../etc/passwd",
    "..\\..\\windows\\win.ini",
    "a/b/../c.mp4",
    "ab\x00c.mp4",
    "line\r\nbreak.mp4",
    "evil\u202egpj.mp4",
    "zero\u200bwidth.mp4",
    " ../ .. ",
    "x" * 10_240,
    "\x7f\x1b[31mred.mp4",
    "/",
    "..",
]


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("holiday.mp4", "holiday.mp4"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\win.ini", "win.ini"),
        ("C:\\Users\\me\\clip.mov", "clip.mov"),
        ("../", ""),
        ("..", ""),
        ("ab\x00c.mp4", "abc.mp4"),
        ("line\r\nbreak.mp4", "linebreak.mp4"),
        ("evil\u202egpj.mp4", "evilgpj.mp4"),  # RIGHT-TO-LEFT OVERRIDE would display "evilp4m.jpg"
        ("  .hidden name.  ", "hidden name"),
        ("Café ☕ 日本.mp4", "Café ☕ 日本.mp4"),
        ("", ""),
        (None, ""),
    ],
)
def test_clean_filename(raw, clean):
    assert clean_filename(raw) == clean


def test_a_10_kb_name_is_cut_to_255_characters():
    cleaned = clean_filename("a" * 10_240 + ".mp4")
    assert cleaned == "a" * MAX_FILENAME_CHARS


@pytest.mark.parametrize("raw", HOSTILE_NAMES)
def test_cleaned_names_hold_no_separator_control_or_format_character(raw):
    cleaned = clean_filename(raw)
    assert "/" not in cleaned and "\\" not in cleaned and cleaned not in (".", "..")
    assert len(cleaned) <= MAX_FILENAME_CHARS
    assert not any(unicodedata.category(ch) in ("Cc", "Cf") for ch in cleaned)


@pytest.mark.parametrize(
    ("original", "name"),
    [
        ("holiday.mov", "holiday.mp3"),
        ("archive.tar.gz", "archive.tar.mp3"),
        ("no extension", "no extension.mp3"),
        ("", "0f0f.mp3"),
        (".mp4", "0f0f.mp3"),
    ],
)
def test_download_name_swaps_the_extension(original, name):
    assert download_name(original, "mp3", fallback_stem="0f0f") == name


HEADER_SHAPE = re.compile(r"""^attachment; filename="[ -~]*"; filename\*=UTF-8''[A-Za-z0-9!#$&+\-.^_`|~%]*$""")


@pytest.mark.parametrize(
    "name",
    [
        "holiday.mp3",
        "Café ☕ 日本.mp3",
        'say "hi"; rm -rf \\.mp3',
        "line\r\nSet-Cookie: x=1.mp3",
        "100% fun.mp3",
        "日本語",
        "",
    ],
)
def test_content_disposition_has_the_rfc_6266_shape(name):
    value = content_disposition(name)
    assert HEADER_SHAPE.match(value), value
    fallback = value.split('filename="', 1)[1].split('"', 1)[0]
    assert not set(fallback) & set('"\\;\r\n')
    assert unquote(value.rsplit("''", 1)[1]) == name


def test_content_disposition_round_trips_through_a_parser():
    name = 'Café ☕ "q";x.mp3'
    kind, params = parse_options_header(content_disposition(name))
    assert (kind, params["filename"]) == ("attachment", name)


def test_content_disposition_ascii_fallback_transliterates_or_defaults():
    assert 'filename="Cafe.mp3"' in content_disposition("Café.mp3")
    assert 'filename="audio"' in content_disposition("日本語")

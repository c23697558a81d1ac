"""Conversion options from form fields (``shared.options``): every field, its edges, and the 400s."""

from __future__ import annotations

import pytest

from shared.errors import SiphonError
from shared.options import (
    FORMATS,
    FORMATS_BY_EXTENSION,
    MP3_BITRATES_KBPS,
    MP3_SAMPLE_RATES_HZ,
    VIDEO_CODECS,
    ConversionOptions,
    InvalidOption,
    options_from_form,
    parse_seconds,
)


def invalid(form: dict) -> dict:
    """The error body an invalid form gets."""
    with pytest.raises(InvalidOption) as info:
        options_from_form(form, VIDEO_CODECS)
    assert (info.value.status, info.value.code) == (400, "invalid_option")
    return info.value.to_dict()


def test_no_fields_is_the_plain_mp3():
    options = options_from_form({}, VIDEO_CODECS)
    assert options == ConversionOptions() and options.output_format is FORMATS["mp3"]
    assert options.recorded() == {}


def test_unknown_and_empty_fields_are_ignored():
    assert options_from_form({"file": "x", "colour": "blue", "bitrate": ""}, VIDEO_CODECS).recorded() == {}


@pytest.mark.parametrize(
    ("form", "recorded"),
    [
        ({"bitrate": "32"}, {"bitrate": 32}),
        ({"bitrate": "320"}, {"bitrate": 320}),
        ({"bitrate": " 128 "}, {"bitrate": 128}),
        ({"quality": "0"}, {"quality": 0}),
        ({"quality": "9"}, {"quality": 9}),
        ({"sample_rate": "8000"}, {"sample_rate": 8000}),
        ({"sample_rate": "48000"}, {"sample_rate": 48000}),
        ({"channels": "1"}, {"channels": 1}),
        ({"channels": "2"}, {"channels": 2}),
        ({"start": "1.5", "end": "4"}, {"start": 1.5, "end": 4.0}),
        ({"start": "00:00:01.500", "end": "01:02"}, {"start": 1.5, "end": 62.0}),
        ({"end": "99999"}, {"end": 99999.0}),
        ({"audio_track": "1"}, {"audio_track": 1}),
        ({"normalize": "-16"}, {"normalize": -16.0}),
        ({"normalize": "-23.5"}, {"normalize": -23.5}),
        ({"title": "Café ☕", "artist": "A", "album": "B"}, {"title": "Café ☕", "artist": "A", "album": "B"}),
        ({"cover": "none"}, {"cover": "none"}),
        ({"cover": "frame", "cover_at": "00:00:02"}, {"cover": "frame", "cover_at": 2.0}),
        ({"format": "m4a", "sample_rate": "96000"}, {"format": "m4a", "sample_rate": 96000}),
        (
            {"format": "opus", "sample_rate": "48000", "bitrate": "64"},
            {"format": "opus", "sample_rate": 48000, "bitrate": 64},
        ),
        ({"format": "ogg", "quality": "3"}, {"format": "ogg", "quality": 3}),
        ({"format": "flac", "sample_rate": "96000"}, {"format": "flac", "sample_rate": 96000}),
        ({"format": "wav", "channels": "1"}, {"format": "wav", "channels": 1}),
    ],
)
def test_valid_values_are_recorded_as_understood(form, recorded):
    assert options_from_form(form, VIDEO_CODECS).recorded() == recorded


@pytest.mark.parametrize("bitrate", MP3_BITRATES_KBPS)
def test_every_mp3_bitrate_is_accepted(bitrate):
    assert options_from_form({"bitrate": str(bitrate)}, VIDEO_CODECS).bitrate == bitrate


@pytest.mark.parametrize("rate", MP3_SAMPLE_RATES_HZ)
def test_every_mp3_sample_rate_is_accepted(rate):
    assert options_from_form({"sample_rate": str(rate)}, VIDEO_CODECS).sample_rate == rate


@pytest.mark.parametrize(
    ("form", "field", "allowed_mentions"),
    [
        ({"bitrate": "31"}, "bitrate", "320"),
        ({"bitrate": "321"}, "bitrate", "32,"),
        ({"bitrate": "129"}, "bitrate", "128"),
        ({"bitrate": "abc"}, "bitrate", "kbps"),
        ({"quality": "-1"}, "quality", "0 (best) to 9"),
        ({"quality": "10"}, "quality", "0 (best) to 9"),
        ({"quality": "1.5"}, "quality", "0 (best) to 9"),
        ({"bitrate": "128", "quality": "2"}, "bitrate", "not with quality"),
        ({"sample_rate": "7999"}, "sample_rate", "8000"),
        ({"sample_rate": "96000"}, "sample_rate", "for mp3"),
        ({"sample_rate": "44100", "format": "opus"}, "sample_rate", "48000 (Hz) for opus"),
        ({"channels": "0"}, "channels", "1 or 2"),
        ({"channels": "6"}, "channels", "1 or 2"),
        ({"channels": "stereo"}, "channels", "1 or 2"),
        ({"start": "-1"}, "start", "HH:MM:SS.mmm"),
        ({"start": "00:61:00"}, "start", "HH:MM:SS.mmm"),
        ({"start": "soon"}, "start", "HH:MM:SS.mmm"),
        ({"end": "0"}, "end", "seconds > start"),
        ({"start": "5", "end": "5"}, "end", "seconds > start"),
        ({"start": "00:00:10", "end": "9.999"}, "end", "seconds > start"),
        ({"end": "inf"}, "end", "HH:MM:SS.mmm"),
        ({"audio_track": "-1"}, "audio_track", "≥ 0"),
        ({"audio_track": "first"}, "audio_track", "≥ 0"),
        ({"normalize": "-4"}, "normalize", "-70 to -5"),
        ({"normalize": "-71"}, "normalize", "-70 to -5"),
        ({"normalize": "nan"}, "normalize", "-70 to -5"),
        ({"format": "aiff"}, "format", "mp3, m4a, opus, ogg, flac, wav"),
        ({"format": "MP3"}, "format", "mp3, m4a"),
        ({"format": "flac", "bitrate": "128"}, "bitrate", "nor for flac or wav"),
        ({"format": "wav", "quality": "2"}, "quality", "nor for flac or wav"),
        ({"title": "x" * 1025}, "title", "1024 characters"),
        ({"cover": "thumbnail"}, "cover", "frame, source, none"),
        ({"cover_at": "-2"}, "cover_at", "seconds"),
    ],
)
def test_invalid_values_name_the_field_and_what_it_allows(form, field, allowed_mentions):
    body = invalid(form)
    assert body["field"] == field and allowed_mentions in body["allowed"], body
    assert field in body["message"]


def test_invalid_option_is_a_siphon_error_whose_body_carries_field_and_allowed():
    error = InvalidOption("bitrate", "one of 32 ... 320")
    assert isinstance(error, SiphonError)
    assert error.to_dict() == {
        "code": "invalid_option",
        "field": "bitrate",
        "allowed": "one of 32 ... 320",
        "message": "Invalid value for 'bitrate': allowed one of 32 ... 320.",
    }


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("12.5", 12.5),
        ("90", 90.0),
        ("01:30", 90.0),
        ("1:02:03", 3723.0),
        ("00:00:01.5", 1.5),
        ("10:00:00.125", 36000.125),
        (7, 7.0),
    ],
)
def test_parse_seconds_takes_both_syntaxes(text, seconds):
    assert parse_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "-1", "1:60", "1:00:60", "abc", "inf", "nan", "1::2", "1:2:3:4"])
def test_parse_seconds_refuses_the_rest(text):
    with pytest.raises(ValueError):
        parse_seconds(text)


def test_every_format_is_reachable_by_its_extension_with_its_media_type():
    assert {ext: f.media_type for ext, f in FORMATS_BY_EXTENSION.items()} == {
        "mp3": "audio/mpeg",
        "m4a": "audio/mp4",
        "opus": "audio/ogg",
        "ogg": "audio/ogg",
        "flac": "audio/flac",
        "wav": "audio/wav",
        "mp4": "video/mp4",
        "webm": "video/webm",
        "mkv": "video/x-matroska",
    }
    assert {f.name for f in FORMATS.values() if f.cover_art} == {"mp3", "m4a", "flac"}


# --- video formats -----------------------------------------------------------------------------


def test_video_formats_are_served_with_their_media_types():
    assert {ext: FORMATS_BY_EXTENSION[ext].media_type for ext in ("mp4", "webm", "mkv")} == {
        "mp4": "video/mp4",
        "webm": "video/webm",
        "mkv": "video/x-matroska",
    }


@pytest.mark.parametrize(("fmt", "codec"), [("mp4", "h264"), ("webm", "vp9"), ("mkv", "h264")])
def test_a_video_format_without_a_codec_gets_its_default(fmt, codec):
    options = options_from_form({"format": fmt}, VIDEO_CODECS)
    assert options.codec == codec and options.output_format.is_video


def test_every_video_option_is_taken_and_recorded():
    form = {
        "format": "webm",
        "video_codec": "av1",
        "height": "240",
        "max_fps": "29.97",
        "crf": "40",
        "preset": "fastest",
        "start": "1",
        "end": "3",
    }
    recorded = options_from_form(form, VIDEO_CODECS).recorded()
    assert recorded == {**form, "height": 240, "max_fps": 29.97, "crf": 40, "start": 1.0, "end": 3.0}


def test_the_audio_formats_have_no_video_codec():
    assert options_from_form({"format": "mp3"}, VIDEO_CODECS).codec is None


@pytest.mark.parametrize(
    ("form", "field", "allowed_part"),
    [
        ({"format": "avi"}, "format", "mp4, webm, mkv"),
        ({"format": "mp4", "video_codec": "vp9"}, "video_codec", "h264"),
        ({"format": "webm", "video_codec": "h264"}, "video_codec", "vp9"),
        ({"format": "mp4", "video_codec": "mpeg2"}, "video_codec", "h264"),
        ({"format": "mp4", "height": "8"}, "height", "16 to 4320"),
        ({"format": "mp4", "height": "tall"}, "height", "16 to 4320"),
        ({"format": "mp4", "crf": "52"}, "crf", "h264 0-51"),
        ({"format": "webm", "crf": "64"}, "crf", "vp9 0-63"),
        ({"format": "mp4", "crf": "20", "video_bitrate": "800"}, "crf", "not with video_bitrate"),
        ({"format": "mp4", "video_bitrate": "10"}, "video_bitrate", "50 to 100000"),
        ({"format": "mp4", "preset": "ultrafast"}, "preset", "fastest, fast, medium, slow, smallest"),
        ({"format": "mp4", "max_fps": "0"}, "max_fps", "at most 240"),
        ({"format": "mp3", "height": "240"}, "height", "video formats only"),
        ({"height": "240"}, "height", "video formats only"),
        ({"format": "m4a", "video_codec": "h264"}, "video_codec", "h264"),
        ({"format": "mp4", "cover": "frame"}, "cover", "not for video formats"),
    ],
)
def test_a_bad_video_option_names_the_field_and_what_is_allowed(form, field, allowed_part):
    body = invalid(form)
    assert body["field"] == field
    assert allowed_part in body["allowed"]


def test_a_codec_this_server_cannot_encode_is_refused_with_the_offered_ones():
    with pytest.raises(InvalidOption) as info:
        options_from_form({"format": "webm", "video_codec": "av1"}, ("h264", "vp9"))
    assert (info.value.field, info.value.allowed) == ("video_codec", "vp9")


def test_a_format_whose_default_codec_is_not_offered_is_refused():
    with pytest.raises(InvalidOption) as info:
        options_from_form({"format": "mp4"}, ("vp9",))
    assert info.value.field == "video_codec" and "no encoder" in info.value.allowed


def test_audio_formats_need_no_video_codec_at_all():
    assert options_from_form({"format": "opus"}, ()).format == "opus"

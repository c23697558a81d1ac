"""From probe and options to the ffmpeg command (``services.conversion.plan``, ``encode.build_command``,
``loudnorm``): stream choice, rate control per encoder, rates, trim, tags, covers, two-pass loudnorm."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.conversion import loudnorm
from services.conversion.encode import EncodeLimits, build_command, output_sample_rate, rate_control
from services.conversion.plan import (
    carried_tags,
    choose_cover,
    clean_tag,
    cover_time,
    expected_seconds,
    plan_encode,
)
from services.conversion.probe import ALLOWED_DEMUXERS, AudioStream, ProbeResult, VideoStream
from shared.errors import MediaError
from shared.options import FORMATS, ConversionOptions

LIMITS = EncodeLimits(max_duration_seconds=14400, max_output_bytes=512 * 1024 * 1024, timeout_seconds=1800)
SURROUND = AudioStream(index=1, codec="ac3", sample_rate_hz=48000, channels=6, is_default=False)
COMMENTARY = AudioStream(
    index=2,
    codec="aac",
    sample_rate_hz=44100,
    channels=2,
    is_default=True,
    tags={"title": "Director's commentary", "language": "eng"},
)
VIDEO = VideoStream(index=0, codec="h264", is_attached_pic=False)
POSTER = VideoStream(index=3, codec="png", is_attached_pic=True)
TAGS = {
    "title": "Source title",
    "artist": "Source artist",
    "album": "Source album",
    "date": "2021",
    "genre": "Talk",
    "comment": "c",
    "track": "3/12",
    "location": "+48.85+002.29/",
    "encoder": "Lavf",
    "major_brand": "isom",
}
MOVIE = ProbeResult(
    format_name="mov,mp4,m4a,3gp,3g2,mj2",
    duration_seconds=120.0,
    audio_streams=(SURROUND, COMMENTARY),
    video_streams=(VIDEO, POSTER),
    tags=TAGS,
)
SONG = ProbeResult(
    format_name="ogg",
    duration_seconds=200.0,
    audio_streams=(
        AudioStream(
            index=0,
            codec="vorbis",
            sample_rate_hz=32000,
            channels=1,
            is_default=True,
            tags={"title": "Song", "artist": "Band"},
        ),
    ),
)


def plan(probe: ProbeResult = MOVIE, **options):
    return plan_encode(probe, ConversionOptions(**options), default_quality=2, max_duration_seconds=14400)


def argv(probe: ProbeResult = MOVIE, **options) -> list[str]:
    return build_command("/usr/bin/ffmpeg", plan(probe, **options), Path("/w/input"), Path("/w/output.x"), LIMITS)


def values(args: list[str], flag: str) -> list[str]:
    """Every value following ``flag``."""
    return [args[i + 1] for i, arg in enumerate(args[:-1]) if arg == flag]


def value(args: list[str], flag: str) -> str:
    [found] = values(args, flag)
    return found


# --- streams, rates, channels ---------------------------------------------------------------
def test_the_default_stream_is_the_one_marked_default():
    assert plan().audio_index == COMMENTARY.index


def test_audio_track_counts_among_audio_streams_only():
    assert plan(audio_track=0).audio_index == SURROUND.index
    assert plan(audio_track=1).audio_index == COMMENTARY.index


def test_an_audio_track_the_file_lacks_fails_with_its_own_code():
    with pytest.raises(MediaError) as info:
        plan(audio_track=2)
    assert info.value.code == "audio_track_not_found" and "2" in info.value.message


def test_an_undecodable_audio_track_is_unsupported():
    probe = ProbeResult("mov", 1.0, (AudioStream(0, None, 48000, 2, True), COMMENTARY))
    with pytest.raises(MediaError) as info:
        plan(probe, audio_track=0)
    assert info.value.code == "unsupported_codec"


@pytest.mark.parametrize(
    ("fmt", "source_hz", "written_hz"),
    [
        ("mp3", 44100, 44100),
        ("mp3", 96000, 48000),
        ("mp3", 7350, 8000),
        ("mp3", None, 44100),
        ("opus", 44100, 48000),
        ("opus", 22050, 24000),
        ("opus", 8000, 8000),
        ("opus", 96000, 48000),
        ("m4a", 7350, 8000),
        ("m4a", 96000, 96000),
        ("m4a", 192000, 96000),
        ("ogg", 22050, 22050),
        ("flac", 192000, 192000),
        ("wav", 7350, 7350),
        ("wav", None, 44100),
    ],
)
def test_sample_rates_are_coerced_to_what_the_format_carries(fmt, source_hz, written_hz):
    assert output_sample_rate(FORMATS[fmt], source_hz) == written_hz


def test_an_asked_sample_rate_and_channel_count_win():
    chosen = plan(sample_rate=8000, channels=1)
    assert (chosen.sample_rate_hz, chosen.channels) == (8000, 1)


@pytest.mark.parametrize(("track", "channels"), [(0, 2), (1, 2)])
def test_surround_is_downmixed_to_stereo_by_default(track, channels):
    assert plan(audio_track=track).channels == channels
    assert plan(SONG).channels == 1, "mono stays mono"


@pytest.mark.parametrize(
    ("fmt", "options", "expected"),
    [
        ("mp3", {}, ["-q:a", "2"]),
        ("mp3", {"quality": 0}, ["-q:a", "0"]),
        ("mp3", {"quality": 9}, ["-q:a", "9"]),
        ("mp3", {"bitrate": 32}, ["-b:a", "32k"]),
        ("mp3", {"bitrate": 320}, ["-b:a", "320k"]),
        ("m4a", {}, ["-b:a", "190k"]),
        ("m4a", {"bitrate": 96}, ["-b:a", "96k"]),
        ("ogg", {"quality": 0}, ["-q:a", "8"]),
        ("ogg", {}, ["-q:a", "6"]),
        ("ogg", {"quality": 9}, ["-q:a", "0"]),
        ("ogg", {"bitrate": 128}, ["-b:a", "128k"]),
        ("opus", {}, ["-b:a", "95k", "-vbr", "on"]),
        ("opus", {"bitrate": 64}, ["-b:a", "64k", "-vbr", "off"]),
        ("flac", {}, []),
        ("wav", {}, []),
    ],
)
def test_rate_control_per_encoder(fmt, options, expected):
    assert rate_control(FORMATS[fmt], ConversionOptions(format=fmt, **options), 2, channels=2) == expected


def test_opus_bitrates_are_held_to_256_kbps_per_channel():
    assert rate_control(FORMATS["opus"], ConversionOptions(format="opus", bitrate=320), 2, channels=1)[:2] == [
        "-b:a",
        "256k",
    ]
    assert rate_control(FORMATS["opus"], ConversionOptions(format="opus", bitrate=320), 2, channels=2)[:2] == [
        "-b:a",
        "320k",
    ]


# --- the command --------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", [name for name, f in FORMATS.items() if not f.is_video])
def test_every_audio_format_gets_its_encoder_muxer_and_confinement(fmt):
    args = argv(format=fmt, cover="none")
    assert value(args, "-c:a") == FORMATS[fmt].encoder
    assert args[-4:] == ["-f", FORMATS[fmt].muxer, "-y", "file:/w/output.x"]
    assert values(args, "-protocol_whitelist") == ["file"]
    assert values(args, "-format_whitelist") == [",".join(ALLOWED_DEMUXERS)]
    assert {"-nostdin", "-vn", "-sn", "-dn"} <= set(args)
    assert value(args, "-map") == "0:2"
    assert values(args, "-map_metadata:g") == ["-1"] and values(args, "-map_metadata:s") == ["-1"]


def test_muxer_options():
    assert value(argv(format="mp3"), "-id3v2_version") == "4"
    assert value(argv(format="m4a"), "-movflags") == "+faststart"
    assert value(argv(format="flac"), "-sample_fmt") == "s16"


def test_trim_seeks_the_input_in_both_directions():
    args = argv(start=1.5, end=62.25, cover="none")
    assert args.index("-ss") < args.index("-i") and args.index("-to") < args.index("-i")
    assert (float(value(args, "-ss")), float(value(args, "-to"))) == (1.5, 62.25)
    assert "-ss" not in argv(cover="none") and "-to" not in argv(cover="none")


def test_start_past_the_end_fails_before_ffmpeg_runs():
    with pytest.raises(MediaError) as info:
        plan(start=120)
    assert info.value.code == "trim_out_of_range"
    assert plan(start=119, end=5000).end_seconds == 5000, "an end past the media is fine: it ends there"


@pytest.mark.parametrize("form", [{"cover": "frame", "cover_at": 30}, {"format": "flac", "cover": "source"}])
def test_a_cover_never_adds_an_input_to_the_encode(form):
    """The picture is made beside the encode (services/conversion/picture.py): a second input
    would put ffmpeg 5.1 into threaded demuxing, which costs CPU in proportion to the file."""
    args = argv(**form)
    assert values(args, "-i") == ["file:/w/input"] and values(args, "-map") == ["0:2"]
    assert {"-vn", "-sn", "-dn"} <= set(args) and "-c:v" not in args and "-ss" not in args


def test_tags_are_set_one_by_one_with_the_clients_in_place_of_the_sources():
    args = argv(title="New title", cover="none")
    assert sorted(values(args, "-metadata")) == sorted(
        [
            "title=New title",
            "artist=Source artist",
            "album=Source album",
            "date=2021",
            "genre=Talk",
            "comment=c",
            "track=3/12",
        ]
    )


def test_limits_and_progress_stay_on_every_command():
    args = argv(format="opus", start=3)
    assert float(value(args, "-t")) == 14400 and value(args, "-fs") == str(LIMITS.max_output_bytes)
    assert value(args, "-progress") == "pipe:1"


# --- tags ---------------------------------------------------------------------------------------
def test_only_the_carried_tags_come_from_the_source():
    tags = dict(carried_tags(MOVIE, COMMENTARY, ConversionOptions()))
    assert tags == {key: TAGS[key] for key in ("title", "artist", "album", "date", "genre", "comment", "track")}


def test_stream_tags_fill_in_where_the_container_has_none():
    assert dict(carried_tags(SONG, SONG.audio_streams[0], ConversionOptions(album="Live"))) == {
        "title": "Song",
        "artist": "Band",
        "album": "Live",
    }


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("plain", "plain"),
        ("  padded\t", "padded"),
        ("nul\x00byte", "nulbyte"),
        ("bidi\u202eflip", "bidiflip"),
        ("two\nlines", "two\nlines"),
        ("x" * 5000, "x" * 1024),
        ("\x00\x01", ""),
    ],
)
def test_tag_values_are_made_safe_to_pass(raw, clean):
    assert clean_tag(raw) == clean


def test_empty_tags_are_dropped():
    probe = ProbeResult("mov", 1.0, (COMMENTARY,), tags={"title": "  ", "artist": "\x00"})
    assert dict(carried_tags(probe, COMMENTARY, ConversionOptions())) == {"title": "Director's commentary"}


# --- covers -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("probe", "cover", "expected"),
    [
        (MOVIE, None, ("source", POSTER.index)),
        (ProbeResult("mov", 10.0, (COMMENTARY,), (VIDEO,)), None, None),  # a frame only on request
        (SONG, None, None),
        (MOVIE, "frame", ("frame", VIDEO.index)),
        (MOVIE, "source", ("source", POSTER.index)),
        (MOVIE, "none", None),
        (SONG, "frame", None),
        (ProbeResult("mov", 10.0, (COMMENTARY,), (VIDEO,)), "source", None),
    ],
)
def test_cover_choice(probe, cover, expected):
    chosen = choose_cover(probe, ConversionOptions(cover=cover), FORMATS["mp3"])
    if expected is None:
        assert chosen is None
    else:
        kind, index = expected
        assert chosen.index == index and (chosen.at_seconds is None) == (kind == "source")


@pytest.mark.parametrize("fmt", ["opus", "ogg", "wav"])
def test_formats_without_pictures_get_no_cover(fmt):
    assert choose_cover(MOVIE, ConversionOptions(format=fmt, cover="frame"), FORMATS[fmt]) is None


def test_a_plain_video_gets_a_frame_only_when_asked_or_given_a_cover_at():
    plain = ProbeResult("mov", 10.0, (COMMENTARY,), (VIDEO,))
    assert choose_cover(plain, ConversionOptions(), FORMATS["mp3"]) is None
    asked = choose_cover(plain, ConversionOptions(cover="frame"), FORMATS["mp3"])
    timed = choose_cover(plain, ConversionOptions(cover_at=3.0), FORMATS["mp3"])
    assert (asked.index, asked.exact) == (VIDEO.index, False)
    assert (timed.index, timed.at_seconds, timed.exact) == (VIDEO.index, 3.0, True)
    assert choose_cover(plain, ConversionOptions(cover="none", cover_at=3.0), FORMATS["mp3"]) is None


def test_the_default_frame_is_a_keyframe_and_a_named_time_is_exact():
    default = choose_cover(MOVIE, ConversionOptions(cover="frame"), FORMATS["mp3"])
    named = choose_cover(MOVIE, ConversionOptions(cover="frame", cover_at=4.0), FORMATS["mp3"])
    assert (default.at_seconds, default.exact) == (pytest.approx(MOVIE.duration_seconds * 0.1), False)
    assert (named.at_seconds, named.exact) == (4.0, True)


@pytest.mark.parametrize(
    ("duration", "requested", "at"),
    [
        (120.0, None, 12.0),
        (120.0, 30.0, 30.0),
        (120.0, 500.0, 119.5),
        (0.3, None, 0.0),
        (None, None, 0.0),
        (None, 7.0, 7.0),
    ],
)
def test_cover_time_defaults_to_a_tenth_and_stays_within_the_media(duration, requested, at):
    assert cover_time(duration, requested) == pytest.approx(at)


# --- expected duration (progress) ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("duration", "options", "limit", "expected"),
    [
        (120.0, {}, 14400, 120.0),
        (120.0, {"start": 20}, 14400, 100.0),
        (120.0, {"start": 20, "end": 50}, 14400, 30.0),
        (120.0, {"end": 500}, 14400, 120.0),
        (120.0, {}, 60, 60.0),
        (None, {}, 14400, None),
        (None, {"start": 5, "end": 15}, 14400, 10.0),
    ],
)
def test_expected_seconds(duration, options, limit, expected):
    assert expected_seconds(duration, ConversionOptions(**options), limit) == expected


# --- loudnorm -----------------------------------------------------------------------------------
PASS_ONE_LOG = """[Parsed_loudnorm_0 @ 0x55]
{
	"input_i" : "-21.85",
	"input_tp" : "-20.74",
	"input_lra" : "0.00",
	"input_thresh" : "-31.85",
	"output_i" : "-15.97",
	"output_tp" : "-14.91",
	"output_lra" : "0.00",
	"output_thresh" : "-25.97",
	"normalization_type" : "dynamic",
	"target_offset" : "-0.03"
}
"""


def test_the_measurement_is_read_from_pass_ones_log():
    measured = loudnorm.parse_measurement("size=N/A time=00:00:06.01\n" + PASS_ONE_LOG)
    assert measured == loudnorm.Loudness(
        integrated=-21.85, true_peak=-20.74, loudness_range=0.0, threshold=-31.85, offset=-0.03
    )


@pytest.mark.parametrize(
    "log",
    [
        "",
        "no json here",
        PASS_ONE_LOG.replace('"-21.85"', '"-inf"'),
        PASS_ONE_LOG.replace('"target_offset" : "-0.03"', '"target_offset" : "inf"'),
        PASS_ONE_LOG.replace('"input_tp"', '"other"'),
    ],
)
def test_silence_or_a_missing_measurement_means_no_normalisation(log):
    assert loudnorm.parse_measurement(log) is None


def test_pass_two_applies_the_measurement_linearly():
    measured = loudnorm.parse_measurement(PASS_ONE_LOG)
    assert loudnorm.normalize_filter(-16, measured) == (
        "loudnorm=I=-16:TP=-1.5:LRA=11:measured_I=-21.85:measured_TP=-20.74:measured_LRA=0.00"
        ":measured_thresh=-31.85:offset=-0.03:linear=true:print_format=none"
    )


def test_pass_one_measures_the_same_trimmed_confined_stream_into_nothing():
    chosen = plan(start=10, end=20, normalize=-16)
    args = loudnorm.measure_command("ffmpeg", chosen, Path("/w/input"), LIMITS, -16)
    assert value(args, "-protocol_whitelist") == "file" and value(args, "-map") == "0:2"
    assert (float(value(args, "-ss")), float(value(args, "-to"))) == (10, 20)
    assert value(args, "-af") == "loudnorm=I=-16:TP=-1.5:LRA=11:print_format=json"
    assert value(args, "-loglevel") == "info", "loudnorm prints its measurement at info"
    assert args[-3:] == ["-f", "null", "-"] and value(args, "-progress") == "pipe:1"

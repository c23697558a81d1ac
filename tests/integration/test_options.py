"""Every conversion option through the real ffmpeg (``Converter.convert``), on corpus files and inputs
made on the spot; outputs read back with ffprobe (codec, rate, channels, duration) and mutagen (bitrate
mode, tags, pictures, chapters)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import mutagen
import pytest
from mutagen.flac import FLAC
from mutagen.id3 import ID3
from mutagen.mp3 import MP3, BitrateMode
from mutagen.mp4 import MP4

from services.conversion.converter import Converter
from services.conversion.encode import ConversionInterrupted, EncodeResult
from shared.config import load_settings
from shared.errors import MediaError
from shared.options import VIDEO_CODECS, ConversionOptions, options_from_form
from tests.support.processes import live_mentioning
from tests.support.sources import (
    CHAPTERS,
    LEAKY_TAGS,
    SOURCE_TAGS,
    audio_stream,
    duration,
    ffmpeg,
    integrated_loudness,
    make_covered_m4a,
    make_tagged_video,
    make_tone,
    make_two_track_audio,
    probe,
)

pytestmark = pytest.mark.integration

STEREO_8S = "ordinary_h264_aac_stereo_48k_8s.mp4"
MONO_44K_10S = "m4a_aac_lc_mono_44k_10s.m4a"
TWO_TRACKS = "two_audio_tracks_ac3_5.1_plus_aac_stereo.mp4"


@pytest.fixture(scope="module")
def converter(tmp_path_factory) -> Converter:
    return Converter(load_settings(work_dir=tmp_path_factory.mktemp("work")))


@pytest.fixture(scope="module")
def tagged_video(tmp_path_factory) -> Path:
    return make_tagged_video(tmp_path_factory.mktemp("src") / "tagged.mp4")


@pytest.fixture(scope="module")
def covered_m4a(tmp_path_factory) -> Path:
    return make_covered_m4a(tmp_path_factory.mktemp("src") / "covered.m4a")


def convert(converter: Converter, source: Path, target_dir: Path, **form: str) -> tuple[Path, EncodeResult]:
    options = options_from_form(form, VIDEO_CODECS)
    target = target_dir / f"out.{options.output_format.extension}"
    return target, converter.convert(converter.probe(source), source, target, options)


# --- bitrate and quality --------------------------------------------------------------------------
@pytest.mark.parametrize("kbps", [32, 128, 320])
def test_a_bitrate_gives_a_constant_bitrate_mp3(converter, media_dir, tmp_path, kbps):
    target, _ = convert(converter, media_dir / STEREO_8S, tmp_path, bitrate=str(kbps), cover="none")
    info = MP3(target).info
    assert info.bitrate_mode is BitrateMode.CBR, "LAME writes an Info tag, not Xing, for CBR"
    assert info.bitrate == kbps * 1000
    assert target.stat().st_size == pytest.approx(kbps * 1000 / 8 * 8.0, rel=0.05)


@pytest.mark.parametrize("quality", ["0", "9"])
def test_a_quality_gives_a_vbr_mp3(converter, media_dir, tmp_path, quality):
    target, _ = convert(converter, media_dir / STEREO_8S, tmp_path, quality=quality)
    assert MP3(target).info.bitrate_mode is BitrateMode.VBR


def test_the_default_is_vbr_and_quality_0_is_larger_than_9(converter, media_dir, tmp_path):
    sizes = {}
    for quality in ("0", "9", None):
        form = {"quality": quality} if quality else {}
        target, result = convert(converter, media_dir / STEREO_8S, tmp_path, cover="none", **form)
        sizes[quality] = result.size_bytes
        assert MP3(target).info.bitrate_mode is BitrateMode.VBR
    assert sizes["0"] > sizes[None] > sizes["9"]


# --- sample rate and channels ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("rate", "form"), [(8000, {"sample_rate": "8000"}), (48000, {"sample_rate": "48000"}), (44100, {})]
)
def test_sample_rate(converter, media_dir, tmp_path, rate, form):
    target, _ = convert(converter, media_dir / MONO_44K_10S, tmp_path, **form)
    assert int(audio_stream(target)["sample_rate"]) == rate == MP3(target).info.sample_rate


def test_one_channel_from_a_stereo_source(converter, media_dir, tmp_path):
    assert audio_stream(media_dir / STEREO_8S)["channels"] == 2
    target, _ = convert(converter, media_dir / STEREO_8S, tmp_path, channels="1")
    assert audio_stream(target)["channels"] == 1


def test_two_channels_from_a_mono_source(converter, media_dir, tmp_path):
    target, _ = convert(converter, media_dir / MONO_44K_10S, tmp_path, channels="2")
    assert audio_stream(target)["channels"] == 2


# --- trim -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("form", "seconds"),
    [
        ({"start": "2", "end": "5.5"}, 3.5),
        ({"start": "00:00:02.000", "end": "00:00:05.500"}, 3.5),
        ({"start": "00:02", "end": "5.5"}, 3.5),
        ({"start": "6"}, 2.0),
        ({"end": "00:00:01.250"}, 1.25),
        ({"start": "7", "end": "3600"}, 1.0),
    ],
)
def test_trim_in_both_syntaxes_and_past_the_end(converter, media_dir, tmp_path, form, seconds):
    target, result = convert(converter, media_dir / STEREO_8S, tmp_path, **form)
    assert duration(target) == pytest.approx(seconds, abs=0.1)
    assert result.duration_seconds == pytest.approx(seconds, abs=0.1)


def test_a_start_past_the_end_fails_with_its_own_code(converter, media_dir, tmp_path):
    with pytest.raises(MediaError) as info:
        convert(converter, media_dir / STEREO_8S, tmp_path, start="00:01:00")
    assert info.value.code == "trim_out_of_range"


# --- audio track ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("form", "seconds", "channels"), [({}, 4.0, 2), ({"audio_track": "0"}, 2.0, 1), ({"audio_track": "1"}, 4.0, 2)]
)
def test_audio_track_picks_among_the_audio_streams(converter, tmp_path, form, seconds, channels):
    source = make_two_track_audio(tmp_path / "two.mkv")
    target, _ = convert(converter, source, tmp_path, **form)
    assert duration(target) == pytest.approx(seconds, abs=0.1)
    assert audio_stream(target)["channels"] == channels


@pytest.mark.parametrize(("track", "channels"), [("0", 2), ("1", 2)])
def test_audio_track_on_a_real_two_track_file(converter, media_dir, tmp_path, track, channels):
    target, result = convert(converter, media_dir / TWO_TRACKS, tmp_path, audio_track=track)
    assert audio_stream(target)["channels"] == channels and result.duration_seconds > 0


def test_an_audio_track_the_file_lacks_fails_with_its_own_code(converter, media_dir, tmp_path):
    with pytest.raises(MediaError) as info:
        convert(converter, media_dir / STEREO_8S, tmp_path, audio_track="1")
    assert info.value.code == "audio_track_not_found"


# --- formats ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fmt", "codec", "container"),
    [
        ("mp3", "mp3", "mp3"),
        ("m4a", "aac", "mov,mp4,m4a,3gp,3g2,mj2"),
        ("opus", "opus", "ogg"),
        ("ogg", "vorbis", "ogg"),
        ("flac", "flac", "flac"),
        ("wav", "pcm_s16le", "wav"),
    ],
)
def test_every_format_holds_its_codec_for_the_whole_duration(converter, media_dir, tmp_path, fmt, codec, container):
    target, result = convert(converter, media_dir / STEREO_8S, tmp_path, format=fmt)
    facts = probe(target)
    assert facts["format"]["format_name"] == container
    stream = audio_stream(target)
    assert (stream["codec_name"], stream["channels"]) == (codec, 2)
    assert result.duration_seconds == pytest.approx(8.0, abs=0.15)
    assert result.size_bytes == target.stat().st_size and result.speed and result.speed > 0


def opus_input_rate(path: Path) -> int:
    """The rate the Opus encoder was fed (OpusHead's input sample rate, RFC 7845 §5.1); an Ogg Opus
    stream always decodes at 48 kHz, which is what ffprobe reports."""
    head = path.read_bytes()
    at = head.index(b"OpusHead")
    return int.from_bytes(head[at + 12 : at + 16], "little")


@pytest.mark.parametrize(
    ("rate", "channels", "form"),
    [
        (16000, 1, {"sample_rate": "16000", "channels": "1"}),
        (48000, 1, {"bitrate": "320", "channels": "1"}),
        (8000, 2, {"sample_rate": "8000", "quality": "9"}),
    ],
)
def test_opus_rates_and_channels(converter, media_dir, tmp_path, rate, channels, form):
    target, _ = convert(converter, media_dir / STEREO_8S, tmp_path, format="opus", **form)
    assert (opus_input_rate(target), audio_stream(target)["channels"]) == (rate, channels)


@pytest.mark.parametrize(
    ("form", "rate", "channels"),
    [
        ({"format": "m4a", "sample_rate": "22050", "bitrate": "64"}, 22050, 2),
        ({"format": "ogg", "quality": "0", "sample_rate": "32000"}, 32000, 2),
        ({"format": "flac", "sample_rate": "96000"}, 96000, 2),
        ({"format": "wav", "sample_rate": "8000", "channels": "1"}, 8000, 1),
    ],
)
def test_rates_and_channels_in_other_formats(converter, media_dir, tmp_path, form, rate, channels):
    target, _ = convert(converter, media_dir / STEREO_8S, tmp_path, **form)
    stream = audio_stream(target)
    assert (int(stream["sample_rate"]), stream["channels"]) == (rate, channels)


def test_a_44_1_khz_source_becomes_48_khz_opus(converter, media_dir, tmp_path):
    target, _ = convert(converter, media_dir / MONO_44K_10S, tmp_path, format="opus")
    assert int(audio_stream(target)["sample_rate"]) == 48000


def test_flac_and_wav_are_16_bit(converter, media_dir, tmp_path):
    flac, _ = convert(converter, media_dir / STEREO_8S, tmp_path, format="flac")
    assert FLAC(flac).info.bits_per_sample == 16
    wav, _ = convert(converter, media_dir / STEREO_8S, tmp_path, format="wav")
    assert audio_stream(wav)["bits_per_sample"] == 16


# --- tags, chapters, covers -------------------------------------------------------------------------
def test_mp3_carries_the_source_tags_as_id3v2_4_and_nothing_else(converter, tagged_video, tmp_path):
    target, _ = convert(converter, tagged_video, tmp_path)
    tags = ID3(target)
    assert tags.version[:2] == (2, 4)
    assert {frame: str(tags[frame]) for frame in ("TIT2", "TPE1", "TALB", "TDRC", "TCON", "TRCK")} == {
        "TIT2": SOURCE_TAGS["title"],
        "TPE1": SOURCE_TAGS["artist"],
        "TALB": SOURCE_TAGS["album"],
        "TDRC": SOURCE_TAGS["date"],
        "TCON": SOURCE_TAGS["genre"],
        "TRCK": SOURCE_TAGS["track"],
    }
    assert str(tags["TXXX:comment"]) == SOURCE_TAGS["comment"]
    text = " ".join(str(frame) for frame in tags.values())
    for leaked in (*LEAKY_TAGS.values(), "isom", "major_brand"):
        assert leaked not in text


def test_form_fields_override_the_source_tags(converter, tagged_video, tmp_path):
    target, _ = convert(converter, tagged_video, tmp_path, title="New Title", artist="Ünïcode Ärtist", album="A")
    tags = ID3(target)
    assert (str(tags["TIT2"]), str(tags["TPE1"]), str(tags["TALB"])) == ("New Title", "Ünïcode Ärtist", "A")
    assert str(tags["TDRC"]) == SOURCE_TAGS["date"], "tags not overridden stay the source's"


def test_chapters_become_chap_and_ctoc_frames(converter, tagged_video, tmp_path):
    target, _ = convert(converter, tagged_video, tmp_path)
    tags = ID3(target)
    chapters = sorted(tags.getall("CHAP"), key=lambda chap: chap.start_time)
    assert [(str(chap.sub_frames["TIT2"]), chap.start_time, chap.end_time) for chap in chapters] == [
        (title, int(start * 1000), int(end * 1000)) for title, start, end in CHAPTERS
    ]
    [toc] = tags.getall("CTOC")
    assert toc.child_element_ids == [chap.element_id for chap in chapters]


def streams_of_kind(path: Path, kind: str) -> list[dict]:
    return [stream for stream in probe(path)["streams"] if stream["codec_type"] == kind]


def test_a_plain_videos_default_mp3_holds_no_picture_but_a_covered_input_keeps_its_own(
    converter, tagged_video, covered_m4a, tmp_path
):
    (tmp_path / "plain").mkdir(), (tmp_path / "covered").mkdir()
    plain, _ = convert(converter, tagged_video, tmp_path / "plain")
    covered, _ = convert(converter, covered_m4a, tmp_path / "covered")
    assert streams_of_kind(plain, "video") == [] and ID3(plain).getall("APIC") == []
    assert [stream["codec_name"] for stream in streams_of_kind(covered, "video")] == ["mjpeg"]
    assert ID3(covered).getall("APIC")[0].data == bytes(MP4(covered_m4a).tags["covr"][0])


def test_a_video_gets_a_jpeg_frame_as_front_cover_on_request(converter, tagged_video, tmp_path):
    target, _ = convert(converter, tagged_video, tmp_path, cover="frame")
    [picture] = ID3(target).getall("APIC")
    assert picture.mime == "image/jpeg" and picture.type == 3 and picture.data[:2] == b"\xff\xd8"
    assert MP3(target).info.length == pytest.approx(6.0, abs=0.15), "the picture is no audio"


def test_cover_at_picks_another_frame(converter, tagged_video, tmp_path):
    pictures = []
    for at in ("0.5", "00:00:04.5"):
        target, _ = convert(converter, tagged_video, tmp_path, cover="frame", cover_at=at)
        pictures.append(ID3(target).getall("APIC")[0].data)
    assert pictures[0] != pictures[1]


def test_cover_none_embeds_nothing(converter, tagged_video, tmp_path):
    target, _ = convert(converter, tagged_video, tmp_path, cover="none")
    assert ID3(target).getall("APIC") == []


def test_cover_source_keeps_the_attached_picture_as_it_is(converter, covered_m4a, tmp_path):
    source_picture = bytes(MP4(covered_m4a).tags["covr"][0])
    for form in ({}, {"cover": "source"}):
        target, _ = convert(converter, covered_m4a, tmp_path, **form)
        [picture] = ID3(target).getall("APIC")
        assert picture.data == source_picture and picture.mime == "image/jpeg"
    assert str(ID3(target)["TIT2"]) == "Covered"


def test_cover_frame_of_an_audio_file_embeds_nothing(converter, media_dir, tmp_path):
    target, _ = convert(converter, media_dir / MONO_44K_10S, tmp_path, cover="frame")
    assert ID3(target).getall("APIC") == []


def test_m4a_carries_tags_and_a_covr(converter, tagged_video, tmp_path):
    target, _ = convert(converter, tagged_video, tmp_path, format="m4a", title="T", cover="frame")
    tags = MP4(target).tags
    assert (tags["©nam"], tags["©ART"], tags["©alb"], tags["©day"], tags["©gen"], tags["©cmt"]) == (
        ["T"],
        [SOURCE_TAGS["artist"]],
        [SOURCE_TAGS["album"]],
        [SOURCE_TAGS["date"]],
        [SOURCE_TAGS["genre"]],
        [SOURCE_TAGS["comment"]],
    )
    assert tags["trkn"] == [(3, 12)]
    assert bytes(tags["covr"][0])[:2] == b"\xff\xd8"


def test_m4a_is_faststart(converter, tagged_video, tmp_path):
    target, _ = convert(converter, tagged_video, tmp_path, format="m4a")
    head = target.read_bytes()[:200_000]
    assert head.index(b"moov") < head.index(b"mdat"), "+faststart puts the index before the media"


def test_flac_carries_vorbis_comments_and_a_picture(converter, tagged_video, tmp_path):
    target, _ = convert(converter, tagged_video, tmp_path, format="flac", cover="frame")
    flac = FLAC(target)
    assert flac["title"] == [SOURCE_TAGS["title"]] and flac["artist"] == [SOURCE_TAGS["artist"]]
    [picture] = flac.pictures
    assert picture.type == 3 and picture.mime == "image/jpeg"


@pytest.mark.parametrize("fmt", ["opus", "ogg"])
def test_ogg_formats_carry_vorbis_comments_and_no_picture(converter, tagged_video, tmp_path, fmt):
    target, _ = convert(converter, tagged_video, tmp_path, format=fmt, cover="frame", album="Override")
    tags = mutagen.File(target)
    assert tags["title"] == [SOURCE_TAGS["title"]] and tags["album"] == ["Override"]
    assert "metadata_block_picture" not in tags and "location" not in tags
    assert [s["codec_type"] for s in probe(target)["streams"]] == ["audio"]


def test_wav_carries_riff_info_tags_and_no_picture(converter, tagged_video, tmp_path):
    target, _ = convert(converter, tagged_video, tmp_path, format="wav", cover="frame")
    facts = probe(target)
    assert facts["format"]["tags"]["title"] == SOURCE_TAGS["title"]
    assert [s["codec_type"] for s in facts["streams"]] == ["audio"]


# --- normalisation -------------------------------------------------------------------------------------
@pytest.mark.parametrize("target_lufs", [-16.0, -23.0])
def test_normalize_raises_a_quiet_input_to_the_target(converter, tmp_path, target_lufs):
    quiet = tmp_path / "quiet.flac"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=8", "-af", "volume=0.03", str(quiet))
    assert integrated_loudness(quiet) < -35
    target, _ = convert(converter, quiet, tmp_path, normalize=str(target_lufs))
    assert integrated_loudness(target) == pytest.approx(target_lufs, abs=1.0)


def test_normalize_lowers_a_loud_corpus_file_to_the_target(converter, media_dir, tmp_path):
    """Linear normalisation can lower any file; raising one is held back by the true-peak limit
    (this file's peaks are 23 dB above its loudness), which loudnorm never exceeds."""
    source = media_dir / "ordinary_h264_aac_stereo_48k_2997fps_10s.mp4"
    assert integrated_loudness(source) == pytest.approx(-26.2, abs=1.0)
    target, _ = convert(converter, source, tmp_path, normalize="-32")
    assert integrated_loudness(target) == pytest.approx(-32, abs=1.0)


def test_normalize_keeps_the_output_rate_and_leaves_silence_alone(converter, tmp_path):
    silence = tmp_path / "silence.wav"
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=22050:cl=mono", "-t", "2", str(silence))
    target, result = convert(converter, silence, tmp_path, normalize="-16")
    assert int(audio_stream(target)["sample_rate"]) == 22050 and result.duration_seconds == pytest.approx(2, abs=0.1)


# --- progress and cancel ----------------------------------------------------------------------------
def test_progress_rises_to_one(converter, tmp_path):
    source = make_tone(tmp_path / "long.flac", 300, sample_rate_hz=44100)
    fractions: list[float] = []
    converter.convert(converter.probe(source), source, tmp_path / "out.mp3", ConversionOptions(), fractions.append)
    assert fractions == sorted(fractions) and len(fractions) >= 2
    assert 0 <= fractions[0] < 1 and fractions[-1] == pytest.approx(1.0, abs=0.01)


def test_progress_of_a_normalized_trimmed_conversion_runs_through_both_passes(converter, tmp_path):
    source = make_tone(tmp_path / "long.flac", 300, sample_rate_hz=44100)
    fractions: list[float] = []
    options = ConversionOptions(normalize=-16, start=100, end=250)
    converter.convert(converter.probe(source), source, tmp_path / "out.mp3", options, fractions.append)
    assert any(f <= 0.5 for f in fractions) and any(f > 0.5 for f in fractions)
    assert fractions[-1] == pytest.approx(1.0, abs=0.01) and max(fractions) <= 1.0


def test_a_cancel_kills_ffmpeg_within_a_second_and_the_next_conversion_runs(converter, tmp_path):
    source = make_tone(tmp_path / "long.flac", 1200, sample_rate_hz=44100)
    cancelled = threading.Event()
    running = threading.Event()
    probed = converter.probe(source)

    def convert_long():
        with pytest.raises(ConversionInterrupted):
            converter.convert(
                probed,
                source,
                tmp_path / "long.mp3",
                ConversionOptions(sample_rate=48000),
                lambda fraction: running.set(),
                cancelled,
            )

    worker = threading.Thread(target=convert_long)
    worker.start()
    assert running.wait(30)
    started = time.monotonic()
    cancelled.set()
    converter.abort_current()
    worker.join(10)
    assert not worker.is_alive() and time.monotonic() - started < 1.0
    assert live_mentioning(str(tmp_path / "long.mp3")) == []
    short = make_tone(tmp_path / "short.wav", 1)
    result = converter.convert(converter.probe(short), short, tmp_path / "short.mp3", ConversionOptions())
    assert result.duration_seconds > 0, "a cancel is not a shutdown: the converter keeps working"


def test_a_cancel_before_ffmpeg_starts_never_runs_it(converter, media_dir, tmp_path):
    cancelled = threading.Event()
    cancelled.set()
    source = media_dir / STEREO_8S
    with pytest.raises(ConversionInterrupted):
        converter.convert(
            converter.probe(source), source, tmp_path / "out.mp3", ConversionOptions(), cancelled=cancelled
        )
    assert not (tmp_path / "out.mp3").exists()


def test_a_picture_whose_child_crashes_is_dropped_not_the_audio(converter, tagged_video, tmp_path, monkeypatch):
    from services.conversion import picture

    monkeypatch.setattr(picture, "make_picture", lambda source, cover, target: os.abort())  # libav crashing
    target, result = convert(converter, tagged_video, tmp_path, cover="frame")
    assert result.duration_seconds == pytest.approx(6.0, abs=0.15)
    assert ID3(target).getall("APIC") == [] and str(ID3(target)["TIT2"]) == SOURCE_TAGS["title"]
    assert list(tmp_path.glob("*.cover")) == []


def test_a_picture_whose_child_hangs_is_given_up_at_its_deadline(converter, tagged_video, tmp_path, monkeypatch):
    from services.conversion import picture

    monkeypatch.setattr(picture, "PICTURE_TIMEOUT_SECONDS", 1.0)
    monkeypatch.setattr(picture, "make_picture", lambda source, cover, target: time.sleep(120))
    started = time.monotonic()
    target, _ = convert(converter, tagged_video, tmp_path, cover="frame")
    assert time.monotonic() - started < 10
    assert ID3(target).getall("APIC") == [] and MP3(target).info.length == pytest.approx(6.0, abs=0.15)

"""A video job's ffmpeg command (``services.conversion.video``, ``plan.plan_encode``,
``encode.build_command``): the stream choice, the picture filters, encoders, presets, limits."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from services.conversion.encode import EncodeLimits, build_command, cut_command
from services.conversion.plan import VideoInput, plan_encode
from services.conversion.probe import AudioStream, ProbeResult, VideoStream
from services.conversion.video import (
    PRESET_ARGS,
    VideoFacts,
    filter_chain,
    output_pixels,
    parse_video,
    timeout_seconds,
)
from shared.errors import MediaError
from shared.options import PRESETS, ConversionOptions

LIMITS = EncodeLimits(max_duration_seconds=14400, max_output_bytes=512 * 1024 * 1024, timeout_seconds=1800)
STEREO = AudioStream(index=1, codec="aac", sample_rate_hz=44100, channels=2, is_default=True)
CLIP = ProbeResult("mov,mp4", 60.0, (STEREO,), (VideoStream(0, "h264", False),))
SILENT = ProbeResult("mov,mp4", 60.0, (), (VideoStream(0, "h264", False),))
SONG = ProbeResult("mp3", 60.0, (AudioStream(0, "mp3", 44100, 2, True),))
HD = VideoFacts(index=0, width=1920, height=1080, frame_rate=25.0)
ENCODERS = {"h264": "libx264", "hevc": "libx265", "vp9": "libvpx-vp9", "av1": "libsvtav1"}


def command(probe=CLIP, facts=HD, encoder=None, can_tonemap=True, max_pixels=8192 * 4320, **options) -> list[str]:
    chosen = ConversionOptions(**options)
    video = VideoInput(facts, encoder or ENCODERS.get(chosen.codec), can_tonemap, max_pixels)
    plan = plan_encode(probe, chosen, default_quality=2, max_duration_seconds=14400, video=video)
    return build_command("ffmpeg", plan, Path("/w/input"), Path("/w/output.x"), LIMITS)


def values(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, arg in enumerate(args[:-1]) if arg == flag]


def value(args: list[str], flag: str) -> str:
    [found] = values(args, flag)
    return found


def failure(**kwargs) -> str:
    with pytest.raises(MediaError) as info:
        command(**kwargs)
    return info.value.code


@pytest.mark.parametrize(
    ("fmt", "codec", "encoder", "audio", "muxer"),
    [
        ("mp4", None, "libx264", "aac", "mp4"),
        ("mp4", "hevc", "libx265", "aac", "mp4"),
        ("webm", None, "libvpx-vp9", "libopus", "webm"),
        ("webm", "av1", "libsvtav1", "libopus", "webm"),
        ("mkv", "vp9", "libvpx-vp9", "aac", "matroska"),
    ],
)
def test_each_container_gets_its_video_and_audio_encoders_and_muxer(fmt, codec, encoder, audio, muxer):
    args = command(format=fmt, video_codec=codec)
    assert (value(args, "-c:v"), value(args, "-c:a"), args[-3]) == (encoder, audio, muxer)
    assert values(args, "-map") == ["0:0", "0:1"] and "-vn" not in args
    assert value(args, "-fps_mode") == "vfr" and value(args, "-af") == "aresample=async=1:first_pts=0,apad"


def test_mp4_is_faststart_and_hevc_in_mp4_is_tagged_hvc1():
    args = command(format="mp4", video_codec="hevc")
    assert value(args, "-movflags") == "+faststart" and value(args, "-tag:v") == "hvc1"
    assert "-tag:v" not in command(format="mkv", video_codec="hevc")


def test_a_silent_video_gets_an_output_without_audio():
    args = command(probe=SILENT, format="webm")
    assert values(args, "-map") == ["0:0"] and "-c:a" not in args and "-af" not in args


def test_a_silent_video_asked_for_an_audio_track_still_fails_as_before():
    assert failure(probe=SILENT, format="mp4", audio_track=0) == "audio_track_not_found"


def test_an_audio_only_input_asked_for_video_fails_no_video_stream():
    assert failure(probe=SONG, facts=None, format="mp4") == "no_video_stream"


def test_a_frame_over_max_video_pixels_is_too_large():
    assert failure(facts=VideoFacts(0, 30000, 30000), format="mp4") == "too_large"
    assert "-c:v" in command(facts=VideoFacts(0, 3840, 2160), max_pixels=3840 * 2160, format="mp4")


def test_a_worker_without_the_encoder_fails_with_its_own_code():
    with pytest.raises(MediaError) as info:
        plan_encode(CLIP, ConversionOptions(format="mp4"), 2, 14400, VideoInput(HD, None, True, 10**9))
    assert info.value.code == "video_codec_unavailable"


def test_the_default_mp3_takes_no_video_at_all():
    args = command(probe=CLIP)
    assert "-vn" in args and "-c:v" not in args and "-vf" not in args


# --- the picture --------------------------------------------------------------------------------
def test_height_never_upscales_and_keeps_both_sides_even():
    chain = filter_chain(HD, ConversionOptions(format="mp4", height=240), can_tonemap=True)
    assert (
        chain == "setpts='if(eq(N,0),0,PTS)',"
        "scale=w='max(2,trunc(oh*dar/2)*2)':h='trunc(min(240,ih)/2)*2',setsar=1,format=yuv420p"
    )
    assert "min(1080,ih)" in filter_chain(HD, ConversionOptions(format="mp4", height=2160), can_tonemap=True)
    assert "min(1080,ih)" in filter_chain(HD, ConversionOptions(format="mp4"), can_tonemap=True)


def test_a_rotated_input_is_limited_by_its_upright_height():
    portrait = VideoFacts(0, 1920, 1080, rotation=-90)
    assert "min(1920,ih)" in filter_chain(portrait, ConversionOptions(format="mp4", height=4000), True)
    assert portrait.display_aspect() == pytest.approx(1080 / 1920)


def test_interlaced_input_is_deinterlaced_and_progressive_is_not():
    interlaced = VideoFacts(0, 720, 576, field_order="tt")
    assert "bwdif=mode=send_frame" in filter_chain(interlaced, ConversionOptions(format="mp4"), True)
    assert "bwdif" not in filter_chain(VideoFacts(0, 720, 576, field_order="progressive"), ConversionOptions(), True)


def test_hdr_is_tone_mapped_where_zscale_exists_and_always_ends_8bit_420():
    hlg = VideoFacts(0, 1280, 720, pix_fmt="yuv420p10le", color_transfer="arib-std-b67")
    assert "tonemap=tonemap=hable" in filter_chain(hlg, ConversionOptions(format="mp4"), can_tonemap=True)
    without = filter_chain(hlg, ConversionOptions(format="mp4"), can_tonemap=False)
    assert "tonemap" not in without and without.endswith("format=yuv420p")


def test_max_fps_only_slows_a_faster_source():
    assert "fps=30" in filter_chain(
        VideoFacts(0, 640, 360, frame_rate=60.0), ConversionOptions(format="mp4", max_fps=30), True
    )
    assert "fps=" not in filter_chain(
        VideoFacts(0, 640, 360, frame_rate=25.0), ConversionOptions(format="mp4", max_fps=30), True
    )


def test_the_probe_reads_sar_rotation_and_rates():
    facts = parse_video(
        2,
        {
            "width": 720,
            "height": 576,
            "sample_aspect_ratio": "16:15",
            "field_order": "bt",
            "r_frame_rate": "30000/1001",
            "side_data_list": [{}, {"rotation": 90}],
        },
    )
    assert (facts.index, facts.sar, facts.rotation, facts.interlaced) == (2, Fraction(16, 15), 90, True)
    assert facts.frame_rate == pytest.approx(29.97, abs=0.01)
    assert parse_video(0, {"width": 10, "height": 10, "sample_aspect_ratio": "0:1"}).sar == 1


def test_a_stream_without_a_size_is_no_video():
    with pytest.raises(MediaError) as info:
        parse_video(0, {})
    assert info.value.code == "no_video_stream"


def test_output_pixels_follow_the_display_aspect():
    anamorphic = VideoFacts(0, 720, 576, sar=Fraction(64, 45))
    assert output_pixels(anamorphic, 240) == round(240 * 240 * 720 * 64 / 45 / 576)


# --- encoders, rate control, presets ------------------------------------------------------------
@pytest.mark.parametrize(
    ("fmt", "codec", "crf_args"),
    [
        ("mp4", "h264", ["-crf", "23"]),
        ("mp4", "hevc", ["-crf", "28"]),
        ("webm", "vp9", ["-crf", "33", "-b:v", "0"]),
        ("webm", "av1", ["-crf", "35"]),
    ],
)
def test_each_codec_gets_its_default_crf(fmt, codec, crf_args):
    args = command(format=fmt, video_codec=codec)
    start = args.index("-crf")
    assert args[start : start + len(crf_args)] == crf_args


def test_a_video_bitrate_replaces_the_crf():
    args = command(format="webm", video_bitrate=800)
    assert value(args, "-b:v") == "800k" and "-crf" not in args
    assert value(command(format="mp4", crf=18), "-crf") == "18"


@pytest.mark.parametrize("encoder", list(PRESET_ARGS))
def test_every_preset_maps_to_each_encoders_own(encoder):
    assert set(PRESET_ARGS[encoder]) == set(PRESETS)


def test_preset_fastest_is_each_encoders_fastest():
    assert value(command(format="mp4", preset="fastest"), "-preset") == "ultrafast"
    assert value(command(format="webm", preset="fastest"), "-deadline") == "realtime"
    assert value(command(format="webm", video_codec="av1", preset="fastest"), "-preset") == "12"
    aom = command(format="webm", video_codec="av1", encoder="libaom-av1", preset="fastest")
    assert value(aom, "-cpu-used") == "8" and value(aom, "-usage") == "realtime"


# --- the time limit -----------------------------------------------------------------------------
def test_the_timeout_grows_with_duration_codec_and_size():
    assert timeout_seconds(1800, 600, "av1", 1920 * 1080) == 1800 + 600 * 15  # the 10-minute AV1 job
    assert timeout_seconds(1800, 600, "h264", 320 * 240) == 1800 + 600 * 3
    assert timeout_seconds(1800, 600, "av1", 3840 * 2160) == 1800 + 600 * 15 * 4
    assert timeout_seconds(1800, 600, "hevc", 1920 * 1080, "smallest") == 1800 + 600 * 12 * 8
    assert timeout_seconds(1800, 600, "h264", 1920 * 1080, "fastest") == 1800 + 600 * 3 * 0.5
    assert timeout_seconds(1800, None, "h264", 1) == 1800


# --- tracks that start or end apart -----------------------------------------------------------
def test_the_first_picture_starts_at_zero_and_the_audio_is_padded_from_zero():
    args = command(format="mp4")
    assert value(args, "-vf").startswith("setpts='if(eq(N,0),0,PTS)',")
    assert "first_pts=0" in value(args, "-af")


def test_the_audio_ends_with_the_picture_padded_or_cut():
    args = command(format="mp4")
    assert value(args, "-af").endswith(",apad") and "-shortest" in args
    assert "-shortest" not in command(probe=SILENT, format="mp4")


def test_video_outputs_take_48k_audio_unless_asked():
    assert value(command(format="mp4"), "-ar") == "48000"
    assert value(command(format="mkv", sample_rate=44100), "-ar") == "44100"


def test_the_overrun_cut_is_a_confined_stream_copy_up_to_the_picture():
    chosen = ConversionOptions(format="webm")
    plan = plan_encode(CLIP, chosen, 2, 14400, VideoInput(HD, "libvpx-vp9", True, 10**9))
    args = cut_command("ffmpeg", plan, Path("/w/out.webm"), Path("/w/cut.webm"), 2.4)
    assert (
        value(args, "-c") == "copy" and value(args, "-t") == "2.400000" and values(args, "-f") == ["matroska", "webm"]
    )
    assert values(args, "-protocol_whitelist") == ["file"] and args[-3:] == ["webm", "-y", "file:/w/cut.webm"]

"""Video outputs with the real ffmpeg (``services.conversion.video`` through the Converter), on
small inputs made with lavfi for what the corpus lacks: rotation, non-square pixels, 10-bit HDR,
interlacing, a variable frame rate, a silent video, and audio asked to become video."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest

from services.conversion.converter import Converter
from services.conversion.encode import ConversionInterrupted
from shared.config import load_settings
from shared.errors import MediaError
from shared.options import ConversionOptions
from tests.support.processes import live_mentioning
from tests.support.video import ffprobe_json, stream_spans, video_problems

pytestmark = pytest.mark.integration

PICTURE = "testsrc2=size={size}:rate={rate}:duration={seconds}"
TONE = "sine=frequency=440:sample_rate=48000:duration={seconds}"


def make(path: Path, video: str | None, audio: str | None, *options: str) -> Path:
    """Render lavfi ``video`` and/or ``audio`` sources with ``options`` into ``path``."""
    inputs = [arg for source in (video, audio) if source for arg in ("-f", "lavfi", "-i", source)]
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", *inputs, *options, "-y", str(path)], check=True, timeout=120)
    return path


def stream(path: Path, selector: str, entries: str) -> dict:
    [found] = ffprobe_json(path, "-select_streams", selector, "-show_entries", f"stream={entries}")["streams"]
    return found


@pytest.fixture
def converter(tmp_path) -> Converter:
    return Converter(load_settings(work_dir=tmp_path / "work"))


def convert(converter: Converter, source: Path, **options) -> Path:
    chosen = ConversionOptions(**{"preset": "fastest", **options})
    target = source.with_name(f"out-{source.stem}.{chosen.output_format.extension}")
    converter.convert(converter.probe(source), source, target, chosen)
    return target


def test_a_portrait_phone_clip_stays_portrait_without_a_rotation_flag(converter, media_dir, tmp_path):
    # ffmpeg 5.1 cannot write a display matrix (-display_rotation came in 6.0), so a real phone clip:
    # 1280x720 HEVC Main10 HLG with a -90° display matrix.
    source = tmp_path / "phone.MOV"
    source.write_bytes((media_dir / "iphone_hevc_dolbyvision_aac_stereo.MOV").read_bytes())
    assert stream(source, "v:0", "width,height:stream_side_data=rotation")["side_data_list"][-1]["rotation"] == -90
    output = convert(converter, source, format="mp4", height=240)
    assert video_problems(source, output, "h264", "aac", 240) == []
    picture = stream(output, "v:0", "width,height:stream_side_data=rotation")
    assert (picture["width"], picture["height"]) == (134, 240) and "side_data_list" not in picture


def test_non_square_pixels_become_square_at_the_same_display_aspect(converter, tmp_path):
    source = make(
        tmp_path / "pal.mkv",
        PICTURE.format(size="720x576", rate=25, seconds=1) + ",setsar=16/11",
        TONE.format(seconds=1),
        *("-c:v", "libx264", "-c:a", "aac"),
    )
    output = convert(converter, source, format="webm", height=240)
    assert video_problems(source, output, "vp9", "opus", 240) == []
    assert stream(output, "v:0", "width,height,sample_aspect_ratio") == {
        "width": 436,
        "height": 240,
        "sample_aspect_ratio": "1:1",
    }


def test_10_bit_hlg_becomes_8_bit_bt709(converter, tmp_path):
    source = make(
        tmp_path / "hdr.mp4",
        PICTURE.format(size="640x360", rate=25, seconds=1),
        TONE.format(seconds=1),
        *("-c:v", "libx265", "-pix_fmt", "yuv420p10le", "-x265-params", "log-level=error"),
        *("-color_primaries", "bt2020", "-color_trc", "arib-std-b67", "-colorspace", "bt2020nc", "-c:a", "aac"),
    )
    assert stream(source, "v:0", "pix_fmt")["pix_fmt"] == "yuv420p10le"
    output = convert(converter, source, format="mp4", height=240)
    assert video_problems(source, output, "h264", "aac", 240) == []
    picture = stream(output, "v:0", "pix_fmt,color_transfer,profile")
    assert picture["pix_fmt"] == "yuv420p" and picture.get("color_transfer") == "bt709", picture


def test_interlaced_input_is_deinterlaced(converter, tmp_path):
    source = make(
        tmp_path / "tv.ts",
        PICTURE.format(size="720x576", rate=25, seconds=1),
        TONE.format(seconds=1),
        *("-c:v", "libx264", "-flags", "+ilme+ildct", "-top", "1", "-c:a", "aac"),
    )
    assert stream(source, "v:0", "field_order")["field_order"] in ("tt", "tb")
    output = convert(converter, source, format="mkv", video_codec="h264")
    assert video_problems(source, output, "h264", "aac", 576) == []
    assert stream(output, "v:0", "field_order").get("field_order", "progressive") == "progressive"


def test_a_variable_frame_rate_stays_variable_and_in_sync(converter, tmp_path):
    source = make(
        tmp_path / "vfr.mkv",
        PICTURE.format(size="320x240", rate=30, seconds=3) + ",select='lt(mod(n\\,10)\\,6)'",
        TONE.format(seconds=3),
        *("-fps_mode", "vfr", "-c:v", "libx264", "-c:a", "aac"),
    )
    output = convert(converter, source, format="mp4")
    assert video_problems(source, output, "h264", "aac", 240) == []
    counted = ffprobe_json(
        output, "-count_packets", "-select_streams", "v:0", "-show_entries", "stream=nb_read_packets"
    )
    assert int(counted["streams"][0]["nb_read_packets"]) == 54  # 6 of every 10 of 90 frames: none duplicated


def test_a_silent_video_gives_an_output_without_audio(converter, tmp_path):
    source = make(tmp_path / "silent.mp4", PICTURE.format(size="320x240", rate=25, seconds=1), None, "-c:v", "libx264")
    output = convert(converter, source, format="webm", video_codec="av1", height=120)
    assert video_problems(source, output, "av1", None, 120) == []
    assert set(stream_spans(output)) == {"video"}


def test_an_audio_file_asked_for_video_fails_no_video_stream(converter, tmp_path):
    source = make(tmp_path / "tone.m4a", None, TONE.format(seconds=1), "-c:a", "aac")
    with pytest.raises(MediaError) as info:
        convert(converter, source, format="mp4")
    assert info.value.code == "no_video_stream"


@pytest.fixture
def long_clip(tmp_path) -> Path:
    """A 60 s 640x360 clip with a tone: long enough to be cancelled mid-way."""
    return make(
        tmp_path / "long.mkv",
        PICTURE.format(size="640x360", rate=25, seconds=60),
        TONE.format(seconds=60),
        *("-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"),
    )


def test_a_cancel_stops_a_video_job_mid_way_with_its_progress_reported(converter, tmp_path, long_clip):
    cancelled, fractions = threading.Event(), []
    target = tmp_path / "cancelled.webm"

    def progress(fraction: float) -> None:
        fractions.append(fraction)
        if not cancelled.is_set():
            cancelled.set()
            converter.abort_current()

    started = time.monotonic()
    with pytest.raises(ConversionInterrupted):
        converter.convert(
            converter.probe(long_clip), long_clip, target, ConversionOptions(format="webm"), progress, cancelled
        )
    assert fractions and 0 <= fractions[0] < 1 and time.monotonic() - started < 30
    assert live_mentioning(str(target)) == [], "ffmpeg must not outlive a cancel"


def test_a_frame_over_max_video_pixels_fails_too_large_before_ffmpeg_runs(tmp_path, long_clip):
    converter = Converter(load_settings(work_dir=tmp_path / "work", max_video_pixels=640 * 360 - 1))
    target = tmp_path / "bomb.mp4"
    with pytest.raises(MediaError) as info:
        converter.convert(converter.probe(long_clip), long_clip, target, ConversionOptions(format="mp4"))
    assert info.value.code == "too_large" and not target.exists()

"""Video out, through the whole stack (issue #17): every video-bearing file of the media corpus
to mp4/h264 at height 240, and a handful to webm/vp9, mkv/hevc and webm/av1; each output
downloaded and checked with ffprobe (``tests.support.video``): the codecs, height ≤ 240 and
even, display aspect within 1 % of the source's with rotation applied, duration within 3 %, and
audio and video starting within 50 ms and ending within 100 ms of each other. An audio-only file
asked for video fails ``no_video_stream``; bad option values get 400 with ``field`` and ``allowed``.

Everything runs at ``preset=fastest`` and height 240 so the module stays short (its time is in
the final report of #17 and docs/performance.md's test timings are not affected).
"""

from __future__ import annotations

import pytest

from tests.conftest import MEDIA_DIR
from tests.support.media import read_manifest
from tests.support.stack import Stack
from tests.support.video import video_problems

pytestmark = pytest.mark.e2e

HEIGHT = 240
JOBS_TIMEOUT_SECONDS = 600
"""How long all the module's jobs may take on two workers of a loaded 2-core machine, seconds."""

OTHER_CODECS = {
    ("webm", "vp9"): ("ordinary_h264_aac_stereo_48k_faststart_2s.mp4", "iphone_hevc_dolbyvision_aac_stereo.MOV"),
    ("mkv", "hevc"): ("phone_h264_aac_mono_48k_gps_2s.mp4", "no_audio_h264_1s.mp4"),
    ("webm", "av1"): ("mono_h264_aac_44k_1s.mp4", "flv_h264_aac_mono_44k.flv"),
}
"""The handful converted to the other containers and codecs: a plain clip, a rotated HDR phone
clip, a mono phone clip, a silent clip, and an FLV."""

AUDIO_CODEC = {"mp4": "aac", "webm": "opus", "mkv": "aac"}


def video_files(media_dir) -> list[str]:
    """The corpus files with a video stream (MANIFEST.tsv's ``container_codecs`` lists ``v:``)."""
    return sorted(name for name, row in read_manifest(media_dir).items() if " v:" in row["container_codecs"])


def has_audio(media_dir, name: str) -> bool:
    return " a:" in read_manifest(media_dir)[name]["container_codecs"]


@pytest.fixture(scope="module")
def stack(module_stack) -> Stack:
    return module_stack(backend="local", workers=2)


@pytest.fixture(scope="module")
def conversions(stack, media_dir) -> dict[tuple[str, str, str], dict]:
    """Every (file, format, codec) posted at once, then waited for: the final status bodies."""
    wanted = [(name, "mp4", "h264") for name in video_files(media_dir)]
    wanted += [(name, fmt, codec) for (fmt, codec), names in OTHER_CODECS.items() for name in names]
    job_ids = {}
    for name, fmt, codec in wanted:
        fields = {"format": fmt, "video_codec": codec, "height": str(HEIGHT), "preset": "fastest"}
        response = stack.convert(media_dir / name, **fields)
        assert response.status_code == 202, (name, fmt, response.text[:300])
        job_ids[(name, fmt, codec)] = response.json()["job_id"]
    statuses = stack.wait_for_jobs(job_ids.values(), JOBS_TIMEOUT_SECONDS)
    return {key: statuses[job_id] for key, job_id in job_ids.items()}


def test_the_corpus_has_video_files_of_every_kind(media_dir):
    names = video_files(media_dir)
    assert len(names) >= 20 and all(name in names for pair in OTHER_CODECS.values() for name in pair)


def check_output(stack, media_dir, tmp_path, status: dict, name: str, fmt: str, codec: str) -> None:
    assert status["status"] == "completed", (name, fmt, status)
    assert status["download_url"].endswith(f".{fmt}")
    download = stack.download(status["job_id"], fmt)
    media_type = {"mp4": "video/mp4", "webm": "video/webm", "mkv": "video/x-matroska"}[fmt]
    assert download.status_code == 200 and download.headers["Content-Type"] == media_type
    output = tmp_path / f"output.{fmt}"
    output.write_bytes(download.content)
    audio = AUDIO_CODEC[fmt] if has_audio(media_dir, name) else None
    assert video_problems(media_dir / name, output, codec, audio, HEIGHT) == [], name


@pytest.mark.parametrize("name", video_files(MEDIA_DIR) if (MEDIA_DIR / "MANIFEST.tsv").exists() else [])
def test_every_video_file_converts_to_mp4_h264(stack, conversions, media_dir, tmp_path, name):
    check_output(stack, media_dir, tmp_path, conversions[(name, "mp4", "h264")], name, "mp4", "h264")


@pytest.mark.parametrize(
    ("name", "fmt", "codec"),
    [(name, fmt, codec) for (fmt, codec), names in OTHER_CODECS.items() for name in names],
)
def test_a_handful_convert_to_the_other_codecs(stack, conversions, media_dir, tmp_path, name, fmt, codec):
    check_output(stack, media_dir, tmp_path, conversions[(name, fmt, codec)], name, fmt, codec)


def test_a_range_request_on_a_video_gets_its_part(stack, conversions):
    status = conversions[("ordinary_h264_aac_stereo_48k_8s.mp4", "mp4", "h264")]
    whole = stack.download(status["job_id"], "mp4").content
    part = stack.download(status["job_id"], "mp4", Range="bytes=100-199")
    assert part.status_code == 206 and part.content == whole[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(whole)}"


def test_an_audio_only_file_asked_for_video_fails_no_video_stream(stack, media_dir):
    response = stack.convert(media_dir / "m4a_aac_lc_mono_44k_10s.m4a", format="mp4")
    assert response.status_code == 202
    final = stack.wait_for_job(response.json()["job_id"], timeout=120)
    assert (final["status"], final["error"]["code"]) == ("failed", "no_video_stream"), final


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"format": "avi"}, "format"),
        ({"format": "mp4", "video_codec": "vp9"}, "video_codec"),
        ({"format": "mp4", "height": "4"}, "height"),
        ({"format": "webm", "crf": "99"}, "crf"),
        ({"format": "mp4", "preset": "ultrafast"}, "preset"),
        ({"format": "mp3", "height": "240"}, "height"),
    ],
)
def test_bad_video_options_get_400_naming_the_field(stack, media_dir, fields, field):
    response = stack.convert(media_dir / "mono_h264_aac_44k_1s.mp4", **fields)
    assert response.status_code == 400 and response.headers["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("invalid_option", field), error
    assert isinstance(error["allowed"], str) and error["allowed"]

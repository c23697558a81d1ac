"""Conversion options over HTTP against real stacks: validated with 400s that leave nothing behind,
recorded and shown by /status, applied by the workers, downloadable under the format's extension
with its media type; outputs checked with ffprobe and mutagen."""

from __future__ import annotations

import io
from pathlib import Path

import mutagen
import pytest
from mutagen.id3 import ID3
from mutagen.mp3 import MP3, BitrateMode

from shared.options import FORMATS
from tests.support.sources import CHAPTERS, SOURCE_TAGS, audio_stream, duration, make_tagged_video
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

STEREO_8S = "ordinary_h264_aac_stereo_48k_8s.mp4"
CODECS = {"mp3": "mp3", "m4a": "aac", "opus": "opus", "ogg": "vorbis", "flac": "flac", "wav": "pcm_s16le"}
CODECS |= {"mp4": "aac", "webm": "opus", "mkv": "aac"}  # the audio track of the video formats


@pytest.fixture(scope="module")
def stack(module_stack) -> Stack:
    return module_stack("local", workers=2)


@pytest.fixture(scope="module")
def tagged_video(tmp_path_factory) -> Path:
    return make_tagged_video(tmp_path_factory.mktemp("src") / "tagged talk.mp4")


def submit(stack: Stack, path: Path, **fields) -> str:
    response = stack.convert(path, **fields)
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def completed(stack: Stack, job_id: str) -> dict:
    body = stack.wait_for_job(job_id, timeout=90)
    assert body["status"] == "completed", body
    return body


def fetch(stack: Stack, job_id: str, extension: str, tmp_path: Path) -> Path:
    response = stack.download(job_id, extension)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == FORMATS[extension].media_type
    target = tmp_path / f"{job_id}.{extension}"
    target.write_bytes(response.content)
    return target


# --- validation ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"bitrate": "31"}, "bitrate"),
        ({"bitrate": "321"}, "bitrate"),
        ({"quality": "10"}, "quality"),
        ({"quality": "-1"}, "quality"),
        ({"bitrate": "128", "quality": "2"}, "bitrate"),
        ({"sample_rate": "7999"}, "sample_rate"),
        ({"sample_rate": "44100", "format": "opus"}, "sample_rate"),
        ({"channels": "3"}, "channels"),
        ({"start": "00:00:05", "end": "2"}, "end"),
        ({"start": "five"}, "start"),
        ({"audio_track": "-1"}, "audio_track"),
        ({"normalize": "-100"}, "normalize"),
        ({"format": "avi"}, "format"),
        ({"format": "wav", "bitrate": "128"}, "bitrate"),
        ({"cover": "poster"}, "cover"),
        ({"title": "t" * 1025}, "title"),
    ],
)
def test_an_invalid_option_is_a_400_naming_the_field_and_nothing_is_kept(stack, media_dir, fields, field):
    keys_before, records_before = stack.stored_keys(), stack.redis_keys()
    response = stack.convert(media_dir / STEREO_8S, **fields)
    assert response.status_code == 400 and response.headers["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("invalid_option", field), error
    assert isinstance(error["allowed"], str) and error["allowed"] and field in error["message"]
    assert "<html" not in response.text.lower() and "Traceback" not in response.text
    assert stack.stored_keys() == keys_before and stack.redis_keys() == records_before


# --- formats ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def format_jobs(stack, media_dir) -> dict[str, str]:
    """One job per format, submitted together (the workers take them in parallel)."""
    return {fmt: submit(stack, media_dir / STEREO_8S, format=fmt) for fmt in FORMATS}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_each_format_end_to_end(stack, format_jobs, tmp_path, fmt):
    job_id = format_jobs[fmt]
    body = completed(stack, job_id)
    assert body["download_url"] == f"{stack.url}/download/{job_id}.{fmt}"
    assert body.get("options", {}) == ({} if fmt == "mp3" else {"format": fmt}), "the default is not recorded"
    target = fetch(stack, job_id, fmt, tmp_path)
    stream = audio_stream(target)
    assert stream["codec_name"] == CODECS[fmt] and stream["channels"] == 2
    assert duration(target) == pytest.approx(8.0, abs=0.2)
    disposition = stack.download(job_id, fmt).headers["Content-Disposition"]
    assert f'filename="ordinary_h264_aac_stereo_48k_8s.{fmt}"' in disposition
    other = "mp3" if fmt != "mp3" else "wav"
    assert stack.download(job_id, other).status_code == 404, "only the job's own extension exists"
    assert f"jobs/{job_id}/output.{fmt}" in stack.stored_keys()


def test_the_job_record_keeps_options_times_speed_and_full_progress(stack, format_jobs):
    job_id = format_jobs["flac"]
    completed(stack, job_id)
    record = stack.job_record(job_id)
    assert record["options"] == {"format": "flac"} and record["output_key"].endswith("output.flac")
    assert record["started_at"] <= record["finished_at"] and record["progress"] == 100
    assert record["speed"] > 0


# --- rate control, rates, channels, trim ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "check"),
    [
        (
            {"bitrate": "320", "channels": "1", "sample_rate": "48000", "cover": "none"},
            {"mode": BitrateMode.CBR, "bitrate": 320_000, "channels": 1, "rate": 48000, "seconds": 8.0},
        ),
        (
            {"bitrate": "32", "sample_rate": "8000"},
            {"mode": BitrateMode.CBR, "bitrate": 32_000, "channels": 2, "rate": 8000, "seconds": 8.0},
        ),
        (
            {"quality": "0", "start": "00:00:01.500", "end": "4"},
            {"mode": BitrateMode.VBR, "channels": 2, "rate": 48000, "seconds": 2.5},
        ),
        (
            {"quality": "9", "start": "6", "end": "00:10:00"},
            {"mode": BitrateMode.VBR, "channels": 2, "rate": 48000, "seconds": 2.0},
        ),
    ],
)
def test_mp3_options_end_to_end(stack, media_dir, tmp_path, fields, check):
    job_id = submit(stack, media_dir / STEREO_8S, **fields)
    body = completed(stack, job_id)
    assert set(body["options"]) == set(fields)
    info = MP3(fetch(stack, job_id, "mp3", tmp_path)).info
    assert info.bitrate_mode is check["mode"] and info.channels == check["channels"]
    # LAME's delay and padding, as mutagen counts them, are about three frames: 0.2 s at 8 kHz
    assert info.sample_rate == check["rate"] and info.length == pytest.approx(check["seconds"], abs=0.25)
    if "bitrate" in check:
        assert info.bitrate == check["bitrate"]


# --- tracks, tags, cover, chapters ------------------------------------------------------------------------
def test_tags_cover_and_chapters_end_to_end(stack, tagged_video, tmp_path):
    job_id = submit(stack, tagged_video, title="Given title", artist="Given artist", cover="frame")
    assert completed(stack, job_id)["options"] == {"title": "Given title", "artist": "Given artist", "cover": "frame"}
    tags = ID3(fetch(stack, job_id, "mp3", tmp_path))
    assert tags.version[:2] == (2, 4)
    assert (str(tags["TIT2"]), str(tags["TPE1"]), str(tags["TALB"])) == (
        "Given title",
        "Given artist",
        SOURCE_TAGS["album"],
    )
    [picture] = tags.getall("APIC")
    assert picture.mime == "image/jpeg" and picture.type == 3
    assert sorted(str(chap.sub_frames["TIT2"]) for chap in tags.getall("CHAP")) == sorted(t for t, _, _ in CHAPTERS)


def test_ogg_vorbis_keeps_tags_and_skips_the_cover(stack, tagged_video, tmp_path):
    job_id = submit(stack, tagged_video, format="ogg", cover="frame", quality="4")
    completed(stack, job_id)
    ogg = mutagen.File(fetch(stack, job_id, "ogg", tmp_path))
    assert ogg["artist"] == [SOURCE_TAGS["artist"]] and "metadata_block_picture" not in ogg


def test_audio_track_selects_and_a_missing_one_fails_with_its_code(stack, media_dir, tmp_path):
    source = media_dir / "two_audio_tracks_ac3_5.1_plus_aac_stereo.mp4"
    chosen = submit(stack, source, audio_track="1")
    missing = submit(stack, source, audio_track="2")
    assert completed(stack, chosen)["options"] == {"audio_track": 1}
    failed = stack.wait_for_job(missing, timeout=60)
    assert failed["status"] == "failed" and failed["error"]["code"] == "audio_track_not_found", failed
    assert f"jobs/{missing}/output.mp3" not in stack.stored_keys()


def test_a_start_past_the_end_fails_with_its_code(stack, media_dir):
    job_id = submit(stack, media_dir / STEREO_8S, start="00:00:30")
    failed = stack.wait_for_job(job_id, timeout=60)
    assert failed["status"] == "failed" and failed["error"]["code"] == "trim_out_of_range", failed


def test_normalize_end_to_end(stack, media_dir, tmp_path):
    job_id = submit(stack, media_dir / "ordinary_h264_aac_stereo_48k_2997fps_10s.mp4", normalize="-30", format="m4a")
    assert completed(stack, job_id)["options"] == {"normalize": -30.0, "format": "m4a"}
    from tests.support.sources import integrated_loudness

    assert integrated_loudness(fetch(stack, job_id, "m4a", tmp_path)) == pytest.approx(-30, abs=1.0)


# --- the S3 backend --------------------------------------------------------------------------------------
def test_options_on_the_s3_backend(module_stack, media_dir, tmp_path):
    s3 = module_stack("s3", workers=1)
    job_id = submit(s3, media_dir / "m4a_aac_lc_mono_44k_10s.m4a", format="opus", bitrate="64", end="5")
    body = completed(s3, job_id)
    assert body["download_url"].endswith(f"/download/{job_id}.opus")
    target = fetch(s3, job_id, "opus", tmp_path)
    assert audio_stream(target)["codec_name"] == "opus" and duration(target) == pytest.approx(5.0, abs=0.15)
    assert f"jobs/{job_id}/output.opus" in s3.stored_keys()
    ranged = s3.download(job_id, "opus", Range="bytes=0-3")
    assert ranged.status_code == 206 and ranged.content == b"OggS"


def test_an_upload_with_options_before_the_file_part_works_too(stack, media_dir):
    """Form fields may come before or after the file part; both orders parse."""
    import requests

    with open(media_dir / STEREO_8S, "rb") as f:
        body = io.BytesIO(f.read())
    response = requests.post(
        f"{stack.url}/convert",
        files=[("format", (None, "wav")), ("file", ("a.mp4", body)), ("channels", (None, "1"))],
        timeout=60,
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    assert completed(stack, job_id)["options"] == {"format": "wav", "channels": 1}

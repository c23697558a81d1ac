"""The upload's first-bytes verdict (``shared/sniff.py``) lets through every audio and video format
siphon's demuxers read, as FFmpeg writes them: a false "not media" would refuse a real file."""

from __future__ import annotations

import subprocess

import pytest

from shared.sniff import SNIFF_BYTES, not_media_kind
from tests.support.sources import ffmpeg

pytestmark = pytest.mark.integration

TONE = ("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=8000:duration=0.5")
PICTURE = ("-f", "lavfi", "-i", "testsrc=size=64x48:rate=5:duration=0.5")

OUTPUTS = {
    # file name: ffmpeg arguments after the inputs (audio only unless the name says video)
    "tone.wav": ("-c:a", "pcm_s16le"),
    "tone.w64": ("-c:a", "pcm_s16le"),
    "tone.aiff": ("-c:a", "pcm_s16be"),
    "tone.caf": ("-c:a", "pcm_s16le"),
    "tone.au": ("-c:a", "pcm_s16be"),
    "tone.mp3": ("-c:a", "libmp3lame", "-write_xing", "0", "-id3v2_version", "0"),
    "tone-id3.mp3": ("-c:a", "libmp3lame"),
    "tone.aac": ("-c:a", "aac", "-ar", "16000"),
    "tone.m4a": ("-c:a", "aac", "-ar", "16000"),
    "tone.ac3": ("-c:a", "ac3", "-ar", "48000"),
    "tone.flac": ("-c:a", "flac"),
    "tone.ogg": ("-c:a", "libvorbis"),
    "tone.opus": ("-c:a", "libopus", "-ar", "48000"),
    "tone.wv": ("-c:a", "wavpack"),
    "tone.tta": ("-c:a", "tta"),
    "tone.amr": ("-c:a", "libopencore_amrnb", "-ar", "8000"),
    "tone.mka": ("-c:a", "flac"),
    "video.mp4": ("-c:v", "mpeg4", "-c:a", "aac", "-ar", "16000"),
    "video.mov": ("-c:v", "mpeg4", "-c:a", "aac", "-ar", "16000"),
    "video.mkv": ("-c:v", "mpeg4", "-c:a", "flac"),
    "video.webm": ("-c:v", "libvpx", "-c:a", "libvorbis"),
    "video.avi": ("-c:v", "mpeg4", "-c:a", "libmp3lame"),
    "video.flv": ("-c:v", "flv", "-c:a", "libmp3lame", "-ar", "22050"),
    "video.ts": ("-c:v", "mpeg2video", "-c:a", "mp2", "-ar", "48000"),
    "video.mpg": ("-c:v", "mpeg2video", "-c:a", "mp2", "-ar", "48000"),
    "video.asf": ("-c:v", "wmv2", "-c:a", "wmav2"),
    "video.3gp": ("-c:v", "h263", "-s", "176x144", "-c:a", "aac", "-ar", "8000"),
    "video-mjpeg.avi": ("-c:v", "mjpeg", "-c:a", "pcm_s16le"),
}


@pytest.mark.parametrize("name", sorted(OUTPUTS))
def test_what_ffmpeg_writes_is_never_judged_not_media(name, tmp_path):
    target = tmp_path / name
    inputs = (*PICTURE, *TONE) if name.startswith("video") else TONE
    try:
        ffmpeg(*inputs, *OUTPUTS[name], "-shortest", str(target))
    except subprocess.CalledProcessError as exc:  # an encoder this FFmpeg build lacks: nothing to judge
        pytest.skip(f"this FFmpeg cannot write {name}: {exc.stderr.decode(errors='replace').strip()}")
    assert not_media_kind(target.read_bytes()[:SNIFF_BYTES]) is None

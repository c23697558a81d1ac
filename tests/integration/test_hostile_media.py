"""Hostile files against the real ffprobe and ffmpeg, without a stack (issue 3, items 11 and 13).

The pointer files are checked live first: an FFmpeg allowed the network does call the loopback
listener, so the confined runs below prove the confinement, not a broken file.
"""

from __future__ import annotations

import random
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from services.conversion import media_codes as codes
from services.conversion.converter import Converter
from services.conversion.probe import ALLOWED_DEMUXERS
from shared.config import load_settings
from shared.errors import MediaError
from tests.support.hostile import (
    LoopbackListener,
    avi_carrying_playlist,
    corrupt_moov_copy,
    ffconcat_script,
    hls_playlist,
    pcm_tone,
    truncated_copy,
)

pytestmark = pytest.mark.integration

POINTERS = {"hls": hls_playlist, "ffconcat": ffconcat_script}
UNCONFINED = {  # what it takes for FFmpeg 5.1 to follow each pointer file
    "hls": ["-protocol_whitelist", "file,http,tcp", "-allowed_segment_extensions", "ALL"],
    "ffconcat": ["-protocol_whitelist", "file,http,tcp", "-safe", "0"],
}


@pytest.fixture
def secret(tmp_path) -> tuple[Path, bytes]:
    """A local file holding a unique marker: ``(path, marker)``."""
    marker = f"SIPHON-SECRET-{uuid.uuid4().hex}".encode()
    path = tmp_path / "secret.txt"
    path.write_bytes(marker + b"\n")
    return path, marker


@pytest.fixture
def listener():
    with LoopbackListener() as server:
        yield server


@pytest.fixture
def converter() -> Converter:
    return Converter(load_settings())


def convert(converter: Converter, source: Path) -> Path:
    """Probe and encode ``source``; return the MP3 written beside it."""
    target = source.with_name("output.mp3")
    converter.to_mp3(converter.probe(source), source, target)
    return target


def connections_after_a_moment(listener: LoopbackListener) -> list:
    time.sleep(0.3)  # a connection FFmpeg opened is accepted within the listener's 0.2 s tick
    return listener.connections


@pytest.mark.parametrize("kind", sorted(POINTERS))
def test_pointer_file_is_live_when_ffmpeg_may_use_the_network(kind, tmp_path, secret, listener):
    source = tmp_path / "clip.mp4"
    source.write_bytes(POINTERS[kind](secret[0], listener.url()))
    subprocess.run(["ffprobe", "-v", "quiet", *UNCONFINED[kind], str(source)], timeout=30, check=False)
    assert len(connections_after_a_moment(listener)) == 1


def test_gab2_chunk_is_opened_as_a_second_file_by_ffmpeg(tmp_path):
    srt = b"1\n00:00:00,000 --> 00:00:01,000\nhello\n\n"
    source = tmp_path / "subtitled.avi"
    source.write_bytes(avi_carrying_playlist(srt))
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0", str(source)],
        capture_output=True,
        timeout=30,
        check=True,
    )
    assert done.stdout.decode().split() == ["subrip"]


@pytest.mark.parametrize(
    ("kind", "code"),
    [("hls", codes.UNSUPPORTED_FORMAT), ("ffconcat", codes.UNSUPPORTED_FORMAT), ("avi", codes.NO_AUDIO_STREAM)],
)
def test_pointer_file_is_refused_without_opening_what_it_names(kind, code, tmp_path, secret, listener, converter):
    playlist = hls_playlist(secret[0], listener.url())
    contents = avi_carrying_playlist(playlist) if kind == "avi" else POINTERS[kind](secret[0], listener.url())
    source = tmp_path / "clip.mp4"
    source.write_bytes(contents)
    with pytest.raises(MediaError) as refused:
        convert(converter, source)
    assert refused.value.code == code
    assert connections_after_a_moment(listener) == []
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("output")] == []


def test_avi_with_audio_and_a_playlist_converts_only_its_audio(tmp_path, secret, listener, converter):
    source = tmp_path / "clip.mp4"
    source.write_bytes(avi_carrying_playlist(hls_playlist(secret[0], listener.url()), pcm_tone(1.0)))
    mp3 = convert(converter, source)
    assert secret[1] not in mp3.read_bytes()
    assert secret[1] not in mp3.with_suffix(".ffmpeg.log").read_bytes()
    assert connections_after_a_moment(listener) == []


def test_allow_list_holds_no_demuxer_that_opens_other_files():
    opens_others = {
        "hls",
        "applehttp",
        "concat",
        "image2",
        "image2pipe",
        "tee",
        "data",
        "lavfi",
        "subfile",
        "dash",
        "mpd",
        "webm_dash_manifest",
        "sdp",
        "rtsp",
        "rtp",
        "srtp",
        "sap",
        "libopenmpt",
    }
    assert opens_others.isdisjoint(ALLOWED_DEMUXERS)


@pytest.mark.parametrize("seed", range(20))
def test_random_bytes_are_not_media(seed, tmp_path, converter):
    source = tmp_path / "random.mp4"
    source.write_bytes(random.Random(seed).randbytes(1024 * (seed + 1) * 3))  # seeded: the same bytes every run
    with pytest.raises(MediaError) as refused:
        convert(converter, source)
    # Some random runs look enough like a demuxer outside the allow-list for ffprobe's guess to pick
    # it: refused as that format, which is as specific and as final as "not media".
    assert refused.value.code in (codes.NOT_MEDIA, codes.UNSUPPORTED_FORMAT)


@pytest.mark.parametrize(
    "name",
    [
        "ordinary_h264_aac_stereo_48k_8s.mp4",  # moov first: cut in mdat
        "ordinary_h264_aac_stereo_48k_2997fps_10s.mp4",
        "fmp4_h264_aac_stereo_48k_15s.mp4",  # fragmented
        "moov_at_end_h264_aac_stereo_44k_10s.mp4",  # the index is cut off
        "mono_h264_aac_44k_1s.mp4",
        "webm_vp9_opus_no_duration.webm",
    ],
)
def test_file_cut_in_half_is_truncated_not_half_converted(name, media_dir, tmp_path, converter):
    source = truncated_copy(media_dir / name, tmp_path / "half")
    with pytest.raises(MediaError) as refused:
        convert(converter, source)
    assert refused.value.code == codes.TRUNCATED


def test_mp4_without_its_index_is_corrupt(media_dir, tmp_path, converter):
    source = corrupt_moov_copy(media_dir / "ordinary_h264_aac_stereo_48k_8s.mp4", tmp_path / "corrupt.mp4")
    with pytest.raises(MediaError) as refused:
        convert(converter, source)
    assert refused.value.code == codes.CORRUPT

"""Choosing the audio stream from a probe result (``services.conversion.probe``), without ffprobe."""

from __future__ import annotations

import pytest

from services.conversion.probe import AudioStream, ProbeResult, _parse
from shared.errors import MediaError


def stream(index: int, codec: str | None = "aac", default: bool = False) -> AudioStream:
    return AudioStream(index=index, codec=codec, sample_rate_hz=48000, channels=2, is_default=default)


def probe(*streams: AudioStream) -> ProbeResult:
    return ProbeResult(format_name="matroska,webm", duration_seconds=4.0, audio_streams=streams)


def test_the_default_decodable_stream_wins():
    assert probe(stream(1), stream(2, default=True)).default_audio().index == 2


def test_without_a_default_the_first_decodable_stream_is_used():
    assert probe(stream(1, codec=None, default=True), stream(3), stream(4)).default_audio().index == 3


@pytest.mark.parametrize(
    ("streams", "code"),
    [
        ((), "no_audio_stream"),
        ((stream(0, codec=None), stream(1, codec=None)), "unsupported_codec"),
    ],
)
def test_no_usable_stream_is_a_media_error(streams, code):
    with pytest.raises(MediaError) as info:
        probe(*streams).default_audio()
    assert info.value.code == code


def test_the_demuxer_is_the_first_format_alias():
    assert probe().demuxer == "matroska"


def test_ffprobe_json_is_parsed_keeping_only_audio():
    result = _parse(
        {
            "format": {"format_name": "mov,mp4,m4a,3gp,3g2,mj2", "duration": "8.000000"},
            "streams": [
                {"index": 0, "codec_type": "video", "codec_name": "h264"},
                {
                    "index": 1,
                    "codec_type": "audio",
                    "codec_name": "aac",
                    "sample_rate": "48000",
                    "channels": 2,
                    "disposition": {"default": 1},
                },
                {"index": 2, "codec_type": "audio", "channels": 2},
            ],
        }
    )
    assert result.duration_seconds == 8.0
    assert result.audio_streams == (AudioStream(1, "aac", 48000, 2, True), AudioStream(2, None, None, 2, False))


def test_an_unknown_duration_is_none():
    assert _parse({"format": {"format_name": "matroska,webm", "duration": "N/A"}}).duration_seconds is None


def test_facts_describe_the_chosen_stream():
    chosen = stream(1, default=True)
    facts = probe(chosen).facts(chosen)
    assert (facts.container, facts.audio_codec, facts.sample_rate_hz, facts.channels) == (
        "matroska,webm",
        "aac",
        48000,
        2,
    )
    assert probe().facts().audio_codec is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"PK\x03\x04" + bytes(300), "The file is not a video or audio file. It looks like a ZIP archive."),
        (b"\x00\x01 neither media nor anything known\n" * 20, "The file is not a video or audio file."),
    ],
)
def test_a_file_no_demuxer_reads_is_not_media_named_by_its_head(tmp_path, data, message):
    from services.conversion.probe import explain_unreadable

    path = tmp_path / "upload"
    path.write_bytes(data)
    error = explain_unreadable(path, "Invalid data found when processing input")
    assert (error.code, str(error)) == ("not_media", message)

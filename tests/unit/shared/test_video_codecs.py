"""Which video codecs a deployment offers (``shared.video_codecs``): an explicit list, or what a
(fake) ffmpeg's ``-encoders`` lists."""

from __future__ import annotations

import stat

from shared.video_codecs import encoder_for, ffmpeg_filters, offered_video_codecs

ENCODERS = """Encoders:
 V..... = Video
 ------
 V....D libx264              libx264 H.264 / AVC / MPEG-4 AVC / MPEG-4 part 10 (codec h264)
 V....D libaom-av1           libaom AV1 (codec av1)
 A..... aac                  AAC (Advanced Audio Coding)
"""
FILTERS = """Filters:
  T.. = Timeline support
 TS. bwdif             V->V       Deinterlace the input image.
 ..C scale             V->V       Scale the input video size and/or convert the image format.
"""


def fake_ffmpeg(tmp_path) -> str:
    script = tmp_path / "ffmpeg"
    script.write_text(
        f'#!/bin/sh\nif [ "$2" = "-encoders" ]; then cat <<"EOF"\n{ENCODERS}EOF\nelse cat <<"EOF"\n{FILTERS}EOF\nfi\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_auto_offers_what_the_ffmpeg_encodes_taking_the_encoder_it_has(tmp_path):
    ffmpeg = fake_ffmpeg(tmp_path)
    assert offered_video_codecs("auto", ffmpeg) == ("h264", "av1")
    assert encoder_for("av1", ffmpeg) == "libaom-av1" and encoder_for("vp9", ffmpeg) is None


def test_the_filters_are_listed_without_the_legend(tmp_path):
    assert ffmpeg_filters(fake_ffmpeg(tmp_path)) == {"bwdif", "scale"}


def test_an_explicit_list_is_taken_as_given_in_a_fixed_order(tmp_path):
    assert offered_video_codecs("av1,h264", str(tmp_path / "absent")) == ("h264", "av1")
    assert offered_video_codecs("", "ffmpeg") == ()


def test_no_ffmpeg_offers_nothing(tmp_path):
    assert offered_video_codecs("auto", str(tmp_path / "absent")) == ()

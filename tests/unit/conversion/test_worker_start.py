"""What a conversion worker asks its ffmpeg at start (``services.conversion.__main__``): the video
codecs and the filters, once, so its first video job spawns no listing of its own."""

from __future__ import annotations

import logging
import stat

from services.conversion.__main__ import log_video_codecs
from shared.config import load_settings
from shared.video_codecs import ffmpeg_encoders, ffmpeg_filters
from tests.unit.shared.test_video_codecs import ENCODERS, FILTERS


def counting_ffmpeg(tmp_path) -> tuple[str, object]:
    """A fake ffmpeg that lists ENCODERS or FILTERS and appends its arguments to ``calls``."""
    calls = tmp_path / "calls"
    script = tmp_path / "ffmpeg"
    script.write_text(
        f'#!/bin/sh\necho "$@" >> {calls}\n'
        f'if [ "$2" = "-encoders" ]; then cat <<"EOF"\n{ENCODERS}EOF\nelse cat <<"EOF"\n{FILTERS}EOF\nfi\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script), calls


def test_the_worker_lists_encoders_and_filters_at_start_and_jobs_reuse_them(tmp_path, caplog):
    ffmpeg, calls = counting_ffmpeg(tmp_path)
    with caplog.at_level(logging.INFO):
        log_video_codecs(load_settings(ffmpeg_path=ffmpeg, video_codecs="auto"))
    assert "HDR input is not tone-mapped: this ffmpeg has no zscale" in caplog.text
    ffmpeg_filters(ffmpeg), ffmpeg_encoders(ffmpeg)  # what a video job asks
    assert calls.read_text().splitlines() == ["-hide_banner -encoders", "-hide_banner -filters"]

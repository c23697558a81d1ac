"""The forked libav probe against ffprobe on every file of the corpus (services/conversion/probe.py).

The probe reads files with PyAV's libav in a forked child and leaves what that child cannot read to
ffprobe. What the plan depends on (demuxer, streams, codecs, rates, channels, dispositions, the
tags siphon carries) must be what ffprobe, the reference, reports; durations may differ where the
newer libav reads a file's fragments instead of trusting its header.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from services.conversion import probe as probe_module
from services.conversion.plan import CARRIED_TAGS
from services.conversion.probe import PROBE_ENTRIES, ProbeResult, _parse, probe_media, run_ffprobe
from shared.errors import MediaError

pytestmark = pytest.mark.integration


def ffprobe_verdict(path: Path, monkeypatch) -> ProbeResult | str:
    """What siphon makes of ``path`` with ffprobe alone (the child refuses every file): its probe
    result, or the error code it gives."""

    def refuse(path: str) -> dict:
        raise ValueError("left to ffprobe")

    with monkeypatch.context() as patch:
        patch.setattr(probe_module, "libav_probe", refuse)
        return verdict(path)


def verdict(path: Path) -> ProbeResult | str:
    try:
        return probe_media(path)
    except MediaError as exc:
        return exc.code


def plan_facts(result: ProbeResult) -> tuple:
    """What a plan reads from a probe result, durations and uncarried tags left out."""

    def carried(tags: dict[str, str]) -> dict[str, str]:
        return {key: value for key, value in tags.items() if key in CARRIED_TAGS}

    audio = [  # a stream without a decoder is refused, whatever its rate and channels
        (s.index, s.codec, s.sample_rate_hz if s.codec else None, s.channels if s.codec else None, s.is_default)
        + (carried(s.tags),)
        for s in result.audio_streams
    ]
    return result.format_name, audio, result.video_streams, carried(result.tags)


def corpus(media_dir: Path) -> list[Path]:
    return sorted(p for p in media_dir.iterdir() if p.suffix != ".tsv" and p.stat().st_size > 0)


def test_every_corpus_file_gets_ffprobes_verdict(media_dir, monkeypatch):
    differences = {}
    for path in corpus(media_dir):
        expected, got = ffprobe_verdict(path, monkeypatch), verdict(path)
        if isinstance(expected, str) or isinstance(got, str):
            same = expected == got
        else:
            same = plan_facts(expected) == plan_facts(got)
        if not same:
            differences[path.name] = (expected, got)
    assert differences == {}


def test_durations_agree_where_the_header_is_honest(media_dir, monkeypatch):
    path = media_dir / "m4a_aac_lc_mono_44k_10s.m4a"
    reference = ffprobe_verdict(path, monkeypatch).duration_seconds
    assert probe_media(path).duration_seconds == pytest.approx(reference, abs=0.001)


def test_a_probe_child_that_crashes_leaves_the_file_to_ffprobe(media_dir, monkeypatch):
    path = media_dir / "ordinary_h264_aac_stereo_48k_8s.mp4"
    reference = ffprobe_verdict(path, monkeypatch)
    monkeypatch.setattr(probe_module, "libav_probe", lambda path: os.abort())
    assert probe_media(path) == reference


def test_the_child_answers_in_ffprobes_json_shape(media_dir):
    path = media_dir / "two_audio_tracks_ac3_5.1_plus_aac_stereo.mp4"
    done = run_ffprobe("ffprobe", path, "-show_entries", PROBE_ENTRIES)
    reference = _parse(json.loads(done.stdout))
    answer = probe_module.libav_probe(str(path))
    assert set(answer) == {"format", "streams"} and _parse(answer).audio_streams[1].codec == "aac"
    assert plan_facts(_parse(answer)) == plan_facts(reference)

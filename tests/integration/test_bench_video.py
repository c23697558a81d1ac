"""The benchmark's video phase (bench/video.py) on real ffmpeg: its inputs are distinct files of the
same picture, made once; its plain command is the worker's (libx264 ultrafast into MP4) and runs."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess

import pytest

from bench.video import VideoProfile, VideoResults, ensure_video_inputs, plain_video_run, siphon_command
from shared.config import load_settings

TINY = VideoProfile("tiny", 1, "160x90", 200, 10, 3)


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def streams(path) -> list[dict]:
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,codec_type,height", "-of", "json", str(path)],
        capture_output=True,
        check=True,
        timeout=30,
    )
    return json.loads(done.stdout)["streams"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return ensure_video_inputs(TINY, tmp_path_factory.mktemp("bench"))


def test_the_inputs_are_distinct_files_of_the_same_streams_made_once(inputs):
    assert len(inputs) == TINY.jobs
    assert len({sha256(i.path) for i in inputs}) == TINY.jobs
    assert all(streams(i.path) == streams(inputs[0].path) for i in inputs)
    stamps = [i.path.stat().st_mtime_ns for i in inputs]
    again = ensure_video_inputs(TINY, inputs[0].path.parent.parent)
    assert [i.path for i in again] == [i.path for i in inputs]
    assert [i.path.stat().st_mtime_ns for i in again] == stamps


def test_the_plain_command_is_the_workers_mp4_h264_at_its_fastest_preset_and_runs(inputs, tmp_path):
    target = tmp_path / "plain.mp4"
    command = siphon_command(load_settings(), inputs[0].path, target)
    assert ["-c:v", "libx264"] == command[command.index("-c:v") : command.index("-c:v") + 2]
    assert ["-preset", "ultrafast"] == command[command.index("-preset") : command.index("-preset") + 2]
    assert command[-1] == f"file:{target}" and "+faststart" in command
    subprocess.run(command, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, timeout=60)
    kinds = {s["codec_type"]: s["codec_name"] for s in streams(target)}
    assert kinds == {"video": "h264", "audio": "aac"}


def test_a_plain_run_reports_the_cpu_ffmpeg_spent(inputs, tmp_path):
    command = siphon_command(load_settings(), inputs[0].path, tmp_path / "plain.mp4")
    wall, cpu = plain_video_run(command)
    assert (tmp_path / "plain.mp4").stat().st_size > 0
    assert 0 < cpu <= wall * (os.cpu_count() or 1) + 0.05  # ffmpeg's own, not this process's


def test_ratio_and_efficiency_are_medians_of_the_runs():
    results = VideoResults("clip", 8, 2, [2.0, 9.0, 2.2], [2.1, 2.3, 2.2], [10.0, 11.0], [12.0, 10.0])
    assert results.ratio == pytest.approx(2.2 / 2.2)
    assert results.efficiency == pytest.approx(10.5 / 11.0)

"""The ``siphon`` command, as installed with the project, against a running stack: an open one, and
one with API keys (``keyed_stack``), where a key from ``siphon keys new`` gets in and a missing or
wrong key is one line and exit 6."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.support.keys import KeyFile
from tests.support.media import (
    DURATION_TOLERANCE_FLOOR_SECONDS,
    DURATION_TOLERANCE_RATIO,
    probe_audio,
    reference_mp3_seconds,
)
from tests.support.net import free_port, wait_until

pytestmark = pytest.mark.e2e

SIPHON = Path(sys.executable).parent / "siphon"
VIDEO = "ordinary_h264_aac_stereo_48k_8s.mp4"
OTHER_VIDEO = "webm_opus_audio_only_stereo.webm"
SMALL_VIDEO = "opus_in_mp4_stereo_audio_only.mp4"
"""A 5 KB file that converts in a blink."""
LINK_SECRET = "cli-test-download-link-secret-0123456789"


@pytest.fixture(scope="module")
def stack(module_stack):
    # No output cache: a repeated file must really be converted, or "--timeout" has nothing to wait for.
    return module_stack(OUTPUT_CACHE="false")


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> KeyFile:
    key_file = KeyFile(tmp_path_factory.mktemp("keys") / "api_keys")
    key_file.add("alice")
    return key_file


@pytest.fixture(scope="module")
def keyed_stack(module_stack, keys):
    return module_stack(workers=1, API_KEYS_FILE=str(keys.path), DOWNLOAD_LINK_SECRET=LINK_SECRET)


def siphon(url: str, *args: str, timeout: float = 120, api_key: str | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "SIPHON_API_KEY"}
    if api_key is not None:
        environment["SIPHON_API_KEY"] = api_key
    return subprocess.run(
        [str(SIPHON), *args],
        env={**environment, "SIPHON_URL": url},
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def assert_mp3_of(mp3: Path, source: Path, work_dir: Path) -> None:
    facts = probe_audio(mp3)
    assert facts is not None and facts.codec == "mp3" and facts.frames > 0, facts
    expected = reference_mp3_seconds(source, work_dir)
    tolerance = max(expected * DURATION_TOLERANCE_RATIO, DURATION_TOLERANCE_FLOOR_SECONDS)
    assert abs(facts.duration_seconds - expected) <= tolerance, (facts.duration_seconds, expected)


def test_convert_writes_the_mp3_next_to_the_input(stack, media_dir, tmp_path):
    source = tmp_path / "holiday clip.mp4"
    shutil.copy(media_dir / VIDEO, source)
    result = siphon(stack.url, "convert", str(source))
    assert result.returncode == 0, result.stderr
    mp3 = tmp_path / "holiday clip.mp3"
    assert result.stdout.splitlines() == [str(mp3)]
    assert_mp3_of(mp3, source, tmp_path)
    assert not list(tmp_path.glob("*.part"))
    # It followed the job live over Server-Sent Events, not by polling /status.
    gateway_log = (stack.log_dir / "gateway.log").read_text()
    assert '"path": "/events/' in gateway_log


def test_convert_several_files_into_an_output_dir(stack, media_dir, tmp_path):
    out = tmp_path / "out"
    # quality=2 is the default VBR quality: an option the server takes (or, before options, ignores).
    result = siphon(
        stack.url, "convert", str(media_dir / VIDEO), str(media_dir / OTHER_VIDEO), "-o", str(out), "-F", "quality=2"
    )
    assert result.returncode == 0, result.stderr
    written = [Path(line) for line in result.stdout.splitlines()]
    assert written == [out / f"{Path(VIDEO).stem}.mp3", out / f"{Path(OTHER_VIDEO).stem}.mp3"]
    for mp3, name in zip(written, (VIDEO, OTHER_VIDEO), strict=True):
        assert_mp3_of(mp3, media_dir / name, tmp_path)


def test_convert_of_a_text_file_exits_non_zero_with_the_servers_error_code(stack, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("Shopping list: milk, eggs, a video converter.\n")
    result = siphon(stack.url, "convert", str(notes))
    assert result.returncode == 1
    assert "notes.txt: not_media: The file is not a video or audio file. It looks like text." in result.stderr
    assert result.stdout == "" and not (tmp_path / "notes.mp3").exists()


def test_convert_gives_up_waiting_after_the_timeout(stack, media_dir, tmp_path):
    result = siphon(stack.url, "convert", str(media_dir / VIDEO), "-o", str(tmp_path), "--timeout", "0.001")
    assert result.returncode == 5
    assert "had not finished after 0.001 s" in result.stderr


def test_status_shows_a_finished_job(stack, media_dir):
    job_id = stack.convert(media_dir / VIDEO).json()["job_id"]
    stack.wait_for_job(job_id)
    result = siphon(stack.url, "status", job_id)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{job_id}  completed  Conversion completed.")
    assert f"download: {stack.url}/download/{job_id}.mp3" in result.stdout


def test_status_of_an_unknown_job_exits_non_zero(stack):
    result = siphon(stack.url, "status", "0" * 32)
    assert result.returncode == 1
    assert "job_not_found" in result.stderr


def test_jobs_lists_a_converted_job(stack, media_dir):
    job_id = stack.convert(media_dir / VIDEO).json()["job_id"]
    stack.wait_for_job(job_id)
    result = siphon(stack.url, "jobs")
    assert result.returncode == 0, result.stderr
    assert any(line.startswith(job_id) and "completed" in line for line in result.stdout.splitlines())


def test_cancel_of_an_unknown_job_exits_non_zero(stack):
    result = siphon(stack.url, "cancel", "0" * 32)
    assert result.returncode == 1
    assert "job_not_found" in result.stderr


def test_cancel_of_a_finished_job_names_the_conflict(stack, media_dir):
    job_id = stack.convert(media_dir / VIDEO).json()["job_id"]
    stack.wait_for_job(job_id)
    result = siphon(stack.url, "cancel", job_id)
    assert result.returncode == 1
    assert "job_finished" in result.stderr


def test_a_field_without_a_value_is_a_usage_error(tmp_path):
    result = siphon("http://127.0.0.1:9", "convert", __file__, "-F", "bitrate")
    assert result.returncode == 2
    assert "'bitrate' is not NAME=VALUE" in result.stderr


def test_an_unreachable_server_is_named(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    result = siphon(url, "status", "0" * 32)
    assert result.returncode == 4
    assert f"Cannot reach the siphon server at {url}" in result.stderr


# --- a stack with API keys -----------------------------------------------------------------------
def test_convert_with_a_key_downloads_the_mp3_through_its_signed_link(keyed_stack, keys, media_dir, tmp_path):
    result = siphon(
        keyed_stack.url, "convert", str(media_dir / SMALL_VIDEO), "-o", str(tmp_path), api_key=keys.keys["alice"][0]
    )
    assert result.returncode == 0, result.stderr
    mp3 = tmp_path / f"{Path(SMALL_VIDEO).stem}.mp3"
    assert result.stdout.splitlines() == [str(mp3)]
    assert_mp3_of(mp3, media_dir / SMALL_VIDEO, tmp_path)
    gateway_log = (keyed_stack.log_dir / "gateway.log").read_text()
    assert '"path": "/events/' in gateway_log  # followed live, with the key (an EventSource could not)


def test_status_with_the_api_key_option_shows_a_signed_link(keyed_stack, keys, media_dir):
    key = keys.keys["alice"][0]
    with open(media_dir / SMALL_VIDEO, "rb") as f:
        submitted = requests.post(
            f"{keyed_stack.url}/convert", files={"file": f}, headers=keys.auth("alice"), timeout=30
        )
    job_id = submitted.json()["job_id"]
    status_url = f"{keyed_stack.url}/status/{job_id}"
    completed = lambda: requests.get(status_url, headers=keys.auth("alice"), timeout=10).json()["status"] == "completed"  # noqa: E731
    wait_until(completed, 60, 0.1, "the job")
    result = siphon(keyed_stack.url, "status", job_id, "--api-key", key)
    assert result.returncode == 0, result.stderr
    [link] = [line.removeprefix("download: ") for line in result.stdout.splitlines() if line.startswith("download: ")]
    assert link.startswith(f"{keyed_stack.url}/download/{job_id}.mp3?expires=") and "&signature=" in link
    assert requests.get(link, timeout=10).status_code == 200  # the link needs no key


@pytest.mark.parametrize(
    ("api_key", "hint"),
    [
        (None, "needs an API key: set SIPHON_API_KEY or pass --api-key."),
        ("wrong", "refused the API key: check SIPHON_API_KEY or --api-key."),
    ],
)
def test_without_a_valid_key_every_command_is_one_line_and_exit_6(keyed_stack, media_dir, api_key, hint):
    for args in (["status", "0" * 32], ["jobs"], ["convert", str(media_dir / SMALL_VIDEO), "--no-progress"]):
        result = siphon(keyed_stack.url, *args, api_key=api_key)
        assert result.returncode == 6, (args, result.stderr)
        assert result.stderr.splitlines() == [f"siphon: The server at {keyed_stack.url} {hint}"], args
        assert result.stdout == ""


def test_a_key_from_keys_new_gets_in_once_its_line_is_in_the_keys_file(keyed_stack, keys):
    made = siphon("http://127.0.0.1:9", "keys", "new", "carol")  # no server needed
    assert made.returncode == 0, made.stderr
    key, line = made.stdout.splitlines()
    assert siphon(keyed_stack.url, "jobs", api_key=key).returncode == 6
    with keys.path.open("a") as keys_file:
        keys_file.write(line + "\n")
    # The services look at the file at most every 5 s.
    wait_until(lambda: siphon(keyed_stack.url, "jobs", api_key=key).returncode == 0, 15, 0.5, "carol's key to work")
    keys.write()  # the file as the other tests know it

"""Hostile input through the public API (issue 3, items 11–14), on stacks running on loopback.

11. Files named ``.mp4`` that point FFmpeg at a local secret and at a loopback listener.
12. Every per-job limit, each set through its environment variable on a stack of its own.
13. Files that are not media, or broken media: a failed job with its own code, tried once.
14. Uploads too large (with and without Content-Length) or in thousands of parts: 413, nothing kept.

File names and malformed job ids are tests/e2e/test_api.py's. After each test,
:func:`assert_stack_clean` checks no job is left unfinished, no object or Redis record orphaned,
no ffmpeg running. docs/reliability.md tells what each test showed.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.support.faults import assert_stack_clean, tone
from tests.support.hostile import (
    LoopbackListener,
    avi_carrying_playlist,
    corrupt_moov_copy,
    ffconcat_script,
    hls_playlist,
    pcm_tone,
    silent_flac,
    truncated_copy,
    wav_declaring,
)
from tests.support.http import (
    MULTIPART_CONTENT_TYPE,
    assert_json_error,
    field_part,
    file_part,
    multipart_body,
    post_multipart,
)
from tests.support.media import probe_audio
from tests.support.moto import s3_client
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

MAX_UPLOAD_BYTES = 1_000_000
"""The upload limit of this module's shared stack, bytes (every input here is smaller)."""

MULTIPART_SLACK_BYTES = 64 * 1024
"""The gateway's allowance for multipart framing above MAX_UPLOAD_BYTES (services/gateway/app.py)."""

JOB_TIMEOUT_SECONDS = 30

MP3_SECONDS_TOLERANCE = 0.2
"""How far an MP3's duration may be from the audio put in, seconds: an 8 kHz MP3 frame lasts 72 ms,
and LAME's start delay and end padding add two or three frames."""


@pytest.fixture(scope="module")
def stack(module_stack) -> Stack:
    """One local stack for the module's independent cases."""
    return module_stack(MAX_UPLOAD_BYTES=str(MAX_UPLOAD_BYTES))


@pytest.fixture
def clean_stack(stack):
    """The shared stack, checked clean after the test."""
    yield stack
    assert_stack_clean(stack)


@pytest.fixture
def limited_stack(make_stack):
    """``limited_stack(**env)``: a one-worker stack with its own limits, checked clean after the test."""
    stacks = []

    def make(**env: str) -> Stack:
        stacks.append(make_stack("local", workers=1, **env))
        return stacks[-1]

    yield make
    for one in stacks:
        assert_stack_clean(one)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hostile-inputs")


def run_job(stack: Stack, path: Path, filename: str = "clip.mp4", timeout: float = JOB_TIMEOUT_SECONDS):
    """POST ``path`` as ``filename``, wait until the job ends; return (job_id, status body, full record)."""
    response = stack.convert(path, filename=filename)
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    final = stack.wait_for_job(job_id, timeout=timeout)
    return job_id, final, stack.job_record(job_id)


def assert_failed_once(final: dict, record: dict, code: str) -> None:
    """Failed with ``code`` on the first delivery: the task was never requeued."""
    assert final["status"] == "failed" and final["error"]["code"] == code, final
    assert final["error"]["message"].strip(), final
    assert record["attempts"] == 1, record


def stored_objects(stack: Stack) -> dict[str, bytes]:
    """Every object in the stack's storage, with its bytes."""
    if stack.backend == "s3":
        s3 = s3_client(stack.s3_endpoint)
        return {key: s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read() for key in stack.stored_keys()}
    return {key: (stack.storage_dir / key).read_bytes() for key in stack.stored_keys()}


def ffmpeg_in(work_dir: Path) -> list[str]:
    """``pgrep -a -f <work dir>``: the processes whose command line names the work dir."""
    done = subprocess.run(["pgrep", "-a", "-f", str(work_dir)], capture_output=True, text=True, check=False)
    return done.stdout.splitlines()


def mp3_seconds(stack: Stack, job_id: str, tmp_path: Path) -> float:
    """Duration of the job's downloaded MP3, as ffprobe reads it."""
    download = stack.download(job_id)
    assert download.status_code == 200, download.text[:300]
    target = tmp_path / f"{job_id}.mp3"
    target.write_bytes(download.content)
    facts = probe_audio(target)
    assert facts is not None and facts.frames > 0, f"no audio in the MP3 of {job_id}"
    return facts.duration_seconds


# --- 11: FFmpeg opens only the local input file ------------------------------------------------
@pytest.fixture
def secret(tmp_path) -> tuple[Path, bytes]:
    """A local file holding a unique marker: ``(path, marker)``. The path does not hold the marker."""
    marker = f"SIPHON-SECRET-{uuid.uuid4().hex}".encode()
    path = tmp_path / "secret.txt"
    path.write_bytes(marker + b"\n" + os.urandom(64))
    return path, marker


POINTER_FILES = {
    # kind: (contents(secret, url), expected outcome)
    "hls_playlist": (hls_playlist, "unsupported_format"),
    "ffconcat_script": (ffconcat_script, "refused_at_upload"),  # text: POST /convert answers 415 not_media
    # A genuine AVI (an allowed container) whose only stream is the GAB2 text holding the playlist:
    # FFmpeg opens only SRT/ASS inside GAB2, so the playlist stays inert and the file has no audio.
    "avi_gab2_playlist": (lambda secret, url: avi_carrying_playlist(hls_playlist(secret, url)), "no_audio_stream"),
    # The same with a PCM track: ffmpeg reads the whole file, converts the tone, follows nothing.
    "avi_gab2_playlist_and_audio": (
        lambda secret, url: avi_carrying_playlist(hls_playlist(secret, url), pcm_tone(1.0)),
        "completed",
    ),
}


@pytest.mark.parametrize("kind", list(POINTER_FILES))
def test_file_pointing_elsewhere_opens_nothing_but_itself(kind, clean_stack, secret, tmp_path):
    build, outcome = POINTER_FILES[kind]
    with LoopbackListener() as listener:
        source = tmp_path / "clip.mp4"
        source.write_bytes(build(secret[0], listener.url()))
        if outcome == "refused_at_upload":
            assert_json_error(clean_stack.convert(source, filename="clip.mp4"), 415, "not_media")
            return
        job_id, final, record = run_job(clean_stack, source)
        time.sleep(0.3)  # a connection would be accepted within the listener's 0.2 s tick
        assert listener.connections == [], f"FFmpeg called the listener: {listener.connections}"
    if outcome == "completed":
        assert final["status"] == "completed" and record["attempts"] == 1, record
        assert mp3_seconds(clean_stack, job_id, tmp_path) == pytest.approx(1.0, abs=MP3_SECONDS_TOLERANCE)
    else:
        assert_failed_once(final, record, outcome)
    leaks = [key for key, data in stored_objects(clean_stack).items() if secret[1] in data]
    assert leaks == [], f"the secret reached {leaks}"
    assert secret[1].decode() not in str(record) and secret[1].decode() not in str(final)


# --- 12: limits ---------------------------------------------------------------------------------
def test_duration_limit_cuts_long_and_tiny_but_endless_inputs(limited_stack, inputs, tmp_path):
    stack = limited_stack(MAX_DURATION_SECONDS="3")
    twenty_seconds = tone(inputs, 20)
    hour_of_silence = silent_flac(inputs / "hour.flac", 3600)  # ~14 KB that really decodes to an hour
    assert hour_of_silence.stat().st_size < 32 * 1024
    for source in (twenty_seconds, hour_of_silence):
        job_id, final, record = run_job(stack, source, filename="long.mp4")
        assert final["status"] == "completed" and record["attempts"] == 1, record
        assert mp3_seconds(stack, job_id, tmp_path) == pytest.approx(3.0, abs=MP3_SECONDS_TOLERANCE), source.name
        assert record["output_duration_seconds"] == pytest.approx(3.0, abs=MP3_SECONDS_TOLERANCE), record


def test_files_declaring_hours_they_do_not_hold_end_quickly(limited_stack, media_dir, inputs, tmp_path):
    stack = limited_stack(MAX_DURATION_SECONDS="60", CONVERSION_TIMEOUT_SECONDS="20")
    liar = inputs / "liar.wav"
    liar.write_bytes(wav_declaring(declared_seconds=6 * 3600, real_seconds=1.0))
    cases = [  # (file, seconds the probe believes, expected outcome, real seconds)
        (liar, 1.0, "completed", 1.0),  # FFmpeg's WAV demuxer caps the declared data size at the file's
        # ffprobe (FFmpeg 5.1) believes this one's 143165 s; the probe's libav reads its fragments (1.07 s)
        (media_dir / "fmp4_h264_aac_mono_bogus_duration.mp4", 1.07, "completed", 1.07),
        (media_dir / "fmp4_init_segment_only_aac_no_samples.mp4", 3900, "no_audio_frames", None),
    ]
    for source, declared, outcome, real in cases:
        started = time.monotonic()
        job_id, final, record = run_job(stack, source)
        assert time.monotonic() - started < 10, f"{source.name} took {time.monotonic() - started:.1f} s"
        assert record["media"]["duration_seconds"] == pytest.approx(declared, rel=0.01), record["media"]
        if outcome == "completed":
            assert final["status"] == "completed" and record["attempts"] == 1, record
            assert mp3_seconds(stack, job_id, tmp_path) == pytest.approx(real, abs=MP3_SECONDS_TOLERANCE), source.name
        else:
            assert_failed_once(final, record, outcome)


def test_output_byte_limit_fails_the_job_and_keeps_no_mp3(limited_stack, media_dir):
    stack = limited_stack(MAX_OUTPUT_BYTES="20000")
    # audio-only files, so no cover picture weighs in: ~114 KB of MP3, then ~10 KB
    job_id, final, record = run_job(stack, media_dir / "m4a_aac_lc_mono_44k_10s.m4a", filename="long.m4a")
    assert_failed_once(final, record, "output_too_large")
    assert f"jobs/{job_id}/output.mp3" not in stack.stored_keys()
    job_id, final, record = run_job(stack, media_dir / "sr8k_aac_lc_mono.m4a", filename="short.m4a")
    assert final["status"] == "completed" and record["output_size"] < 20000, record


def test_wall_clock_limit_kills_ffmpeg_and_the_worker_goes_on(limited_stack, media_dir, inputs):
    timeout_seconds = 5  # room for the 1 s clip after it on a busy machine
    stack = limited_stack(CONVERSION_TIMEOUT_SECONDS=str(timeout_seconds))
    # 100 KB of FLAC: two hours of 48 kHz stereo silence, 15 s of CPU or more for LAME.
    endless = silent_flac(inputs / "two-hours.flac", 7200, rate_hz=48000, channels=2)
    started = time.monotonic()
    job_id, final, record = run_job(stack, endless)
    elapsed = time.monotonic() - started
    print(f"\n{endless.stat().st_size} bytes holding 7200 s: {final['error']['code']} {elapsed:.1f} s after the upload")
    assert_failed_once(final, record, "timeout")
    assert elapsed < timeout_seconds + 10, f"the job took {elapsed:.1f} s to fail"
    assert ffmpeg_in(stack.work_dir) == []
    assert f"jobs/{job_id}/output.mp3" not in stack.stored_keys()
    _, final, _ = run_job(stack, media_dir / "mono_h264_aac_44k_1s.mp4")
    assert final["status"] == "completed", final


# --- 13: not media, broken media ---------------------------------------------------------------
def _random_bytes(inputs: Path, media_dir: Path) -> Path:
    path = inputs / "random.mp4"
    path.write_bytes(random.Random(13).randbytes(256 * 1024))  # seeded: one fixed file, never a lucky guess
    return path


def _shell_script(inputs: Path, media_dir: Path) -> Path:
    path = inputs / "script.mp4"
    path.write_text("#!/bin/sh\n# not a video\nexec ffmpeg -i http://127.0.0.1:1/ out.mp3\n" * 20)
    return path


def _half_mp4(inputs: Path, media_dir: Path) -> Path:
    return truncated_copy(media_dir / "ordinary_h264_aac_stereo_48k_8s.mp4", inputs / "half.mp4")


def _half_mp4_moov_at_end(inputs: Path, media_dir: Path) -> Path:
    return truncated_copy(media_dir / "moov_at_end_h264_aac_stereo_44k_10s.mp4", inputs / "half-moov-at-end.mp4")


def _mp4_without_index(inputs: Path, media_dir: Path) -> Path:
    return corrupt_moov_copy(media_dir / "ordinary_h264_aac_stereo_48k_8s.mp4", inputs / "no-index.mp4")


def _corpus(name: str):
    return lambda inputs, media_dir: media_dir / name


BROKEN_INPUTS = {
    "random_bytes": (_random_bytes, "not_media"),
    "half_of_an_mp4": (_half_mp4, "truncated"),
    "half_of_an_mp4_with_moov_at_end": (_half_mp4_moov_at_end, "truncated"),
    "corpus_truncated_init_segment": (_corpus("truncated_init_segment_100b.mp4"), "truncated"),
    "mp4_without_its_index": (_mp4_without_index, "corrupt_media"),
    "corpus_corrupt_no_moov": (_corpus("corrupt_malformed_free_box_no_moov.mp4"), "corrupt_media"),
}


@pytest.mark.parametrize("kind", list(BROKEN_INPUTS))
def test_broken_input_fails_once_with_its_own_code(kind, clean_stack, inputs, media_dir):
    make, code = BROKEN_INPUTS[kind]
    _, final, record = run_job(clean_stack, make(inputs, media_dir))
    assert_failed_once(final, record, code)


TEXT_INPUTS = {
    # Once failed jobs (202, then not_media in the worker); now refused by POST /convert itself.
    "shell_script": _shell_script,
    "corpus_text_file": _corpus("not_media_text_file.mp4"),
    "corpus_js_comment": _corpus("not_media_js_comment.mp4"),
}


@pytest.mark.parametrize("kind", list(TEXT_INPUTS))
def test_text_is_refused_at_upload_with_415_and_nothing_is_kept(kind, clean_stack, inputs, media_dir):
    keys, records = clean_stack.stored_keys(), clean_stack.redis_keys()
    response = clean_stack.convert(TEXT_INPUTS[kind](inputs, media_dir), filename="clip.mp4")
    assert_json_error(response, 415, "not_media")
    assert response.json()["error"]["message"] == "The file is not a video or audio file. It looks like text."
    assert_nothing_kept(clean_stack, keys, records)


def test_zero_byte_file_is_refused_at_upload_and_nothing_is_kept(clean_stack, tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    keys, records = clean_stack.stored_keys(), clean_stack.redis_keys()
    assert_json_error(clean_stack.convert(empty), 400, "empty_file")
    assert_nothing_kept(clean_stack, keys, records)


# --- 14: uploads --------------------------------------------------------------------------------
def chunks_of(data: bytes, size: int = 64 * 1024):
    for start in range(0, len(data), size):
        yield data[start : start + size]


def raw_exchange(
    stack: Stack, head: bytes, body_chunks=(), read_timeout: float = 30, stop_sending: bool = False
) -> tuple[int, bytes]:
    """Send ``head`` then ``body_chunks`` on a raw socket while reading the answer on another thread
    (the gateway may answer and close before the body is through); return (status, body bytes).
    With ``stop_sending``, the client then shuts its side for writing (the body ends there)."""
    sock = socket.create_connection(("127.0.0.1", stack.ports["gateway"]), timeout=read_timeout)

    def send() -> None:
        try:
            sock.sendall(head)
            for chunk in body_chunks:
                sock.sendall(chunk)
            if stop_sending:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the gateway stopped reading: expected once it has answered

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    answer = b""
    try:
        while b"\r\n\r\n" not in answer or len(answer) < _expected_length(answer):
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    finally:
        sock.close()
        sender.join(5)
    status = int(answer.split(b" ", 2)[1])
    return status, answer.split(b"\r\n\r\n", 1)[1]


def _expected_length(answer: bytes) -> int:
    head, _, _ = answer.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(head) + 4 + int(value)
    return len(answer) + 1


def request_head(stack: Stack, headers: dict[str, str]) -> bytes:
    lines = [
        "POST /convert HTTP/1.1",
        f"Host: 127.0.0.1:{stack.ports['gateway']}",
        f"Content-Type: {MULTIPART_CONTENT_TYPE}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunked(data: bytes):
    """``data`` framed with chunked transfer encoding, 64 KB per chunk."""
    for chunk in chunks_of(data):
        yield f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    yield b"0\r\n\r\n"


def assert_nothing_kept(stack: Stack, keys_before: list[str], redis_before: list[str]) -> None:
    time.sleep(0.5)  # let the upload service finish with the cut-off request
    assert stack.stored_keys() == keys_before
    assert stack.redis_keys() == redis_before


def test_upload_declaring_too_many_bytes_is_refused_before_its_body(clean_stack):
    keys, records = clean_stack.stored_keys(), clean_stack.redis_keys()
    declared = MAX_UPLOAD_BYTES + MULTIPART_SLACK_BYTES + 1
    status, body = raw_exchange(
        clean_stack, request_head(clean_stack, {"Content-Length": str(declared)}), [b"--" + b"x" * 100]
    )  # the rest of the body never comes
    assert status == 413 and b'"file_too_large"' in body, body
    assert_nothing_kept(clean_stack, keys, records)


@pytest.mark.parametrize(
    ("over_by", "refused_by"),
    [
        (1, b"The file is larger"),  # within the framing allowance: the upload service
        (3 * MAX_UPLOAD_BYTES, b"The upload is larger"),  # cut off by the gateway mid-stream
    ],
)
def test_chunked_upload_over_the_limit_is_refused_and_nothing_is_kept(over_by, refused_by, clean_stack):
    keys, records = clean_stack.stored_keys(), clean_stack.redis_keys()
    body = multipart_body([file_part(os.urandom(MAX_UPLOAD_BYTES + over_by), "big.mp4")])
    status, answer = raw_exchange(
        clean_stack, request_head(clean_stack, {"Transfer-Encoding": "chunked"}), chunked(body)
    )
    assert status == 413 and b'"file_too_large"' in answer and refused_by in answer, answer
    assert_nothing_kept(clean_stack, keys, records)


def test_upload_that_stops_short_of_its_content_length_is_400_and_nothing_is_kept(clean_stack):
    """The gateway passes the body on with the client's Content-Length; when the client stops
    sending before it, the gateway ends the request instead of leaving the upload service waiting
    for the rest (which would answer 503 once the read timeout ran out)."""
    keys, records = clean_stack.stored_keys(), clean_stack.redis_keys()
    body = multipart_body([file_part(b"\x00" + os.urandom(300_000), "clip.mp4")])
    status, answer = raw_exchange(
        clean_stack,
        request_head(clean_stack, {"Content-Length": str(len(body))}),
        chunks_of(body[:200_000]),
        stop_sending=True,
    )
    assert status == 400 and b'"missing_file"' in answer, answer
    assert_nothing_kept(clean_stack, keys, records)


def test_exactly_max_upload_bytes_is_accepted(clean_stack, tmp_path):
    """The limit is inclusive: the boundary case of the tests above is a file of exactly the limit."""
    at_limit = tmp_path / "at-limit.mp4"
    at_limit.write_bytes(os.urandom(MAX_UPLOAD_BYTES))
    response = clean_stack.convert(at_limit)
    assert response.status_code == 202, response.text
    clean_stack.wait_for_job(response.json()["job_id"], timeout=JOB_TIMEOUT_SECONDS)


@pytest.mark.parametrize("parts", ["fields", "files"])
def test_thousands_of_form_parts_are_refused_and_nothing_is_kept(parts, clean_stack):
    keys, records = clean_stack.stored_keys(), clean_stack.redis_keys()
    if parts == "fields":
        many = [field_part(f"f{i}", "x") for i in range(5000)] + [file_part(b"\0" * 1000, "clip.mp4")]
    else:
        many = [file_part(b"\0" * 10, f"clip{i}.mp4") for i in range(3000)]
    response = post_multipart(f"{clean_stack.url}/convert", multipart_body(many))
    assert response.status_code in (400, 413), response.text[:300]
    assert_json_error(response, response.status_code)
    assert_nothing_kept(clean_stack, keys, records)

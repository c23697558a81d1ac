"""The CLI and API keys, without a server: ``siphon keys new``, the bearer header on every request
(upload, event stream, status, signed download), and a 401 as one line and exit 6."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re

import pytest
import requests
from click.testing import CliRunner

from siphon_cli import api
from siphon_cli.keys import KEY_BYTES, new_key
from siphon_cli.main import cli

SERVER = "http://siphon.test"
JOB_ID = "3f2c8e0d9a6b4c1e8f7a5d4c3b2a1908"
SIGNED_LINK = f"{SERVER}/download/{JOB_ID}.mp3?expires=1764756000&signature=c2lnbmVk.LWxpbms"
KEY = "k" * 43
AUDIO = b"ID3\x04" + b"\x00" * 100
KEYS_FILE_LINE = re.compile(r"^(?P<name>[A-Za-z0-9_.-]{1,64}) (?P<digest>[0-9a-f]{64})(?P<admin> admin)?$")


# --- siphon keys new -------------------------------------------------------------------------------
def run_keys_new(*args: str):
    result = CliRunner().invoke(cli, ["keys", "new", *args])
    return result, result.stdout.splitlines()


def test_keys_new_prints_a_256_bit_url_safe_key_and_its_line_with_its_sha256():
    result, (key, line) = run_keys_new("alice")
    assert result.exit_code == 0, result.output
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", key)
    assert len(base64.urlsafe_b64decode(key + "=")) == KEY_BYTES == 32
    fields = KEYS_FILE_LINE.fullmatch(line)
    assert fields and fields["name"] == "alice" and not fields["admin"]
    assert fields["digest"] == hashlib.sha256(key.encode("utf-8")).hexdigest()
    assert "shown once" in result.stderr and "API_KEYS_FILE" in result.stderr
    assert key not in result.stderr  # stdout alone carries the key, for `| head -1`


def test_keys_new_admin_marks_the_line_admin():
    result, (key, line) = run_keys_new("ops.team-1", "--admin")
    assert result.exit_code == 0, result.output
    assert line == f"ops.team-1 {hashlib.sha256(key.encode()).hexdigest()} admin"


def test_keys_new_makes_a_different_key_each_time():
    keys = {run_keys_new("alice")[1][0] for _ in range(5)}
    assert len(keys) == 5


@pytest.mark.parametrize("name", ["", "two words", "a/b", "é", "x" * 65, "tab\tname"])
def test_keys_new_refuses_a_name_the_keys_file_cannot_hold(name):
    result, lines = run_keys_new(name)
    assert result.exit_code == 2 and lines == []
    assert "Invalid value for 'NAME'" in result.stderr


def test_new_key_line_matches_the_servers_keys_file_parser():
    from shared.auth import key_digest, parse_keys  # the server's reader, to check the format agrees

    made = new_key("ci-bot", admin=True)
    [line] = parse_keys(made.line)
    assert (line.name, line.admin, line.digest) == ("ci-bot", True, key_digest(made.key))


# --- the header, and 401 ---------------------------------------------------------------------------
def response(status: int, body: bytes = b"", content_type: str = "application/json") -> requests.Response:
    answer = requests.Response()
    answer.status_code = status
    answer.headers["Content-Type"] = content_type
    answer.headers["Content-Length"] = str(len(body))
    answer.raw = io.BytesIO(body)
    answer.encoding = "utf-8"  # what requests' adapter sets from the headers
    return answer


class FakeServer:
    """A requests.Session stand-in: a server whose job completes at once, with a signed link;
    records every request as (method, url, headers)."""

    def __init__(self, key: str | None = KEY):
        self.key = key
        self.requests: list[tuple[str, str, dict]] = []

    def request(self, method: str, url: str, headers: dict | None = None, timeout=None, data=None, **kwargs):
        self.requests.append((method, url, dict(headers or {})))
        if data is not None:
            data.read()  # the upload, streamed as the real session would
        if self.key is not None and (headers or {}).get("Authorization") != f"Bearer {self.key}":
            if not url.startswith(SERVER + "/download/"):  # signed links are free
                return response(401, json.dumps({"error": {"code": "unauthorized", "message": "No."}}).encode())
        return self.route(method, url)

    def route(self, method: str, url: str) -> requests.Response:
        completed = {"job_id": JOB_ID, "status": "completed", "download_url": SIGNED_LINK}
        if (method, url) == ("POST", f"{SERVER}/convert"):
            return response(202, json.dumps({"job_id": JOB_ID, "status": "queued"}).encode())
        if (method, url) == ("GET", f"{SERVER}/events/{JOB_ID}"):
            stream = f"event: job\ndata: {json.dumps(completed)}\n\n".encode()
            return response(200, stream, "text/event-stream")
        if (method, url) == ("GET", f"{SERVER}/status/{JOB_ID}"):
            return response(200, json.dumps(completed).encode())
        if (method, url) == ("GET", SIGNED_LINK):
            return response(200, AUDIO, "audio/mpeg")
        return response(404, json.dumps({"error": {"code": "not_found", "message": "No route."}}).encode())


@pytest.fixture
def server(monkeypatch):
    fake = FakeServer()
    monkeypatch.setattr(api.requests, "Session", lambda: fake)
    return fake


def siphon(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, ["--url", SERVER, *args], env={"SIPHON_API_KEY": None, **(env or {})})


def test_convert_sends_the_key_from_the_environment_on_every_request_and_downloads_the_signed_link(server, tmp_path):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"not really a video")
    result = siphon("convert", str(video), "--no-progress", env={"SIPHON_API_KEY": KEY})
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [str(tmp_path / "clip.mp3")]
    assert (tmp_path / "clip.mp3").read_bytes() == AUDIO
    urls = [url for _, url, _ in server.requests]
    assert urls == [f"{SERVER}/convert", f"{SERVER}/events/{JOB_ID}", SIGNED_LINK]  # the query string kept
    assert all(headers["Authorization"] == f"Bearer {KEY}" for _, _, headers in server.requests)


@pytest.mark.parametrize("where", ["group", "command"])
def test_the_api_key_option_is_taken_before_or_after_the_command(server, where):
    args = ["--api-key", KEY, "status", JOB_ID] if where == "group" else ["status", JOB_ID, "--api-key", KEY]
    result = siphon(*args, env={"SIPHON_API_KEY": "another-key"})
    assert result.exit_code == 0, result.stderr
    assert f"download: {SIGNED_LINK}" in result.stdout
    assert [headers["Authorization"] for _, _, headers in server.requests] == [f"Bearer {KEY}"]


def test_without_a_key_no_authorization_header_is_sent(monkeypatch):
    open_server = FakeServer(key=None)
    monkeypatch.setattr(api.requests, "Session", lambda: open_server)
    result = siphon("status", JOB_ID)
    assert result.exit_code == 0, result.stderr
    assert "Authorization" not in open_server.requests[0][2]


@pytest.mark.parametrize(
    ("env", "hint"),
    [
        ({}, "needs an API key: set SIPHON_API_KEY or pass --api-key"),
        ({"SIPHON_API_KEY": "wrong"}, "refused the API key: check SIPHON_API_KEY or --api-key"),
    ],
)
def test_a_401_is_one_line_naming_the_setting_and_exits_6(server, tmp_path, env, hint):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"x")
    for args in (["status", JOB_ID], ["jobs"], ["cancel", JOB_ID], ["convert", str(video), "--no-progress"]):
        result = siphon(*args, env=env)
        assert result.exit_code == 6, (args, result.stderr)
        assert result.stderr == f"siphon: The server at {SERVER} {hint}.\n", args
        assert result.exception is None or isinstance(result.exception, SystemExit)

"""A submission the server refuses 429 (its per-caller limits) is sent again after ``Retry-After``
(``siphon_cli.api.SiphonClient.submit``), and fails with the server's error once patience runs out."""

from __future__ import annotations

import json

import pytest

from siphon_cli import api
from siphon_cli.api import ApiError, SiphonClient
from tests.unit.cli.test_api_keys import response

SERVER = "http://siphon.test"
QUEUED = {"job_id": "0123456789abcdef0123456789abcdef", "status": "queued"}
LIMITED = {"error": {"code": "rate_limited", "message": "Too many unfinished jobs (20)."}}


class LimitingServer:
    """Answers ``POST /convert`` 429 (``Retry-After: <retry_after>``) ``refusals`` times, then 202."""

    def __init__(self, refusals: int, retry_after: str = "0"):
        self.refusals = refusals
        self.retry_after = retry_after
        self.posts = 0

    def request(self, method, url, headers=None, timeout=None, data=None, **kwargs):
        data.read()
        self.posts += 1
        if self.posts <= self.refusals:
            answer = response(429, json.dumps(LIMITED).encode())
            answer.headers["Retry-After"] = self.retry_after
            return answer
        return response(202, json.dumps(QUEUED).encode())


@pytest.fixture
def video(tmp_path):
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"\x00video")
    return path


def test_a_refused_submission_is_sent_again_after_retry_after(video):
    server = LimitingServer(refusals=3)
    assert SiphonClient(SERVER, session=server).submit(video) == QUEUED
    assert server.posts == 4


def test_the_wait_is_the_servers_retry_after(video, monkeypatch):
    slept: list[float] = []
    monkeypatch.setattr("tenacity.nap.time.sleep", slept.append)
    SiphonClient(SERVER, session=LimitingServer(refusals=2, retry_after="7")).submit(video)
    assert slept == [7.0, 7.0]


def test_past_its_patience_the_servers_429_is_the_error(video, monkeypatch):
    monkeypatch.setattr(api, "RATE_LIMIT_PATIENCE_SECONDS", 0)
    with pytest.raises(ApiError) as caught:
        SiphonClient(SERVER, session=LimitingServer(refusals=5)).submit(video)
    assert (caught.value.status, caught.value.code) == (429, "rate_limited")


@pytest.mark.parametrize(("header", "seconds"), [("12", 12.0), (None, 5.0), ("Wed, 21 Oct 2015 07:28:00 GMT", 5.0)])
def test_retry_after_is_read_in_seconds_or_defaulted(header, seconds):
    assert api.retry_after_seconds(header) == seconds

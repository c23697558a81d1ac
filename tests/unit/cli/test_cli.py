"""The CLI's own logic, without a server: where MP3s go, and following a job that never ends."""

from __future__ import annotations

import pytest

from siphon_cli.follow import FollowTimeout, follow_job, poll_status, sse_job_bodies, stream_or_poll
from siphon_cli.main import output_path


@pytest.mark.parametrize(
    ("source", "output_dir", "expected"),
    [
        ("videos/clip.mov", None, "videos/clip.mp3"),
        ("videos/clip.mov", "out", "out/clip.mp3"),
        ("videos/archive.tar.mp4", None, "videos/archive.tar.mp3"),
        ("videos/song.mp3", None, "videos/song.siphon.mp3"),  # never the input itself
    ],
)
def test_output_path(tmp_path, source, output_dir, expected):
    result = output_path(tmp_path / source, tmp_path / output_dir if output_dir else None)
    assert result == tmp_path / expected


class StuckClient:
    """A server whose job stays queued."""

    def __init__(self):
        self.calls = 0

    def status(self, job_id: str) -> dict:
        self.calls += 1
        return {"job_id": job_id, "status": "queued", "message": "Conversion job is queued."}


def test_following_a_job_that_never_ends_stops_at_the_timeout():
    client = StuckClient()
    quick = lambda client, job_id: poll_status(client, job_id, interval=0.01)  # noqa: E731
    with pytest.raises(FollowTimeout, match="had not finished after 0.05 s") as raised:
        for _ in follow_job(client, "a" * 32, timeout=0.05, follower=quick):
            pass
    assert raised.value.exit_code == 5 and client.calls >= 2


def test_following_ends_with_the_terminal_status():
    class FinishedClient:
        def job_events(self, job_id):
            return None  # a server without event streams

        def status(self, job_id):
            return {"job_id": job_id, "status": "failed", "error": {"code": "not_media", "message": "No."}}

    bodies = list(follow_job(FinishedClient(), "a" * 32, timeout=10))
    assert [b["status"] for b in bodies] == ["failed"]


class FakeStream:
    """An SSE response: ``lines`` as ``iter_lines`` gives them."""

    def __init__(self, lines: list[str]):
        self.lines = lines

    def iter_lines(self, decode_unicode: bool = False):
        yield from self.lines

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_sse_job_events_become_bodies_and_keep_alives_become_none():
    lines = [
        "id: 1-0",
        "event: job",
        'data: {"status": "processing",',
        'data:  "progress": 40}',
        "",
        ": keep-alive",
        "event: deleted",
        'data: {"job_id": "x"}',
        "",
    ]
    assert list(sse_job_bodies(FakeStream(lines))) == [{"status": "processing", "progress": 40}, None]


def test_following_prefers_the_event_stream_and_stops_at_its_terminal_event():
    class StreamingClient:
        def __init__(self):
            self.polled = False

        def job_events(self, job_id):
            return FakeStream(
                [
                    "event: job",
                    'data: {"status": "processing", "progress": 10}',
                    "",
                    ": keep-alive",
                    "event: job",
                    'data: {"status": "completed", "download_url": "http://x/a.mp3"}',
                    "",
                ]
            )

        def status(self, job_id):
            self.polled = True
            return {"status": "completed"}

    client = StreamingClient()
    bodies = list(stream_or_poll(client, "a" * 32))
    assert [b["status"] for b in bodies] == ["processing", "processing", "completed"] and not client.polled


def test_a_stream_that_breaks_off_falls_back_to_polling():
    class BrokenStreamClient:
        def job_events(self, job_id):
            return FakeStream(["event: job", 'data: {"status": "queued"}', ""])  # ends before the job does

        def status(self, job_id):
            return {"status": "failed", "error": {"code": "not_media", "message": "No."}}

    assert [b["status"] for b in stream_or_poll(BrokenStreamClient(), "a" * 32)] == ["queued", "failed"]


def test_format_video_codec_and_height_flags_are_sent_as_the_apis_fields(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from siphon_cli import main

    sent = []
    monkeypatch.setattr(main, "submit_all", lambda client, files, fields, progress: (sent.append(fields), ([], []))[1])
    video = tmp_path / "clip.mov"
    video.write_bytes(b"\0" * 16)
    args = ["convert", str(video), "--format", "webm", "--video-codec", "av1", "--height", "240", "-F", "crf=40"]
    result = CliRunner().invoke(main.cli, args, env={"SIPHON_URL": "http://127.0.0.1:9"})
    assert result.exit_code == 0, result.output
    assert sent == [{"crf": "40", "format": "webm", "video_codec": "av1", "height": "240"}]

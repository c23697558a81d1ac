"""Listing and live updates end to end: ``GET /jobs`` and the Server-Sent Events streams, over
HTTP against a real stack (issue 5: "Live updates and listing")."""

from __future__ import annotations

import json
import threading
import time

import pytest
import requests

from tests.support.http import assert_json_error
from tests.support.net import wait_until
from tests.support.not_media import write_unreadable
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

VIDEO = "opus_in_mp4_stereo_audio_only.mp4"
WITH_VIDEO = "ordinary_h264_aac_stereo_48k_8s.mp4"
MAX_CLIENTS = 3


@pytest.fixture(scope="module")
def stack(module_stack) -> Stack:
    return module_stack(
        "local", workers=1, EVENTS_HEARTBEAT_SECONDS="1", EVENTS_MAX_CLIENTS=str(MAX_CLIENTS), OUTPUT_CACHE="false"
    )


class EventReader:
    """Reads an event stream on a thread: ``events`` (id, event, data) and ``comments`` as they come."""

    def __init__(self, url: str, last_event_id: str | None = None, timeout: float = 30):
        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        self.response = requests.get(url, headers=headers, stream=True, timeout=timeout)
        self.events: list[tuple[str | None, str, dict]] = []
        self.comments: list[str] = []
        self.ended = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        block: dict[str, str] = {}
        try:
            for line in self.response.iter_lines(decode_unicode=True):
                if line.startswith(":"):
                    self.comments.append(line)
                elif line == "":
                    if "event" in block:
                        self.events.append((block.get("id"), block["event"], json.loads(block["data"])))
                    block = {}
                else:
                    name, _, value = line.partition(": ")
                    block[name] = value
        except (requests.RequestException, AttributeError):
            pass
        finally:
            self.ended.set()

    def of_job(self, job_id: str) -> list[tuple[str | None, str, dict]]:
        return [e for e in self.events if e[2].get("job_id") == job_id]

    def wait_for_status(self, job_id: str, status: str, timeout: float = 30) -> None:
        wait_until(
            lambda: any(e[2].get("status") == status for e in self.of_job(job_id)),
            timeout,
            0.05,
            f"an event of {job_id} reaching {status}",
        )

    def close(self) -> None:
        self.response.close()


def submit(stack: Stack, path, **fields) -> str:
    response = stack.convert(path, **fields)
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def stream_ids(events) -> list[tuple[int, int]]:
    return [tuple(map(int, e[0].split("-"))) for e in events]


# --- GET /events -------------------------------------------------------------------------------
def test_events_streams_every_change_of_a_job_in_order(stack, media_dir):
    reader = EventReader(f"{stack.url}/events")
    try:
        time.sleep(0.3)  # subscribed before the job exists
        job_id = submit(stack, media_dir / VIDEO)
        reader.wait_for_status(job_id, "completed")
    finally:
        reader.close()
    mine = reader.of_job(job_id)
    statuses = [e[2]["status"] for e in mine]
    assert statuses[0] == "queued" and statuses[-1] == "completed" and "processing" in statuses
    assert stream_ids(mine) == sorted(set(stream_ids(mine))), "event ids must grow"
    summary = mine[-1][2]
    assert summary["download_url"].endswith(f"/download/{job_id}.mp3")
    assert summary["input"]["size_bytes"] > 0 and summary["output"]["format"] == "mp3"
    assert reader.response.headers["Content-Type"].startswith("text/event-stream")


def test_client_reconnecting_with_last_event_id_misses_nothing(stack, media_dir):
    reader = EventReader(f"{stack.url}/events")
    try:
        time.sleep(0.3)
        first = submit(stack, media_dir / VIDEO)
        reader.wait_for_status(first, "completed")
    finally:
        reader.close()
    last_seen = reader.events[-1][0]
    missed = submit(stack, media_dir / VIDEO, title="while away")  # the client is disconnected now
    assert stack.wait_for_job(missed, timeout=30)["status"] == "completed"

    again = EventReader(f"{stack.url}/events", last_event_id=last_seen)
    try:
        again.wait_for_status(missed, "completed", timeout=10)
        live = submit(stack, media_dir / VIDEO, title="after")
        again.wait_for_status(live, "completed")
    finally:
        again.close()
    replayed = [e[2]["status"] for e in again.of_job(missed)]
    assert replayed[0] == "queued" and replayed[-1] == "completed"
    assert not again.of_job(first), "nothing before Last-Event-ID is sent again"
    assert stream_ids(again.events) == sorted(set(stream_ids(again.events)))


def test_idle_stream_sends_heartbeats(stack):
    reader = EventReader(f"{stack.url}/events")
    try:
        wait_until(lambda: len(reader.comments) >= 2, 10, 0.1, "two keep-alive comments")
    finally:
        reader.close()


def test_streams_are_bounded_and_a_gone_client_frees_its_slot(stack):
    readers: list[EventReader] = []

    def open_one() -> bool:  # the streams of earlier tests may hold a slot until their next heartbeat
        reader = EventReader(f"{stack.url}/events")
        if reader.response.status_code != 200:
            reader.close()
            return False
        readers.append(reader)
        return True

    try:
        for _ in range(MAX_CLIENTS):
            wait_until(open_one, 15, 0.5, "a free stream slot")
        assert_json_error(requests.get(f"{stack.url}/events", timeout=10), 503, "too_many_streams")
    finally:
        for reader in readers:
            reader.close()

    def a_stream_opens() -> bool:
        response = requests.get(f"{stack.url}/events", stream=True, timeout=10)
        response.close()
        return response.status_code == 200

    wait_until(a_stream_opens, 15, 0.5, "the closed streams' slots to be freed")  # within a heartbeat or two


def test_malformed_last_event_id_is_400(stack):
    response = requests.get(f"{stack.url}/events", headers={"Last-Event-ID": "yesterday"}, timeout=10)
    assert_json_error(response, 400, "invalid_last_event_id")


# --- GET /events/<job_id> ----------------------------------------------------------------------
def test_job_stream_starts_with_the_job_and_ends_with_it(stack, media_dir):
    job_id = submit(stack, media_dir / VIDEO)
    reader = EventReader(f"{stack.url}/events/{job_id}")
    assert reader.ended.wait(30), "the stream did not end with the job"
    statuses = [e[2]["status"] for e in reader.events]
    assert statuses[-1] == "completed" and all(e[2]["job_id"] == job_id for e in reader.events)

    # Reconnecting after the end: 204, which tells EventSource to stop.
    assert (
        requests.get(
            f"{stack.url}/events/{job_id}", headers={"Last-Event-ID": reader.events[-1][0]}, timeout=10
        ).status_code
        == 204
    )
    # Reconnecting from an earlier event replays the rest, then ends.
    earlier = [e for e in reader.events if e[0]][0][0]
    replay = EventReader(f"{stack.url}/events/{job_id}", last_event_id=earlier)
    assert replay.ended.wait(10)
    assert replay.events and replay.events[-1][2]["status"] == "completed"
    assert all(e[0] > earlier for e in replay.events if e[0])


def test_job_stream_of_a_finished_job_sends_it_once_and_ends(stack, media_dir):
    job_id = submit(stack, media_dir / VIDEO)
    stack.wait_for_job(job_id, timeout=30)
    reader = EventReader(f"{stack.url}/events/{job_id}")
    assert reader.ended.wait(10)
    assert [e[2]["status"] for e in reader.events] == ["completed"]


def test_job_stream_of_an_unknown_job_is_404(stack):
    response = requests.get(f"{stack.url}/events/0123456789abcdef0123456789abcdef", timeout=10)
    assert response.status_code == 404 and response.json()["status"] == "not_found"


# --- GET /jobs ---------------------------------------------------------------------------------
def test_jobs_lists_newest_first_in_pages_with_media_facts(stack, media_dir, tmp_path):
    notes = write_unreadable(tmp_path / "notes.mp4")  # fails in the worker (text is refused at upload)
    ids = [submit(stack, media_dir / WITH_VIDEO), submit(stack, notes), submit(stack, media_dir / VIDEO)]
    stack.wait_for_jobs(ids, timeout=60)

    listed, cursor = [], None
    while True:
        page = requests.get(
            f"{stack.url}/jobs", params={"limit": 2, **({"cursor": cursor} if cursor else {})}, timeout=10
        ).json()
        assert len(page["jobs"]) <= 2
        listed += page["jobs"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    order = [job["job_id"] for job in listed]
    assert len(order) == len(set(order)), "a job listed twice"
    assert order[:3] == ids[::-1], "newest first"
    created = [job["created_at"] for job in listed]
    assert created == sorted(created, reverse=True)

    video, failed, audio = (next(j for j in listed if j["job_id"] == job_id) for job_id in ids)
    assert video["input"]["container"].startswith("mov,mp4") and video["input"]["video_codec"] == "h264"
    assert video["input"]["audio_codec"] == "aac" and video["input"]["duration_seconds"] == pytest.approx(8, abs=0.2)
    assert video["input"]["size_bytes"] == (media_dir / WITH_VIDEO).stat().st_size
    assert video["output"]["format"] == "mp3" and video["output"]["size_bytes"] > 0
    assert 32 <= video["output"]["bitrate_kbps"] <= 320
    assert failed["status"] == "failed" and failed["output"] is None and failed["error"]["code"] == "not_media"
    assert audio["input"]["video_codec"] is None


def test_jobs_filters_by_status(stack):
    failed = requests.get(f"{stack.url}/jobs", params={"status": "failed"}, timeout=10).json()["jobs"]
    assert failed and all(job["status"] == "failed" for job in failed)
    assert requests.get(f"{stack.url}/jobs", params={"status": "expired"}, timeout=10).json()["jobs"] == []


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"status": "done"}, "invalid_status"),
        ({"limit": "0"}, "invalid_limit"),
        ({"limit": "many"}, "invalid_limit"),
        ({"cursor": "nonsense"}, "invalid_cursor"),
    ],
)
def test_jobs_refuses_bad_parameters(stack, params, code):
    assert_json_error(requests.get(f"{stack.url}/jobs", params=params, timeout=10), 400, code)

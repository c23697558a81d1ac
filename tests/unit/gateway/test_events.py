"""Listing, live updates and expiry at the gateway, on fakes: ``GET /jobs``, the event-stream body
(``services/gateway/events.py``, with no Redis: the relay's queue is fed by hand) and ``410``."""

from __future__ import annotations

import pytest

from services.gateway.app import create_app
from services.gateway.events import ChangeRelay, StreamsExhausted, Subscription, is_after
from services.gateway.live import last_event_id, render_change
from shared.changes import Change
from shared.config import load_settings
from shared.errors import RequestRejected
from shared.jobs import Job, JobStatus
from tests.unit.fakes import FakeMetadata, FakeStorage, FakeUpload

JOB_ID = "0123456789abcdef0123456789abcdef"


def job(status: JobStatus, job_id: str = JOB_ID, **fields) -> Job:
    return Job.new(job_id, "clip.mov", 100).model_copy(update={"status": status, **fields})


def change(change_id: str, status: JobStatus, job_id: str = JOB_ID) -> Change:
    return Change(change_id, "job", job_id, job(status, job_id).model_dump_json())


class OfflineRelay(ChangeRelay):
    """A relay with no Redis: no listener thread; tests put changes in the subscription themselves."""

    def __init__(self, max_clients: int = 2):
        super().__init__(None, "unit:", heartbeat_seconds=0.05, max_stream_seconds=0.5, max_clients=max_clients)

    def open(self) -> Subscription:
        if not self._slots.acquire(blocking=False):
            raise StreamsExhausted("full")
        subscription = Subscription(maxsize=3)
        self._subscriptions.add(subscription)
        return subscription


@pytest.fixture
def client():
    metadata = FakeMetadata(job(JobStatus.EXPIRED, output_size=10), job(JobStatus.COMPLETED, "b" * 32, output_size=9))
    app = create_app(
        load_settings(), metadata=metadata, storage=FakeStorage(), upload=FakeUpload(), relay=OfflineRelay()
    )
    return app.test_client()


def test_download_of_an_expired_job_is_410(client):
    response = client.get(f"/download/{JOB_ID}.mp3")
    assert response.status_code == 410 and response.json["error"]["code"] == "job_expired"


def test_status_of_an_expired_job_says_so(client):
    body = client.get(f"/status/{JOB_ID}").json
    assert body["status"] == "expired" and "expired" in body["message"] and "download_url" not in body


def test_jobs_lists_public_summaries(client):
    page = client.get("/jobs").json
    assert [j["status"] for j in page["jobs"]] == ["completed", "expired"] and page["next_cursor"] is None
    assert page["jobs"][0]["download_url"] == f"http://localhost/download/{'b' * 32}.mp3"
    assert "input_key" not in page["jobs"][0] and page["jobs"][1]["output"]["size_bytes"] == 10


def body_of(stream) -> str:
    return "".join(stream)


def test_a_stream_replays_then_relays_live_changes_once_each_and_beats_when_idle():
    relay = OfflineRelay()
    subscription = relay.open()
    live = (("5-0", JobStatus.PROCESSING), ("7-0", JobStatus.PROCESSING), ("8-0", JobStatus.COMPLETED))
    for change_id, status in live:
        subscription.offer(change(change_id, status))
    replay = [change("6-0", JobStatus.QUEUED), change("7-0", JobStatus.PROCESSING)]
    text = body_of(relay.stream(subscription, replay, lambda c: render_change(c, "http://h/"), last_id="4-0"))
    ids = [line[4:] for line in text.splitlines() if line.startswith("id: ")]
    assert ids == ["6-0", "7-0", "8-0"], "5-0 comes before the replay's end; 7-0 is not sent twice"
    assert text.startswith("retry: ") and ": keep-alive" in text
    assert relay._subscriptions == set(), "the stream closes its subscription"


def test_a_job_stream_ends_with_the_job():
    relay = OfflineRelay()
    subscription = relay.open()
    subscription.offer(change("2-0", JobStatus.COMPLETED))
    subscription.offer(change("3-0", JobStatus.PROCESSING, "c" * 32))
    text = body_of(
        relay.stream(
            subscription,
            [],
            lambda c: render_change(c, "http://h/", JOB_ID),
            None,
            ends=lambda c: c.job.status.is_terminal,
        )
    )
    assert "id: 2-0" in text and "3-0" not in text and ": keep-alive" not in text


def test_a_client_that_falls_behind_is_cut_off_to_replay_later():
    relay = OfflineRelay()
    subscription = relay.open()
    for n in range(5):
        subscription.offer(change(f"{n + 1}-0", JobStatus.PROCESSING))
    assert subscription.overflowed
    text = body_of(relay.stream(subscription, [], lambda c: render_change(c, "http://h/"), None))
    assert text == "retry: 2000\n\n"


def test_streams_are_limited_per_process():
    relay = OfflineRelay(max_clients=1)
    first = relay.open()
    with pytest.raises(StreamsExhausted):
        relay.open()
    relay.close(first)
    relay.close(first)  # closing twice frees one slot only
    relay.open()


def test_event_ids_order_and_last_event_id_parsing():
    assert is_after("10-0", "9-5") and is_after("9-6", "9-5") and not is_after("9-5", "9-5")
    assert last_event_id(None) is None and last_event_id("12-3") == "12-3"
    with pytest.raises(RequestRejected):
        last_event_id("yesterday")

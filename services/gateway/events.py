"""Server-Sent Events: the job change feed (``shared/changes.py``) relayed to HTTP clients.

One :class:`ChangeRelay` per gateway process holds one Redis pub/sub subscription (a thread, which is
a greenlet under gunicorn's gevent worker) and fans every change out to the streams open in the
process, each through a bounded queue. A stream begins with what its client missed, the feed's
entries after its ``Last-Event-ID`` (``XRANGE``), then goes on live. Event ids are the feed's stream
ids, so a change is sent once: a live change at or before the last id sent is skipped.

Every stream is bounded, so a slow or vanished client cannot hold a gateway connection for ever:

* an idle stream sends a comment every ``EVENTS_HEARTBEAT_SECONDS``; writing to a connection the
  client closed fails, which ends the response and frees its connection;
* sending times out after :data:`SEND_TIMEOUT_SECONDS` (on the socket gunicorn hands the app), so a
  client that stops reading blocks its stream no longer than that;
* a client too slow to take the changes as they come overflows its queue
  (:data:`MAX_QUEUED_CHANGES`) and its stream ends; it reconnects and is replayed what it missed;
* a stream lasts at most ``EVENTS_MAX_STREAM_SECONDS``; EventSource reconnects by itself;
* one process serves at most ``EVENTS_MAX_CLIENTS`` streams; more are answered 503, so streams
  never take every connection (``WEB_CONNECTIONS``) from the rest of the API.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator

import redis
from flask import Response

from shared.changes import Change, changes_key, stream_id_key
from shared.errors import Unavailable

log = logging.getLogger(__name__)

MAX_QUEUED_CHANGES = 1000
"""Changes waiting for one client before its stream is ended as too slow."""

SEND_TIMEOUT_SECONDS = 30.0
"""Longest a single write to an event-stream client may block, seconds."""

RECONNECT_MILLISECONDS = 2000
"""The ``retry:`` a stream announces: how soon EventSource reconnects after it ends."""

LISTEN_POLL_SECONDS = 1.0
"""Longest wait for a pub/sub message before the relay thread looks up again, seconds."""


class StreamsExhausted(Unavailable):
    """Every event-stream slot of this gateway process is taken (503 ``too_many_streams``)."""

    code = "too_many_streams"


class Subscription:
    """One open stream's queue of live changes; ``overflowed`` once it fell too far behind."""

    def __init__(self, maxsize: int = MAX_QUEUED_CHANGES):
        self.changes: queue.Queue[Change] = queue.Queue(maxsize)
        self.overflowed = False

    def offer(self, change: Change) -> None:
        try:
            self.changes.put_nowait(change)
        except queue.Full:
            self.overflowed = True


def is_after(change_id: str, last_id: str | None) -> bool:
    """Whether ``change_id`` comes after ``last_id`` in the feed (everything does after None)."""
    if last_id is None:
        return True
    return (stream_id_key(change_id) or (0, 0)) > (stream_id_key(last_id) or (0, 0))


def sse_event(change_id: str | None, event: str, data: dict) -> str:
    """One event in ``text/event-stream`` framing (the data is one JSON line)."""
    head = f"id: {change_id}\n" if change_id else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'), sort_keys=True)}\n\n"


class ChangeRelay:
    """Relays the change feed to the streams open in this process (connects on first stream)."""

    def __init__(
        self, client: redis.Redis, prefix: str, heartbeat_seconds: float, max_stream_seconds: float, max_clients: int
    ):
        self.redis = client
        self.key = changes_key(prefix)
        self.heartbeat_seconds = heartbeat_seconds
        self.max_stream_seconds = max_stream_seconds
        self._slots = threading.BoundedSemaphore(max_clients)
        self._subscriptions: set[Subscription] = set()
        self._lock = threading.Lock()
        self._listener: threading.Thread | None = None
        self._last_id: str | None = None

    # --- subscriptions ------------------------------------------------------------------------
    def open(self) -> Subscription:
        """A new subscription to live changes (before reading any state, so none falls between).

        Raises:
            StreamsExhausted: this process serves ``EVENTS_MAX_CLIENTS`` streams already.
        """
        if not self._slots.acquire(blocking=False):
            raise StreamsExhausted("Too many event streams are open on this server; try again shortly.")
        subscription = Subscription()
        with self._lock:
            self._subscriptions.add(subscription)
            if self._listener is None or not self._listener.is_alive():
                self._listener = threading.Thread(target=self._listen, name="change-relay", daemon=True)
                self._listener.start()
        return subscription

    def close(self, subscription: Subscription) -> None:
        with self._lock:
            if subscription not in self._subscriptions:
                return
            self._subscriptions.discard(subscription)
        self._slots.release()

    # --- the feed -----------------------------------------------------------------------------
    def history(self, after_id: str) -> list[Change]:
        """The changes after ``after_id`` that the feed still holds, oldest first."""
        try:
            entries = self.redis.xrange(self.key, f"({after_id}", "+")
        except redis.RedisError as exc:
            raise Unavailable(
                f"The change feed is unavailable ({exc.__class__.__name__}).", code="events_unavailable"
            ) from exc
        return [Change.from_entry(entry_id, fields) for entry_id, fields in entries]

    def latest_id(self) -> str | None:
        """The id of the newest change in the feed, or None while it is empty."""
        try:
            newest = self.redis.xrevrange(self.key, "+", "-", count=1)
        except redis.RedisError as exc:
            raise Unavailable(
                f"The change feed is unavailable ({exc.__class__.__name__}).", code="events_unavailable"
            ) from exc
        return Change.from_entry(*newest[0]).id if newest else None

    def _listen(self) -> None:
        """Fan pub/sub messages out until no stream is open; after a lost connection, catch up from
        the stream so no change is skipped."""
        self._last_id = None  # a new listener starts from now: catching up is for reconnections only
        while self._has_subscribers():
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self.key)
                if self._last_id is not None:
                    for change in self.history(self._last_id):
                        self._fan_out(change)
                while self._has_subscribers():
                    message = pubsub.get_message(timeout=LISTEN_POLL_SECONDS)
                    if message and message["type"] == "message":
                        self._fan_out(Change.from_message(message["data"]))
            except (redis.RedisError, Unavailable) as exc:
                log.warning("change feed subscription lost (%s); subscribing again", exc)
                time.sleep(LISTEN_POLL_SECONDS)
            finally:
                pubsub.close()

    def _has_subscribers(self) -> bool:
        with self._lock:
            if not self._subscriptions:
                self._listener = None
                return False
            return True

    def _fan_out(self, change: Change) -> None:
        if not is_after(change.id, self._last_id):
            return
        self._last_id = change.id
        with self._lock:
            subscriptions = list(self._subscriptions)
        for subscription in subscriptions:
            subscription.offer(change)

    # --- one response -------------------------------------------------------------------------
    def stream(
        self,
        subscription: Subscription,
        replay: Iterable[Change],
        render: Callable[[Change], str | None],
        last_id: str | None,
        ends: Callable[[Change], bool] = lambda change: False,
    ) -> Iterator[str]:
        """The body of one event-stream response: ``replay`` (what the client missed, or where it
        starts), then live changes, each ``render``-ed (None skips it), until a change ``ends`` it
        or a bound is reached. Closes the subscription however it stops."""
        try:
            yield f"retry: {RECONNECT_MILLISECONDS}\n\n"
            for change in replay:
                text = render(change)
                if text:
                    yield text
                last_id = change.id if stream_id_key(change.id) else last_id
                if ends(change):
                    return
            deadline = time.monotonic() + self.max_stream_seconds
            while (remaining := deadline - time.monotonic()) > 0 and not subscription.overflowed:
                try:
                    change = subscription.changes.get(timeout=min(self.heartbeat_seconds, remaining))
                except queue.Empty:
                    yield ": keep-alive\n\n"
                    continue
                if not is_after(change.id, last_id):
                    continue
                last_id = change.id
                text = render(change)
                if text:
                    yield text
                if ends(change):
                    return
        finally:
            self.close(subscription)


def event_stream_response(body: Iterator[str], on_close: Callable[[], None], environ: dict) -> Response:
    """A streaming ``text/event-stream`` response whose ``on_close`` runs however it ends (also
    when the server never iterates it), with a send timeout on the client's socket (gunicorn)."""
    sock = environ.get("gunicorn.socket")
    if sock is not None:
        sock.settimeout(SEND_TIMEOUT_SECONDS)
    response = Response(
        body, mimetype="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    response.call_on_close(on_close)
    return response

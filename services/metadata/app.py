"""The metadata service's internal HTTP API (see ``shared/metadata_client.py`` for the contract)."""

from __future__ import annotations

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from flask import Flask, Response, jsonify, request

from services.metadata.store import JobStore
from shared.config import Settings, settings
from shared.errors import JobNotFound, MessageError, RequestRejected
from shared.http import install_json_errors
from shared.jobs import Job, is_valid_job_id
from shared.messages import JobEvent
from shared.storage import make_storage

MAX_WAIT_SECONDS = 60.0
"""Longest ``GET /jobs/<id>?wait=`` long-poll, seconds (a gunicorn thread is held meanwhile)."""


def make_store(s: Settings) -> JobStore:
    """A job store on the configured Redis and storage backend (connects on first use)."""
    # One quick retry, not redis-py's default backoff: a dead Redis should become a 503 within seconds.
    client = redis.Redis.from_url(s.redis_url, socket_timeout=5, socket_connect_timeout=2,
                                  retry=Retry(NoBackoff(), 1))
    return JobStore(client, s.redis_prefix, make_storage(s))


def create_app(s: Settings | None = None, store: JobStore | None = None) -> Flask:
    """The Flask app; tests pass their own settings or store."""
    s = s or settings()
    store = store or make_store(s)
    app = Flask(__name__)
    install_json_errors(app)

    def checked(job_id: str) -> str:
        if not is_valid_job_id(job_id):
            raise JobNotFound("Job not found.")
        return job_id

    @app.post("/jobs")
    def create_job():
        try:
            job = Job.model_validate_json(request.get_data())
        except ValueError as exc:
            raise RequestRejected(f"invalid job: {exc}") from None
        store.create(job)
        return Response(job.model_dump_json(), status=201, mimetype="application/json")

    @app.get("/jobs/<job_id>")
    def get_job(job_id: str):
        """``?wait=<seconds>`` (at most :data:`MAX_WAIT_SECONDS`) answers once the job is terminal."""
        wait = min(request.args.get("wait", 0.0, type=float), MAX_WAIT_SECONDS)
        job = store.wait_terminal(checked(job_id), wait) if wait > 0 else store.get(checked(job_id))
        return Response(job.model_dump_json(), mimetype="application/json")

    @app.post("/jobs/<job_id>/events")
    def apply_event(job_id: str):
        """Apply a :class:`JobEvent` sent over HTTP (a retry's ``queued``, or its rollback);
        answers the job as it is afterwards, with ``X-Siphon-Applied: true|false``."""
        try:
            event = JobEvent.decode(request.get_data())
        except MessageError as exc:
            raise RequestRejected(exc.message) from None
        if event.job_id != checked(job_id):
            raise RequestRejected("The event names another job.")
        updated = store.apply(event)
        job = updated or store.get(job_id)
        return Response(job.model_dump_json(), mimetype="application/json",
                        headers={"X-Siphon-Applied": "true" if updated else "false"})

    @app.delete("/jobs/<job_id>")
    def delete_job(job_id: str):
        store.delete(checked(job_id))
        return "", 204

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    @app.get("/readyz")
    def readyz():
        store.check()
        return jsonify(status="ready")

    return app

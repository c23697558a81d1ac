"""The metadata service's internal HTTP API (see ``shared/metadata_client.py`` for the contract)."""

from __future__ import annotations

import redis
from flask import Flask, Response, jsonify, request

from services.metadata.store import JobStore
from shared.config import Settings, settings
from shared.errors import JobNotFound, RequestRejected
from shared.http import install_json_errors
from shared.jobs import Job, is_valid_job_id
from shared.storage import make_storage


def make_store(s: Settings) -> JobStore:
    """A job store on the configured Redis and storage backend (connects on first use)."""
    return JobStore(redis.Redis.from_url(s.redis_url, socket_timeout=5, socket_connect_timeout=5), s.redis_prefix, make_storage(s))


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
        return Response(store.get(checked(job_id)).model_dump_json(), mimetype="application/json")

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

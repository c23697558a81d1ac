"""The metadata service's internal HTTP API (see ``shared/metadata_client.py`` for the contract)."""

from __future__ import annotations

from flask import Flask, Response, jsonify, request

from services.metadata.bootstrap import metadata_parts
from services.metadata.control import WorkerControl
from services.metadata.index import JobIndex, page_size, status_filter
from services.metadata.metrics import JobsByStateCollector
from services.metadata.outputs import OutputCache
from services.metadata.store import JobStore
from services.metadata.unfinished import UnfinishedJobs
from shared.auth import KEY_NAME, warn_if_open
from shared.broker import ConfirmingPublisher, Topology
from shared.config import Settings, settings
from shared.errors import JobNotFound, MessageError, RequestRejected, SiphonError
from shared.http import install_job_log_context, install_json_errors
from shared.jobs import Job, JobStatus, is_valid_job_id
from shared.messages import JobEvent
from shared.metrics import install_metrics

MAX_WAIT_SECONDS = 60.0
"""Longest ``GET /jobs/<id>?wait=`` long-poll, seconds (a greenlet of the gevent worker is held meanwhile)."""


def make_store(s: Settings) -> JobStore:
    """A job store on the configured Redis and storage backend (connects on first use), keeping the
    job index, the change feed and each job's follow-ups in step (``bootstrap.py``)."""
    return metadata_parts(s).store


def make_control(s: Settings) -> WorkerControl:
    """Commands to the conversion workers over RabbitMQ (connects on first use): one connection
    per process, whatever the number of greenlets (gevent worker) that cancel at once."""
    topology = Topology.from_settings(s)
    return WorkerControl(ConfirmingPublisher(s, topology, per_thread=False))


def owner_filter(raw: str | None) -> str | None:
    """``owner`` as a key name to list the jobs of, or None for every owner's.

    Raises:
        RequestRejected: not a key name (400 ``invalid_owner``).
    """
    if raw is None:
        return None
    if not KEY_NAME.fullmatch(raw):
        raise RequestRejected("'owner' must be an API key's name.", code="invalid_owner")
    return raw


def create_app(
    s: Settings | None = None,
    store: JobStore | None = None,
    control: WorkerControl | None = None,
    index: JobIndex | None = None,
    outputs: OutputCache | None = None,
) -> Flask:
    """The Flask app; tests pass their own settings, store, worker control, index or output cache
    (by default the index and the cache share the store's Redis)."""
    s = s or settings()
    store = store or make_store(s)
    control = control or make_control(s)
    index = index or JobIndex(store.redis, store.prefix)
    unfinished = UnfinishedJobs(store.redis, store.prefix)
    outputs = outputs or OutputCache(store.redis, store.prefix, store.storage, enabled=s.output_cache)
    warn_if_open(s.api_keys_file, "metadata")
    app = Flask(__name__)
    install_json_errors(app)
    install_job_log_context(app)
    install_metrics(app, JobsByStateCollector(index))

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
        job = outputs.reuse(job)  # an identical earlier upload: completed at once, from its output
        try:
            store.create(job)
        except SiphonError:
            if job.cached:
                outputs.release(job)
            raise
        return Response(job.model_dump_json(), status=201, mimetype="application/json")

    @app.get("/jobs")
    def list_jobs():
        """``?status=&limit=&cursor=&owner=``: ``{"jobs": [Job, ...], "next_cursor"}``, newest first
        (only ``owner``'s jobs when given)."""
        page = index.page(
            status_filter(request.args.get("status")),
            page_size(request.args.get("limit")),
            request.args.get("cursor") or None,
            owner_filter(request.args.get("owner")),
        )
        jobs = []
        for job_id in page.job_ids:
            try:
                jobs.append(store.get(job_id).model_dump(mode="json"))
            except JobNotFound:  # forgotten between the index read and now
                continue
        return jsonify(jobs=jobs, next_cursor=page.next_cursor)

    @app.get("/jobs/<job_id>")
    def get_job(job_id: str):
        """``?wait=<seconds>`` (at most :data:`MAX_WAIT_SECONDS`) answers once the job is terminal."""
        wait = min(request.args.get("wait", 0.0, type=float), MAX_WAIT_SECONDS)
        if wait > 0:
            return Response(store.wait_terminal(checked(job_id), wait).model_dump_json(), mimetype="application/json")
        return Response(store.get_json(checked(job_id)), mimetype="application/json")

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
        return Response(
            job.model_dump_json(),
            mimetype="application/json",
            headers={"X-Siphon-Applied": "true" if updated else "false"},
        )

    @app.post("/jobs/<job_id>/cancel")
    def cancel_job(job_id: str):
        """Cancel a queued or processing job (its input and output deleted, its worker told to stop);
        answers the job afterwards: ``cancelled``, or ``completed``/``failed`` when it was too late."""
        job, _ = store.cancel(checked(job_id))
        if job.status is JobStatus.CANCELLED:  # again on a repeated cancel: the first broadcast may have failed
            control.cancel(job_id)
        return Response(job.model_dump_json(), mimetype="application/json")

    @app.delete("/jobs/<job_id>")
    def delete_job(job_id: str):
        store.delete(checked(job_id))
        return "", 204

    @app.get("/unfinished")
    def count_unfinished():
        """``?subject=``: ``{"subject", "count"}``, its queued and processing jobs (QUOTA_UNFINISHED_JOBS)."""
        subject = request.args.get("subject") or ""
        if not subject:
            raise RequestRejected("'subject' is missing.", code="invalid_subject")
        return jsonify(subject=subject, count=unfinished.count(subject))

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok", auth="keys" if s.api_keys_file is not None else "off")

    @app.get("/readyz")
    def readyz():
        store.check()
        return jsonify(status="ready")

    return app

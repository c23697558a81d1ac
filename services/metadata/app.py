"""The metadata service's internal HTTP API (see ``shared/metadata_client.py`` for the contract):
the job records (``job_routes.py``), the unfinished-job counts and the health checks
(``health_routes.py``), on the parts ``bootstrap.py`` builds."""

from __future__ import annotations

from flask import Flask

from services.metadata.api import EXTENSION, ApiParts
from services.metadata.bootstrap import make_control, metadata_parts
from services.metadata.control import WorkerControl
from services.metadata.health_routes import service
from services.metadata.index import JobIndex
from services.metadata.job_routes import jobs
from services.metadata.metrics import JobsByStateCollector
from services.metadata.outputs import OutputCache
from services.metadata.store import JobStore
from services.metadata.unfinished import UnfinishedJobs
from shared.auth import warn_if_open
from shared.config import Settings, settings
from shared.http import install_job_log_context, install_json_errors
from shared.metrics import install_metrics


def create_app(
    s: Settings | None = None,
    store: JobStore | None = None,
    control: WorkerControl | None = None,
    index: JobIndex | None = None,
    outputs: OutputCache | None = None,
) -> Flask:
    """The Flask app on the parts of :func:`~services.metadata.bootstrap.metadata_parts` (built
    once); tests pass their own settings, store, worker control, index or output cache (by default
    a given store's Redis serves the index, the cache and the unfinished-job counts)."""
    s = s or settings()
    warn_if_open(s.api_keys_file, "metadata")
    if store is None:
        built = metadata_parts(s)
        store, index, outputs = built.store, index or built.index, outputs or built.outputs
    api = ApiParts(
        settings=s,
        store=store,
        index=index or JobIndex(store.redis, store.prefix),
        outputs=outputs or OutputCache(store.redis, store.prefix, store.storage, enabled=s.output_cache),
        unfinished=UnfinishedJobs(store.redis, store.prefix),
        control=control or make_control(s),
    )
    app = Flask(__name__)
    app.extensions[EXTENSION] = api
    install_json_errors(app)
    install_job_log_context(app)
    install_metrics(app, JobsByStateCollector(api.index))
    app.register_blueprint(jobs)
    app.register_blueprint(service)
    return app

"""Prometheus metrics plumbing: what ``/metrics`` shows, in a Flask app or on its own port.

Each service defines its own metrics (``services/<name>/metrics.py``); this module only exposes them.

* Under gunicorn (several worker processes) prometheus_client runs in multiprocess mode: every
  worker writes its samples to files in ``PROMETHEUS_MULTIPROC_DIR`` (``shared/gunicorn_hooks.py``
  makes a fresh one per server start) and ``/metrics`` sums the files of all of them, so a scrape
  answered by any worker is the whole server's.
* A plain process (a conversion worker, the metadata event consumer) serves its default registry
  with :func:`start_metrics_server` on ``METRICS_PORT``.
* Collectors passed to either compute their values at scrape time (jobs by state, queue depth):
  nothing on a request's or a task's path pays for them.
"""

from __future__ import annotations

import logging
import os
from wsgiref.simple_server import WSGIServer

from flask import Flask, Response
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess, start_http_server
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

from shared.errors import ConfigError

log = logging.getLogger(__name__)

MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def scrape_registry(*collectors: Collector) -> CollectorRegistry:
    """This process's metrics (or, in multiprocess mode, every worker's, summed) plus ``collectors``."""
    registry = CollectorRegistry()
    if os.environ.get(MULTIPROC_DIR_VARIABLE):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(REGISTRY)
    for collector in collectors:
        registry.register(collector)
    return registry


def install_metrics(app: Flask, *collectors: Collector) -> None:
    """Serve ``GET /metrics`` (Prometheus text format 0.0.4) from ``app``."""
    registry = scrape_registry(*collectors)

    @app.get("/metrics")
    def metrics():
        return Response(generate_latest(registry), content_type=CONTENT_TYPE_PLAIN_0_0_4)


def start_metrics_server(port: int, *collectors: Collector, host: str = "0.0.0.0") -> WSGIServer | None:
    """Serve ``/metrics`` on ``host``:``port`` (default: every interface) from a daemon thread; port 0 serves nothing.
    Returns the server (tests shut it down), or None.

    Raises:
        ConfigError: the port cannot be bound (``METRICS_PORT: ...``).
    """
    if not port:
        return None
    try:
        server, _ = start_http_server(port, addr=host, registry=scrape_registry(*collectors))
    except OSError as exc:
        raise ConfigError(f"METRICS_PORT: cannot listen on {port}: {exc.strerror}") from None
    log.info("metrics on port %d at /metrics", port)
    return server

"""``/metrics`` plumbing (``shared.metrics``): a Flask route, a port of its own, collectors at scrape time."""

from __future__ import annotations

import socket

import pytest
from flask import Flask
from prometheus_client.core import GaugeMetricFamily
from werkzeug.test import Client

from shared.errors import ConfigError
from shared.metrics import install_metrics, start_metrics_server
from tests.support.net import free_port


class CountingCollector:
    """A collector that counts how often it was asked (at scrape time, never before)."""

    def __init__(self):
        self.scrapes = 0

    def collect(self):
        self.scrapes += 1
        gauge = GaugeMetricFamily("siphon_test_scrapes", "Scrapes so far.")
        gauge.add_metric([], self.scrapes)
        yield gauge


def test_install_metrics_serves_the_process_metrics_and_the_collectors_in_prometheus_text():
    app, collector = Flask(__name__), CountingCollector()
    install_metrics(app, collector)
    assert collector.scrapes == 0, "collectors run at scrape time only"
    response = app.test_client().get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=0.0.4")
    text = response.get_data(as_text=True)
    assert "siphon_test_scrapes 1.0" in text
    assert "python_info" in text, "the default registry's metrics are there too"


def test_start_metrics_server_with_port_0_serves_nothing():
    assert start_metrics_server(0) is None


def test_start_metrics_server_listens_on_its_port_and_serves_the_collectors():
    port = free_port()
    server = start_metrics_server(port, CountingCollector(), host="127.0.0.1")
    try:
        assert server.server_address == ("127.0.0.1", port)
        text = Client(server.get_app()).get("/metrics").get_data(as_text=True)  # unit tests do not connect
        assert "siphon_test_scrapes 1.0" in text
    finally:
        server.shutdown()
        server.server_close()


def test_a_port_in_use_stops_the_process_with_a_line_naming_metrics_port():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(ConfigError, match=r"^METRICS_PORT: cannot listen on \d+"):
            start_metrics_server(taken.getsockname()[1], host="127.0.0.1")

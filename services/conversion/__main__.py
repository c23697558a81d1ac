"""Entry point: ``python -m services.conversion`` runs one worker process (run as many as you like);
with ``METRICS_PORT`` set it serves its Prometheus metrics there (``services/conversion/metrics.py``)."""

from __future__ import annotations

import signal

from services.conversion.worker import ConversionWorker
from shared.config import settings
from shared.logs import configure_logging
from shared.metrics import start_metrics_server
from shared.storage import make_storage


def main() -> None:
    s = settings()
    configure_logging("conversion", s.log_level)
    start_metrics_server(s.metrics_port, host=s.metrics_host)
    worker = ConversionWorker(s, make_storage(s))
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    signal.signal(signal.SIGINT, lambda *_: worker.stop())
    worker.run()


if __name__ == "__main__":
    main()

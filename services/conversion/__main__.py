"""Entry point: ``python -m services.conversion`` runs one worker process (run as many as you like);
with ``METRICS_PORT`` set it serves its Prometheus metrics there (``services/conversion/metrics.py``).

Before it takes a task it applies the configured ``SANDBOX`` once (``services/conversion/sandbox.py``);
if that fails it exits 1 with one line naming what is missing, and ``SANDBOX=off`` is logged."""

from __future__ import annotations

import logging
import signal
import sys

from services.conversion.converter import Converter
from services.conversion.sandbox import Sandbox
from services.conversion.worker import ConversionWorker
from shared.config import settings
from shared.errors import ConfigError
from shared.logs import configure_logging
from shared.metrics import start_metrics_server
from shared.storage import make_storage


def main() -> None:
    s = settings()
    configure_logging("conversion", s.log_level)
    sandbox = Sandbox.from_settings(s)
    try:
        sandbox.check()
    except ConfigError as exc:
        sys.exit(str(exc))
    if not sandbox.enabled:
        logging.getLogger(__name__).warning(
            "SANDBOX=off: ffmpeg, ffprobe and the forked libav children run unconfined (network, files, no rlimits)"
        )
    start_metrics_server(s.metrics_port, host=s.metrics_host)
    worker = ConversionWorker(s, make_storage(s), Converter(s, sandbox))
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    signal.signal(signal.SIGINT, lambda *_: worker.stop())
    worker.run()


if __name__ == "__main__":
    main()

"""Entry point: ``python -m services.conversion`` runs one worker process (run as many as you like);
with ``METRICS_PORT`` set it serves its Prometheus metrics there (``services/conversion/metrics.py``).

Before it takes a task it applies the configured ``SANDBOX`` once (``services/conversion/sandbox.py``);
if that fails it exits 1 with one line naming what is missing, and ``SANDBOX=off`` is logged. It
asks its ffmpeg for its encoders and filters once (``shared.video_codecs``; not in its first video
job) and logs the video codecs it can encode and whether it can tone-map HDR, with a warning for any
codec that ``VIDEO_CODECS`` offers and it cannot encode (those jobs would fail
``video_codec_unavailable``)."""

from __future__ import annotations

import logging
import signal
import sys

from services.conversion.converter import Converter
from services.conversion.sandbox import Sandbox
from services.conversion.worker import ConversionWorker
from shared.config import Settings, settings
from shared.errors import ConfigError
from shared.logs import configure_logging
from shared.metrics import start_metrics_server
from shared.storage import make_storage
from shared.video_codecs import ffmpeg_filters, offered_video_codecs


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
    log_video_codecs(s)
    start_metrics_server(s.metrics_port, host=s.metrics_host)
    worker = ConversionWorker(s, make_storage(s), Converter(s, sandbox))
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    signal.signal(signal.SIGINT, lambda *_: worker.stop())
    worker.run()


def log_video_codecs(s: Settings) -> None:
    """Log what this worker's ffmpeg encodes and whether it tone-maps HDR (its zscale filter); warn
    when ``VIDEO_CODECS`` offers more. Both listings are cached for the jobs."""
    log = logging.getLogger(__name__)
    encodable = offered_video_codecs("auto", s.ffmpeg_path)
    log.info("video codecs this worker's ffmpeg encodes: %s", ", ".join(encodable) or "none")
    tonemaps = "zscale" in ffmpeg_filters(s.ffmpeg_path)
    log.info("HDR input is %s", "tone-mapped (zscale)" if tonemaps else "not tone-mapped: this ffmpeg has no zscale")
    missing = sorted(set(offered_video_codecs(s.video_codecs, s.ffmpeg_path)) - set(encodable))
    if missing:
        log.warning("VIDEO_CODECS offers %s, which this worker's ffmpeg cannot encode", ", ".join(missing))


if __name__ == "__main__":
    main()

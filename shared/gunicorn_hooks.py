"""gunicorn server hooks for prometheus_client's multiprocess mode, shared by the HTTP services'
``gunicorn.conf.py`` files (which take their JSON log config from ``shared.logs``)::

    from shared.gunicorn_hooks import child_exit, on_exit, on_starting  # noqa: F401 (gunicorn hooks)
    from shared.logs import gunicorn_logconfig

    logconfig_dict = gunicorn_logconfig("gateway")

The hooks run in gunicorn's master process. ``on_starting`` points ``PROMETHEUS_MULTIPROC_DIR`` at an
empty directory before any worker is forked (workers import prometheus_client after the fork, so
they all write their samples there); ``child_exit`` drops a dead worker's live gauges;
``on_exit`` removes the directory if it made it. This module must not import prometheus_client at
the top: the master would then fix its value class before the variable is set.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
_made_dir: Path | None = None


def on_starting(server) -> None:
    """Give this server an empty metrics directory: the one ``PROMETHEUS_MULTIPROC_DIR`` names
    (emptied: samples of an earlier run would be summed in), else a fresh temporary one."""
    global _made_dir
    configured = os.environ.get(MULTIPROC_DIR_VARIABLE)
    if configured:
        directory = Path(configured)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()
    else:
        _made_dir = Path(tempfile.mkdtemp(prefix=f"siphon-metrics-{os.getpid()}-"))
        os.environ[MULTIPROC_DIR_VARIABLE] = str(_made_dir)


def child_exit(server, worker) -> None:
    """A worker died: its live gauges must not be summed any more (its counters stay)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    """Remove the metrics directory :func:`on_starting` made."""
    if _made_dir is not None:
        shutil.rmtree(_made_dir, ignore_errors=True)

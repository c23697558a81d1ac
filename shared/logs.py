"""Structured JSON logs, one object per line, with the ``job_id`` of the job being worked on.

Use :func:`job_context` around work on one job; every record logged inside it carries the id.
gunicorn's own lines are JSON too (:func:`gunicorn_logconfig`): its access lines name the request
and carry the ``job_id`` that their path holds (``/status/<job_id>``, ``/download/<job_id>.mp3``).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
import threading
import time
from collections.abc import Iterator, Mapping

_job_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("job_id", default=None)

ACCESS_LOGGER = "gunicorn.access"
MAX_LOGGED_PATH_CHARS = 256
"""Longest request path an access line keeps (a malformed job id may be 1 MB), characters."""
JOB_ID_IN_PATH = re.compile(r"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])")
"""A job id (``shared.jobs.JOB_ID_PATTERN``) standing alone in a request path."""
_ENCODER = json.JSONEncoder(default=str)
"""``json.dumps(entry, default=str)`` without a new encoder per line (``dumps`` makes one for any
non-default option)."""


class JsonFormatter(logging.Formatter):
    """Formats a record as ``{"ts", "level", "service", "logger", "msg", "job_id"?, "exc"?}``."""

    def __init__(self, service: str):
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
        }
        job_id = getattr(record, "job_id", None) or _job_id.get()
        if record.name == ACCESS_LOGGER and isinstance(record.args, Mapping):
            entry.update(access_fields(record.args))
            job_id = job_id or job_id_in_path(entry["path"])
        else:
            entry["msg"] = record.getMessage()
        if job_id:
            entry["job_id"] = job_id
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return _ENCODER.encode(entry)


def access_fields(atoms: Mapping) -> dict:
    """An access line's fields from gunicorn's atoms: ``msg`` ("GET /path 200"), ``method``,
    ``path`` (cut to :data:`MAX_LOGGED_PATH_CHARS`), ``status``, ``bytes`` sent, ``seconds``, ``remote``."""
    get = atoms.get  # plain dict lookups: gunicorn's SafeAtoms.__getitem__ costs more than the rest
    method, path, status = get("m"), str(get("U"))[:MAX_LOGGED_PATH_CHARS], get("s")
    sent, micros = get("B"), get("D")
    return {
        "msg": f"{method} {path} {status}",
        "method": method,
        "path": path,
        "status": status if isinstance(status, int) else int(status) if str(status).isdigit() else status,
        "bytes": sent if isinstance(sent, int) else None,
        "seconds": micros / 1e6 if isinstance(micros, int) else None,
        "remote": get("h"),
    }


def job_id_in_path(path: str) -> str | None:
    """The job id a request path names (``/status/<job_id>``, ``/jobs/<job_id>/events``), if any."""
    match = JOB_ID_IN_PATH.search(path, 0, MAX_LOGGED_PATH_CHARS)
    return match.group() if match else None


def configure_logging(service: str, level: str = "INFO") -> None:
    """Send every logger's records to stderr as JSON lines tagged with ``service``; so do Python's
    warnings and uncaught exceptions (also in threads), which would otherwise print plain text."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("pika").setLevel(logging.WARNING)
    logging.getLogger("botocore").setLevel(logging.WARNING)
    logging.Formatter.converter = time.gmtime
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = lambda args: _log_uncaught(args.exc_type, args.exc_value, args.exc_traceback)


def _log_uncaught(exc_type, exc_value, exc_traceback) -> None:
    if not issubclass(exc_type, KeyboardInterrupt):
        logging.getLogger("uncaught").critical("uncaught exception", exc_info=(exc_type, exc_value, exc_traceback))


def gunicorn_logconfig(service: str, level: str = "INFO") -> dict:
    """gunicorn's ``logconfig_dict``: its error and access lines, like every other record, go to
    stderr as JSON tagged with ``service`` (the worker's :func:`configure_logging` keeps that)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter, "service": service}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": [], "propagate": True},
            ACCESS_LOGGER: {"level": "INFO", "handlers": [], "propagate": True},
        },
    }


@contextlib.contextmanager
def job_context(job_id: str | None) -> Iterator[None]:
    """Tag every log record emitted inside the block with ``job_id``."""
    token = _job_id.set(job_id)
    try:
        yield
    finally:
        _job_id.reset(token)

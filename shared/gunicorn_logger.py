"""gunicorn's ``logger_class`` for the HTTP services (https://docs.gunicorn.org/en/stable/settings.html#logger-class).

siphon's access line (:func:`shared.logs.access_fields`) uses six of gunicorn's atoms: ``h``
(remote address), ``m`` (method), ``U`` (path), ``s`` (status), ``B`` (bytes sent) and ``D``
(microseconds). gunicorn's own ``Logger.atoms`` builds some fifty for every request (each request
header, response header and WSGI environ variable, and an Apache-format timestamp), and its
``SafeAtoms`` then copies them all to escape quotes for a plain-text format that siphon does not
use (its lines are JSON, which escapes by itself). This logger builds the six: under the
``/status`` load that saved ~0.03 of the gateway's 0.73 ms and ~0.04 of the metadata service's
0.53 ms of CPU per request (docs/performance.md).

It also hands each access record to the ``gunicorn.access`` logger without ``Logger.info``'s look
up the stack for the calling source line (``findCaller``), which no JSON line shows.
"""

from __future__ import annotations

import logging
import traceback

from gunicorn.glogging import Logger


class Atoms(dict):
    """An access record's atoms; an atom it lacks reads ``-``, as in gunicorn's ``SafeAtoms``, so a
    plain-text ``access_log_format`` still formats. No quote escaping: the JSON formatter escapes."""

    def __missing__(self, key: str) -> str:
        return "-"


class AccessLogger(Logger):
    """gunicorn's Logger, whose access records carry only the atoms siphon's JSON line reads.

    Every other part (the error log, ``logconfig_dict``, reopening files) is gunicorn's.
    """

    atoms_wrapper_class = Atoms

    def access(self, resp, req, environ, request_time) -> None:
        """The request's access record, through the ``gunicorn.access`` logger's level, filters and
        handlers as ``Logger.info`` would pass it (what ``logconfig_dict`` sets stays in force),
        only made without the caller's file and line (logging's ``(unknown file)``, as when
        ``logging._srcfile`` is None). gunicorn's own gate (is any access log configured?) is
        left out: siphon's configs always set ``logconfig_dict``, and without any the access
        logger has no handler, so the record would go nowhere. With the encoder made once
        (``shared/logs.py``), a line took ~33 instead of ~43 us of CPU in-process (medians of 6)."""
        logger = self.access_log
        if not logger.isEnabledFor(logging.INFO):
            return
        atoms = self.atoms_wrapper_class(self.atoms(resp, req, environ, request_time))
        try:
            logger.handle(
                logger.makeRecord(
                    logger.name, logging.INFO, "(unknown file)", 0, self.cfg.access_log_format, (atoms,), None
                )
            )
        except Exception:
            self.error(traceback.format_exc())

    def atoms(self, resp, req, environ, request_time) -> dict:
        """``{"h", "m", "U", "s", "B", "D"}``: remote address, method, path, status code (int),
        bytes sent (int, or None before any were), request time in microseconds (int)."""
        return {
            "h": environ.get("REMOTE_ADDR", "-"),
            "m": environ.get("REQUEST_METHOD"),
            "U": environ.get("PATH_INFO"),
            "s": resp.status_code,
            "B": getattr(resp, "sent", None),
            "D": request_time.seconds * 1_000_000 + request_time.microseconds,
        }

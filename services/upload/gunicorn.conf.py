"""gunicorn settings of the upload service; the shared ones and why are in shared/gunicorn_base.py."""

from gunicorn.http.unreader import SocketUnreader

from shared.gunicorn_base import *  # noqa: F403
from shared.gunicorn_base import LOG_LEVEL
from shared.gunicorn_base import post_fork as shared_post_fork
from shared.logs import gunicorn_logconfig

worker_class = "gthread"  # it hashes and writes whole uploads

# gunicorn's error and access lines as JSON, like the app's (access lines carry the job_id of their path).
logconfig_dict = gunicorn_logconfig("upload", LOG_LEVEL)

BODY_RECV_BYTES = 256 * 1024
"""Largest ``recv`` of a request body, bytes: the multipart parser's read
(``services/upload/receive.py``: ``BODY_READ_BYTES``; a test keeps the two equal)."""


def post_fork(server, worker) -> None:
    """The shared hook, then gunicorn's body reads sized to the parser's. gunicorn receives up to
    ``SocketUnreader.max_body_chunk`` (1 MiB) per ``recv``; asked for 256 KiB, it keeps the rest and
    copies it again on every following read: receiving 256 KiB at a time saved ~1.5 ms of the
    upload service's CPU per 12.8 MB upload (issue #16; median of 6 paired runs). The attribute
    has no setting of its own; tests/unit/upload/test_gunicorn_conf.py checks that the installed
    gunicorn still reads it."""
    shared_post_fork(server, worker)
    SocketUnreader.max_body_chunk = BODY_RECV_BYTES

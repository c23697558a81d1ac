"""gunicorn settings of the gateway; the shared ones and why are in shared/gunicorn_base.py."""

import gevent

from shared.gunicorn_base import *  # noqa: F403
from shared.gunicorn_base import LOG_LEVEL
from shared.logs import gunicorn_logconfig

worker_class = "gevent"  # its requests wait on metadata, storage and the upload service

# gunicorn's error and access lines as JSON, like the app's (access lines carry the job_id of their path).
logconfig_dict = gunicorn_logconfig("gateway", LOG_LEVEL)
limit_request_line = 0  # a 1 MB job id must reach the app and get its JSON 404


def post_request(worker, req, environ, resp):
    """Let the worker's other connections run after each request. A greenlet runs until it waits
    on a socket; a cached ``/status`` answer waits on nothing, and on keep-alive the client's next
    request is often already there, so one fast client was served back to back while the
    process's other connections waited: under ``wrk -c64`` a few starved for a second or more
    (p99 0.6-1.2 s, some requests timed out), against 0.2-0.3 s with this yield on the same loaded
    machine. ``gevent.sleep(0)`` puts the greenlet behind the ready ones (https://www.gevent.org/api/gevent.html#gevent.sleep)."""
    gevent.sleep(0)

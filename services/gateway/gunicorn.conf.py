"""gunicorn settings of the gateway; the shared ones and why are in shared/gunicorn_base.py."""

import gevent

from shared.gunicorn_base import *  # noqa: F403
from shared.gunicorn_base import LOG_LEVEL
from shared.logs import gunicorn_logconfig

worker_class = "gevent"  # its requests wait on metadata, storage and the upload service

# gunicorn's error and access lines as JSON, like the app's (access lines carry the job_id of their path).
logconfig_dict = gunicorn_logconfig("gateway", LOG_LEVEL)
limit_request_line = 0  # a 1 MB job id must reach the app and get its JSON 404


YIELD_SECONDS = 1e-6
"""How long a worker's greenlet steps aside after each request, seconds: any time above 0 (below)."""


def post_request(worker, req, environ, resp):
    """Let the worker's other connections run after each request. A greenlet runs until it waits
    on a socket; a cached ``/status`` answer waits on nothing, and on keep-alive the client's next
    request is often already there, so one fast client was served back to back while the
    process's other connections (and new ones, accepted one per loop cycle) waited: under
    ``wrk -c64`` p99 was 0.5-1.1 s with some requests timed out. ``gevent.sleep(0)`` is not
    enough: it may resume the greenlet before the loop polls its sockets again (p99 0.16-0.85 s);
    any sleep above 0 resumes it only in the next loop cycle, after the poll
    (https://www.gevent.org/api/gevent.html#gevent.sleep): p99 0.06-0.29 s, all on the same
    loaded machine (load average 7-10 on 2 cores, other suites running)."""
    gevent.sleep(YIELD_SECONDS)

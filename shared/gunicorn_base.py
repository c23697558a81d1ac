"""gunicorn settings the three HTTP services share (https://docs.gunicorn.org/en/stable/settings.html).

Each service's ``gunicorn.conf.py`` star-imports this module, names its worker class and adds its
JSON log config and its own exceptions. ``graceful_timeout`` bounds a rolling restart (seconds).

Two worker classes, each where it pays:

* ``gevent`` (gateway, metadata): every connection is a greenlet, at most ``WEB_CONNECTIONS`` per
  process. Their requests are short I/O waits (the gateway on metadata, metadata on Redis), and a
  greenlet switch costs less CPU than waking an OS thread: ``GET /status`` took ~20 % less CPU and
  answered ~25 % more requests per second than with gthread (docs/performance.md). A request
  that computes blocks its whole process, so neither service may do heavy CPU work in a request.
* ``gthread`` (upload): each request holds one of ``WEB_THREADS`` threads. The upload service
  hashes and writes whole files, which would stall a greenlet loop.

The bound on slow clients: gunicorn has no timeout on reading a request's head or body, so a
trickling client holds a gateway connection (one of ``WEB_WORKERS × WEB_CONNECTIONS``) and, once
its body is forwarded, an upload thread (one of ``WEB_WORKERS × WEB_THREADS``, 64 by default);
past a handful they are the proxy's to absorb (nginx buffers request bodies: docs/reliability.md,
item 15).
"""

import os

from shared.gunicorn_hooks import child_exit, on_exit, on_starting  # noqa: F401 (server hooks: metrics files)
from shared.malloc import keep_large_buffers

workers = int(os.environ.get("WEB_WORKERS", "2"))
threads = int(os.environ.get("WEB_THREADS", "32"))  # gthread
worker_connections = int(os.environ.get("WEB_CONNECTIONS", "1000"))  # gevent
logger_class = "shared.gunicorn_logger.AccessLogger"  # access lines as cheap as their JSON needs
timeout = 60
graceful_timeout = 30
keepalive = 5
LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO")


def post_fork(server, worker) -> None:
    """gunicorn's hook in each new worker, before it starts its threads or greenlets: large
    request-body buffers are reused instead of mapped afresh (``shared/malloc.py``)."""
    keep_large_buffers()

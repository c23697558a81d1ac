"""gunicorn settings the three HTTP services share (https://docs.gunicorn.org/en/stable/settings.html).

Each service's ``gunicorn.conf.py`` star-imports this module and adds its JSON log config and its
own exceptions. gthread workers: each request holds a thread, not a process, so long uploads and
downloads do not starve other users; ``graceful_timeout`` bounds a rolling restart (seconds). The
bound on slow clients: gunicorn commits a thread to a connection once its first byte arrives and
has no timeout on reading the body, so ``WEB_WORKERS × WEB_THREADS`` clients trickling uploads (64
by default) would hold every thread; past a handful they are the proxy's to absorb (nginx buffers
request bodies: docs/reliability.md, item 15).
"""

import os

from shared.gunicorn_hooks import child_exit, on_exit, on_starting  # noqa: F401 (server hooks: metrics files)

workers = int(os.environ.get("WEB_WORKERS", "2"))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "32"))
timeout = 60
graceful_timeout = 30
keepalive = 5
LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO")

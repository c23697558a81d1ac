"""gunicorn settings (https://docs.gunicorn.org/en/stable/settings.html).

gthread workers: each request holds a thread, not a process, so slow clients and long uploads
do not starve other users; graceful_timeout bounds a rolling restart. The bound: gunicorn commits
a thread to a connection once its first byte arrives and has no timeout on reading the body, so
WEB_WORKERS x WEB_THREADS clients trickling uploads (64 by default) would hold every thread; past
a handful, slow clients are the proxy's to absorb (docs/reliability.md, item 15).
"""

import os

from shared.gunicorn_hooks import child_exit, on_exit, on_starting  # noqa: F401 (server hooks: metrics files)
from shared.logs import gunicorn_logconfig

workers = int(os.environ.get("WEB_WORKERS", "2"))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "32"))
timeout = 60
graceful_timeout = 30
keepalive = 5
# gunicorn's error and access lines as JSON, like the app's (access lines carry the job_id of their path).
logconfig_dict = gunicorn_logconfig("upload", os.environ.get("LOG_LEVEL", "INFO"))

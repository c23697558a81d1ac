"""gunicorn settings (https://docs.gunicorn.org/en/stable/settings.html).

gthread workers: each request holds a thread, not a process, so slow clients and long uploads
do not starve other users; graceful_timeout bounds a rolling restart.
"""

import os

workers = int(os.environ.get("WEB_WORKERS", "2"))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "32"))
timeout = 60
graceful_timeout = 30
keepalive = 5
accesslog = None

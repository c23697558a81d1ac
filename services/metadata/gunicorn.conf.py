"""gunicorn settings of the metadata service; the shared ones and why are in shared/gunicorn_base.py."""

from shared.gunicorn_base import *  # noqa: F403
from shared.gunicorn_base import LOG_LEVEL
from shared.logs import gunicorn_logconfig

worker_class = "gevent"  # its requests wait on Redis

# gunicorn's error and access lines as JSON, like the app's (access lines carry the job_id of their path).
logconfig_dict = gunicorn_logconfig("metadata", LOG_LEVEL)

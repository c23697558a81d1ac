"""gunicorn settings of the gateway; the shared ones and why are in shared/gunicorn_base.py."""

from shared.gunicorn_base import *  # noqa: F403
from shared.gunicorn_base import LOG_LEVEL
from shared.logs import gunicorn_logconfig

worker_class = "gevent"  # its requests wait on metadata, storage and the upload service

# gunicorn's error and access lines as JSON, like the app's (access lines carry the job_id of their path).
logconfig_dict = gunicorn_logconfig("gateway", LOG_LEVEL)
limit_request_line = 0  # a 1 MB job id must reach the app and get its JSON 404

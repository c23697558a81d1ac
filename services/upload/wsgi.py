"""gunicorn entry point: ``gunicorn services.upload.wsgi:app``."""

from shared.config import settings
from shared.logs import configure_logging

configure_logging("upload", settings().log_level)

from services.upload.app import create_app  # noqa: E402

app = create_app()

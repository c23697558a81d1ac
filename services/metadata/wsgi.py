"""gunicorn entry point: ``gunicorn services.metadata.wsgi:app``."""

from shared.config import settings
from shared.logs import configure_logging

configure_logging("metadata", settings().log_level)

from services.metadata.app import create_app  # noqa: E402

app = create_app()

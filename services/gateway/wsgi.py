"""gunicorn entry point: ``gunicorn services.gateway.wsgi:app``."""

from shared.config import settings
from shared.logs import configure_logging

configure_logging("gateway", settings().log_level)

from services.gateway.app import create_app  # noqa: E402

app = create_app()

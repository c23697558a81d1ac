"""The gateway's OpenAPI document is parsed once per session, not once per app."""

from __future__ import annotations

import pytest

from services.gateway import app as gateway_app
from services.gateway.pages import load_openapi


@pytest.fixture(scope="session")
def openapi() -> dict:
    return load_openapi()


@pytest.fixture(autouse=True)
def read_openapi_once(monkeypatch, openapi):
    monkeypatch.setattr(gateway_app, "load_openapi", lambda: openapi)


@pytest.fixture(autouse=True)
def no_rate_limits(monkeypatch):
    """The per-caller limits are off (they count in Redis); ``test_quotas.py`` turns them on with
    limits' in-memory storage."""
    for name in ("QUOTA_SUBMISSIONS_PER_MINUTE", "QUOTA_UNFINISHED_JOBS", "QUOTA_UPLOAD_BYTES_PER_DAY"):
        monkeypatch.setenv(name, "0")

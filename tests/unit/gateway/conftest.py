"""The gateway's OpenAPI document is parsed once per session, not once per app; the job records
in Redis are an empty fake unless a test passes its own (``records=``)."""

from __future__ import annotations

import pytest

from services.gateway import app as gateway_app
from services.gateway import bootstrap
from services.gateway.pages import load_openapi
from tests.unit.fakes import FakeJobRecords


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


@pytest.fixture(autouse=True)
def no_records_in_redis(monkeypatch):
    """Every read of a job record in Redis misses, so routes read from the (fake) metadata service."""
    monkeypatch.setattr(bootstrap, "make_job_records", lambda s: FakeJobRecords())

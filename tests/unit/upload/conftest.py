"""Recording fakes the upload service's unit tests share (each file keeps its own storage contents)."""

from __future__ import annotations

import pytest

from tests.unit.fakes import FakeMetadata, FakePublisher


@pytest.fixture
def metadata() -> FakeMetadata:
    return FakeMetadata()


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def progress() -> list[dict]:
    """Messages an intake sent to the progress queue, in order."""
    return []

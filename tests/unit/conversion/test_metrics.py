"""The worker's metrics, observed once per task (``services.conversion.metrics`` via ``TaskRunner``)."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from services.conversion.tasks import TaskRunner
from shared.config import load_settings
from shared.errors import MediaError
from shared.jobs import input_key, output_key
from shared.messages import ConversionTask
from tests.unit.fakes import FakeConverter, FakeStorage

JOB_ID = "0123456789abcdef0123456789abcdef"
TASK = ConversionTask(job_id=JOB_ID, input_key=input_key(JOB_ID), output_key=output_key(JOB_ID)).encode()


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def converter() -> FakeConverter:
    return FakeConverter()


@pytest.fixture
def runner(tmp_path, converter) -> TaskRunner:
    s = load_settings(work_dir=tmp_path / "work")
    return TaskRunner(s, FakeStorage({input_key(JOB_ID): b"video"}), converter, lambda event: None)


def test_a_conversion_is_observed_with_its_seconds_speed_and_output_bytes(runner, converter):
    before = (
        sample("siphon_conversion_seconds_count"),
        sample("siphon_conversion_realtime_factor_count"),
        sample("siphon_conversion_output_bytes_total"),
    )
    runner.handle(TASK, attempt=1)
    assert sample("siphon_conversion_seconds_count") == before[0] + 1
    assert sample("siphon_conversion_realtime_factor_count") == before[1] + 1
    assert sample("siphon_conversion_output_bytes_total") == before[2] + len(converter.audio)


def test_a_failed_job_is_counted_under_its_code_and_not_as_a_conversion(runner, converter):
    converter.fail("convert", MediaError("no samples", code="no_audio_frames"))
    before = sample("siphon_conversion_failures_total", code="no_audio_frames")
    conversions = sample("siphon_conversion_seconds_count")
    runner.handle(TASK, attempt=1)
    assert sample("siphon_conversion_failures_total", code="no_audio_frames") == before + 1
    assert sample("siphon_conversion_seconds_count") == conversions

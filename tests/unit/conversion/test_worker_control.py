"""A worker hearing cancel commands on its control queue (``ConversionWorker._on_command``), without a broker."""

from __future__ import annotations

import pytest

from services.conversion.worker import ConversionWorker, TaskInHand
from shared.config import load_settings
from shared.messages import WorkerCommand
from tests.unit.fakes import FakeConverter, FakeMetadata, FakeStorage

JOB_ID = "0123456789abcdef0123456789abcdef"
OTHER_JOB_ID = "f" * 32


def cancel(job_id: str) -> bytes:
    return WorkerCommand(action="cancel", job_id=job_id).encode()


@pytest.fixture
def converter() -> FakeConverter:
    return FakeConverter()


@pytest.fixture
def worker(tmp_path, converter) -> ConversionWorker:
    return ConversionWorker(load_settings(work_dir=tmp_path), FakeStorage(), converter, jobs=FakeMetadata())


def test_a_cancel_for_the_job_in_hand_flags_it_and_kills_ffmpeg(worker, converter):
    task = worker._task = TaskInHand(JOB_ID)
    worker._on_command(cancel(JOB_ID))
    assert task.cancelled.is_set() and converter.aborted_current == 1


def test_a_cancel_for_another_job_is_only_remembered(worker, converter):
    task = worker._task = TaskInHand(JOB_ID)
    worker._on_command(cancel(OTHER_JOB_ID))
    assert not task.cancelled.is_set() and converter.aborted_current == 0
    assert OTHER_JOB_ID in worker._cancels


def test_with_no_task_in_hand_a_cancel_is_remembered(worker, converter):
    worker._on_command(cancel(JOB_ID))
    assert list(worker._cancels) == [JOB_ID] and converter.aborted_current == 0


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{}",
        b'{"action": "explode", "job_id": "' + JOB_ID.encode() + b'"}',
        b'{"action": "cancel", "job_id": "../x"}',
    ],
)
def test_a_malformed_command_is_ignored(worker, converter, body):
    worker._task = TaskInHand(JOB_ID)
    worker._on_command(body)
    assert not worker._task.cancelled.is_set() and converter.aborted_current == 0 and not worker._cancels

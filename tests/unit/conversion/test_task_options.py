"""A task's options, progress reports and cancels in ``TaskRunner``, on fakes."""

from __future__ import annotations

import threading

import pytest

from services.conversion.encode import ConversionInterrupted
from services.conversion.tasks import PROGRESS_INTERVAL_SECONDS, ProgressReports, TaskRunner
from shared.broker import Settle
from shared.config import load_settings
from shared.errors import JobStoreUnavailable
from shared.jobs import Job, JobStatus, input_key, output_key
from shared.messages import ConversionTask, JobEvent
from shared.options import ConversionOptions
from tests.unit.fakes import FakeConverter, FakeMetadata, FakeStorage

JOB_ID = "0123456789abcdef0123456789abcdef"
OPTIONS = ConversionOptions(format="opus", bitrate=64, start=1.5)
TASK = ConversionTask(
    job_id=JOB_ID, input_key=input_key(JOB_ID), output_key=output_key(JOB_ID, "opus"), options=OPTIONS
).encode()
PLAIN_TASK = ConversionTask(job_id=JOB_ID, input_key=input_key(JOB_ID), output_key=output_key(JOB_ID)).encode()


@pytest.fixture
def storage() -> FakeStorage:
    return FakeStorage({input_key(JOB_ID): b"video"})


@pytest.fixture
def converter() -> FakeConverter:
    return FakeConverter(audio=b"OggS fake opus")


@pytest.fixture
def events() -> list[JobEvent]:
    return []


@pytest.fixture
def progress_events() -> list[JobEvent]:
    return []


@pytest.fixture
def cancelled() -> threading.Event:
    return threading.Event()


@pytest.fixture
def metadata() -> FakeMetadata:
    return FakeMetadata(Job.new(JOB_ID, "talk.mp4", 5))


@pytest.fixture
def runner(tmp_path, storage, converter, events, progress_events, cancelled, metadata) -> TaskRunner:
    s = load_settings(work_dir=tmp_path / "work")
    return TaskRunner(
        s, storage, converter, events.append, report_progress=progress_events.append, cancelled=cancelled, jobs=metadata
    )


def statuses(events: list[JobEvent]) -> list[JobStatus]:
    return [event.status for event in events]


def test_the_tasks_options_reach_the_converter_and_the_output_its_key(
    runner, converter, storage, events, progress_events
):
    assert runner.handle(TASK, attempt=1).settle is Settle.ACK
    assert converter.options == [OPTIONS]
    [target] = converter.called("convert")
    assert target.name == "output.opus"
    assert storage.objects[output_key(JOB_ID, "opus")] == converter.audio
    assert statuses(progress_events) == [JobStatus.PROCESSING] and progress_events[0].progress == 0
    assert statuses(events) == [JobStatus.COMPLETED] and events[-1].speed == 12.5


def test_a_plain_task_converts_with_the_default_options(runner, converter):
    runner.handle(PLAIN_TASK, attempt=1)
    assert converter.options == [ConversionOptions()]
    assert converter.called("convert")[0].name == "output.mp3"


def test_progress_goes_out_as_processing_reports_on_their_own_channel(runner, converter, events, progress_events):
    converter.progress = [0.0, 0.421, 1.0]
    interval = PROGRESS_INTERVAL_SECONDS
    runner.clock = iter([0.0, interval, 1.5 * interval, 1.9 * interval]).__next__  # the start, then each report
    runner.handle(TASK, attempt=2)
    assert statuses(events) == [JobStatus.COMPLETED], "neither the processing event nor the reports are confirmed"
    [start, report] = progress_events  # 100 % comes within the interval of 42 %
    assert (start.status, start.progress) == (JobStatus.PROCESSING, 0)
    assert (report.status, report.progress, report.attempt, report.job_id) == (JobStatus.PROCESSING, 42, 2, JOB_ID)


def test_a_conversion_shorter_than_the_interval_reports_no_progress(runner, converter, events, progress_events):
    converter.progress = [0.3, 0.7, 1.0]
    runner.clock = lambda: 0.0
    runner.handle(TASK, attempt=1)
    assert statuses(events) == [JobStatus.COMPLETED]
    assert [event.progress for event in progress_events] == [0], "the processing event was that half second's report"


def test_progress_reports_are_throttled_rising_and_below_100():
    sent: list[JobEvent] = []
    now = [0.0]
    reports = ProgressReports(sent.append, JOB_ID, attempt=1, retry=None, clock=lambda: now[0])
    for fraction, at in [
        (0.1, 0.0),
        (0.2, 0.1),
        (0.3, PROGRESS_INTERVAL_SECONDS),
        (0.4, PROGRESS_INTERVAL_SECONDS + 0.1),
        (0.3, 5.0),
        (0.25, 6.0),
        (1.0, 7.0),
        (1.0, 8.0),
    ]:
        now[0] = at
        reports(fraction)
    assert [event.progress for event in sent] == [30, 99], "none within the interval of the start (the 0 % event)"


def test_a_task_whose_job_was_cancelled_while_queued_is_skipped(runner, metadata, storage, converter, events):
    metadata.jobs[JOB_ID] = metadata.jobs[JOB_ID].model_copy(update={"status": JobStatus.CANCELLED})
    outcome = runner.handle(TASK, attempt=1)
    assert (outcome.settle, outcome.code) == (Settle.ACK, "cancelled")
    assert events == [] and storage.calls == [] and converter.calls == []


def test_a_task_the_worker_heard_cancelled_is_skipped_without_asking(runner, metadata, cancelled, events):
    cancelled.set()
    assert runner.handle(TASK, attempt=1).code == "cancelled"
    assert metadata.calls == [] and events == []


def test_an_unreachable_job_store_does_not_stop_the_work(runner, metadata, events):
    metadata.fail("get_job", JobStoreUnavailable("metadata service unreachable"))
    assert runner.handle(TASK, attempt=1).settle is Settle.ACK
    assert statuses(events) == [JobStatus.COMPLETED]


def test_a_cancel_during_the_conversion_stores_nothing_and_says_nothing_more(
    runner, converter, cancelled, storage, events
):
    converter.during = cancelled.set
    outcome = runner.handle(TASK, attempt=1)
    assert (outcome.settle, outcome.code) == (Settle.ACK, "cancelled")
    assert events == [], "no result event"
    assert output_key(JOB_ID, "opus") not in storage.objects


def test_ffmpeg_killed_by_a_cancel_is_acked_not_requeued(runner, converter, cancelled, events):
    def killed_by_cancel():
        cancelled.set()
        raise ConversionInterrupted("aborted")

    converter.during = killed_by_cancel
    outcome = runner.handle(TASK, attempt=1)
    assert (outcome.settle, outcome.code) == (Settle.ACK, "cancelled")
    assert events == [], "no result event"


def test_a_cancel_while_storing_deletes_what_was_stored(runner, storage, cancelled, events):
    real_put = storage.put_file

    def put_then_cancelled(key, path):
        size = real_put(key, path)
        cancelled.set()
        return size

    storage.put_file = put_then_cancelled
    assert runner.handle(TASK, attempt=1).code == "cancelled"
    assert output_key(JOB_ID, "opus") not in storage.objects
    assert events == [], "no result event"

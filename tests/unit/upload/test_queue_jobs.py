"""Jobs from the job queue (``services.upload.queue_jobs``): parsing, queuing and refusing, on fakes."""

from __future__ import annotations

import json

import pytest

from services.upload.intake import Intake
from services.upload.queue_jobs import JobQueueIntake, parse_job_message
from shared.broker import ACK, Settle, Topology
from shared.errors import BrokerUnavailable, JobStoreUnavailable, MessageError, RequestRejected
from shared.jobs import Job, JobStatus, new_job_id
from shared.messages import ConversionTask, JobEvent
from tests.unit.fakes import FakePublisher, FakeStorage

LIMIT = 100
TOPOLOGY = Topology(prefix="unit")
VIDEO = "videos/talk.mov"


def message(**fields) -> bytes:
    return json.dumps(fields).encode()


@pytest.fixture
def job_id() -> str:
    return new_job_id()


@pytest.fixture
def storage() -> FakeStorage:
    return FakeStorage({VIDEO: b"video bytes", "videos/empty.mov": b"", "videos/huge.mov": b"x" * (LIMIT + 1)})


@pytest.fixture
def queue(storage, metadata, publisher, progress) -> JobQueueIntake:
    return JobQueueIntake(Intake(storage, metadata, publisher, TOPOLOGY, max_upload_bytes=LIMIT), progress.append)


def tasks(publisher: FakePublisher) -> list[ConversionTask]:
    return [ConversionTask.decode(body) for exchange, _, body in publisher.published if exchange == "unit.tasks"]


def events(publisher: FakePublisher) -> list[JobEvent]:
    return [JobEvent.decode(body) for exchange, _, body in publisher.published if exchange == "unit.events"]


# --- parsing ----------------------------------------------------------------------------------
def test_a_full_message_parses_with_its_options(job_id):
    parsed = parse_job_message(
        message(
            job_id=job_id,
            input_key=VIDEO,
            output_key="audio/talk.m4a",
            transcode_options={"format": "m4a", "bitrate": 192},
            priority="high",
        )
    )
    assert (parsed.job_id, parsed.input_key, parsed.output_key) == (job_id, VIDEO, "audio/talk.m4a")
    assert parsed.options.format == "m4a" and parsed.options.bitrate == 192


def test_without_output_key_the_output_goes_to_the_jobs_own_key_in_the_formats_extension(job_id):
    parsed = parse_job_message(message(job_id=job_id, input_key=VIDEO, transcode_options={"format": "flac"}))
    assert parsed.output_key == f"jobs/{job_id}/output.flac"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"not json", "invalid_message"),
        (b"[1, 2]", "invalid_message"),
        (message(input_key=VIDEO), "invalid_job_id"),
        (message(job_id="3F2C8E0D-9A6B-4C1E-8F7A-5D4C3B2A1908", input_key=VIDEO), "invalid_job_id"),
        (message(job_id="a" * 32), "invalid_key"),
        (message(job_id="a" * 32, input_key=""), "invalid_key"),
        (message(job_id="a" * 32, input_key="/etc/passwd"), "invalid_key"),
        (message(job_id="a" * 32, input_key="videos/../jobs/x/input"), "invalid_key"),
        (message(job_id="a" * 32, input_key="videos//talk.mov"), "invalid_key"),
        (message(job_id="a" * 32, input_key="videos/talk\n.mov"), "invalid_key"),
        (message(job_id="a" * 32, input_key="jobs/" + "b" * 32 + "/input"), "invalid_key"),
        (message(job_id="a" * 32, input_key=VIDEO, output_key="jobs/" + "b" * 32 + "/output.mp3"), "invalid_key"),
        (message(job_id="a" * 32, input_key=VIDEO, output_key="audio/talk.wav"), "invalid_key"),
        (message(job_id="a" * 32, input_key=VIDEO, output_key=7), "invalid_key"),
    ],
)
def test_malformed_messages_are_refused_with_a_code(body, code):
    with pytest.raises(MessageError) as refused:
        parse_job_message(body)
    assert refused.value.code == code


@pytest.mark.parametrize(
    ("options", "code"),
    [
        (
            "filesrc location=in.mov ! decodebin ! audioconvert ! lamemp3enc ! filesink location=out.mp3",
            "pipeline_refused",
        ),
        ({"pipeline": "decodebin ! lamemp3enc"}, "pipeline_refused"),
        ({"format": "mp3 ! filesink location=/etc/passwd"}, "pipeline_refused"),
        ("mp3", "invalid_option"),
        ({"bitrate": 100}, "invalid_option"),
        ({"bitrat": 128}, "invalid_option"),
        ({"channels": [1]}, "invalid_option"),
    ],
)
def test_pipelines_and_bad_options_are_refused(options, code):
    with pytest.raises(RequestRejected) as refused:
        parse_job_message(message(job_id="a" * 32, input_key=VIDEO, transcode_options=options))
    assert refused.value.code == code


def test_an_exclamation_mark_in_a_title_is_only_a_title():
    parsed = parse_job_message(message(job_id="a" * 32, input_key=VIDEO, transcode_options={"title": "Help!"}))
    assert parsed.options.title == "Help!"


def test_a_video_job_takes_the_video_options_and_lands_at_its_output_key(job_id):
    options = {"format": "mp4", "video_codec": "hevc", "height": 720, "crf": 24, "preset": "fast"}
    raw = message(job_id=job_id, input_key=VIDEO, output_key="out/talk.mp4", transcode_options=options)
    parsed = parse_job_message(raw, ("h264", "hevc"))
    assert parsed.output_key == "out/talk.mp4" and parsed.options.recorded() == options
    with pytest.raises(RequestRejected) as refused:
        parse_job_message(message(job_id=job_id, input_key=VIDEO, output_key="out/talk.mp3", transcode_options=options))
    assert refused.value.code == "invalid_option"  # this intake offers no video codec at all
    with pytest.raises(MessageError) as wrong_key:
        parse_job_message(raw.replace(b"talk.mp4", b"talk.mp3"), ("h264", "hevc"))
    assert wrong_key.value.code == "invalid_key"


def test_the_queue_intake_offers_its_intakes_video_codecs(storage, metadata, publisher, progress, job_id):
    intake = Intake(storage, metadata, publisher, TOPOLOGY, max_upload_bytes=LIMIT, video_codecs=("vp9",))
    queue = JobQueueIntake(intake, progress.append)
    webm = {"format": "webm", "height": 240}
    assert queue.handle(message(job_id=job_id, input_key=VIDEO, transcode_options=webm)) == ACK
    [task] = tasks(publisher)
    assert task.options.format == "webm" and task.output_key.endswith(".webm")


# --- handling ---------------------------------------------------------------------------------
def test_a_valid_message_becomes_a_queued_job_and_a_task_with_its_options(queue, metadata, publisher, job_id):
    verdict = queue.handle(
        message(job_id=job_id, input_key=VIDEO, output_key="audio/talk.mp3", transcode_options={"bitrate": 128})
    )
    assert verdict == ACK
    job = metadata.jobs[job_id]
    assert (job.status, job.input_key, job.output_key, job.input_size) == (
        JobStatus.QUEUED,
        VIDEO,
        "audio/talk.mp3",
        11,
    )
    assert job.original_filename == "talk.mov" and job.options == {"bitrate": 128}
    [task] = tasks(publisher)
    assert (task.job_id, task.input_key, task.output_key) == (job_id, VIDEO, "audio/talk.mp3")
    assert task.options.bitrate == 128


def test_a_message_sent_twice_is_one_job_and_one_task(queue, metadata, publisher, job_id):
    body = message(job_id=job_id, input_key=VIDEO)
    assert queue.handle(body) == ACK and queue.handle(body) == ACK
    assert [name for name, _ in metadata.calls].count("create_job") == 1
    assert len(tasks(publisher)) == 1


def test_a_redelivered_message_of_a_queued_job_republishes_its_task_but_makes_no_second_job(
    queue, metadata, publisher, job_id
):
    body = message(job_id=job_id, input_key=VIDEO)
    assert queue.handle(body) == ACK and queue.handle(body, redelivered=True) == ACK
    assert [name for name, _ in metadata.calls].count("create_job") == 1
    assert len(tasks(publisher)) == 2  # the first delivery may have died before its task was published


def test_a_redelivered_message_of_a_started_job_changes_nothing(queue, metadata, publisher, job_id):
    body = message(job_id=job_id, input_key=VIDEO)
    queue.handle(body)
    metadata.jobs[job_id] = metadata.jobs[job_id].model_copy(update={"status": JobStatus.PROCESSING})
    assert queue.handle(body, redelivered=True) == ACK
    assert len(tasks(publisher)) == 1


def test_a_missing_input_becomes_a_failed_job_and_its_event_and_is_dead_lettered(queue, metadata, publisher, job_id):
    verdict = queue.handle(message(job_id=job_id, input_key="videos/gone.mov"))
    assert (verdict.settle, verdict.code) == (Settle.DEAD_LETTER, "input_missing")
    job = metadata.jobs[job_id]
    assert (job.status, job.error.code) == (JobStatus.FAILED, "input_missing")
    assert "videos/gone.mov" in job.error.message
    assert [(e.job_id, e.status, e.error.code) for e in events(publisher)] == [
        (job_id, JobStatus.FAILED, "input_missing")
    ]
    assert tasks(publisher) == []


@pytest.mark.parametrize(("key", "code"), [("videos/empty.mov", "empty_file"), ("videos/huge.mov", "file_too_large")])
def test_empty_and_oversize_inputs_become_failed_jobs_never_converted(queue, metadata, publisher, job_id, key, code):
    verdict = queue.handle(message(job_id=job_id, input_key=key))
    assert (verdict.settle, verdict.code) == (Settle.DEAD_LETTER, code)
    assert metadata.jobs[job_id].error.code == code and tasks(publisher) == []


def test_a_pipeline_with_a_usable_job_id_is_a_failed_job_never_run(queue, metadata, publisher, progress, job_id):
    verdict = queue.handle(message(job_id=job_id, input_key=VIDEO, transcode_options="decodebin ! lamemp3enc"))
    assert (verdict.settle, verdict.code) == (Settle.DEAD_LETTER, "pipeline_refused")
    assert metadata.jobs[job_id].status is JobStatus.FAILED and tasks(publisher) == []
    assert "GStreamer" in metadata.jobs[job_id].error.message


@pytest.mark.parametrize("body", [b"\xff\xfe garbage", message(job_id="job-42", input_key=VIDEO), b'"a string"'])
def test_a_message_without_a_usable_job_id_is_rejected_on_the_progress_feed(queue, metadata, publisher, progress, body):
    verdict = queue.handle(body)
    assert verdict.settle is Settle.DEAD_LETTER
    assert metadata.jobs == {} and publisher.published == []
    [rejected] = progress
    assert rejected["status"] == "rejected" and rejected["error"]["code"] == verdict.code
    assert rejected["job_id"] == (json.loads(body).get("job_id") if body.startswith(b"{") else None)


def test_a_job_id_taken_by_another_file_is_rejected_and_the_job_left_alone(
    queue, metadata, publisher, progress, job_id
):
    queue.handle(message(job_id=job_id, input_key=VIDEO))
    before = metadata.jobs[job_id]
    verdict = queue.handle(message(job_id=job_id, input_key="videos/huge.mov"))
    assert verdict.settle is Settle.DEAD_LETTER
    assert metadata.jobs[job_id] == before
    verdict = queue.handle(message(job_id=job_id, input_key="videos/other.mov", output_key="a/b.mp3"))
    assert (verdict.code, progress[-1]["job_id"], progress[-1]["status"]) == ("input_missing", job_id, "rejected")
    assert metadata.jobs[job_id] == before


def test_a_metadata_outage_propagates_so_the_message_is_requeued_and_nothing_is_kept(
    queue, metadata, publisher, job_id
):
    metadata.fail("create_job", JobStoreUnavailable("down"))
    with pytest.raises(JobStoreUnavailable):
        queue.handle(message(job_id=job_id, input_key=VIDEO))
    assert metadata.jobs == {} and publisher.published == []


def test_a_refusal_whose_event_cannot_be_published_keeps_no_job(queue, metadata, publisher, job_id):
    publisher.fail("publish", BrokerUnavailable("down"))
    with pytest.raises(BrokerUnavailable):
        queue.handle(message(job_id=job_id, input_key="videos/gone.mov"))
    assert metadata.jobs == {}


def test_failed_job_of_a_refused_message_keeps_the_keys_it_named(queue, metadata, job_id):
    queue.handle(message(job_id=job_id, input_key=VIDEO, output_key="audio/x.mp3", transcode_options={"bitrate": 1}))
    job: Job = metadata.jobs[job_id]
    assert (job.input_key, job.output_key, job.error.code) == (VIDEO, "audio/x.mp3", "invalid_option")

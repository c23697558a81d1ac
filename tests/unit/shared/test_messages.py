"""The queue protocol: encoding, decoding and the refusal of anything off-schema (``shared.messages``)."""

from __future__ import annotations

import json

import pytest

from shared.errors import MessageError, SiphonError
from shared.jobs import JobErrorInfo, JobStatus
from shared.messages import SCHEMA_VERSION, ConversionTask, JobEvent

JOB_ID = "0123456789abcdef0123456789abcdef"
TASK = {"job_id": JOB_ID, "input_key": f"jobs/{JOB_ID}/input", "output_key": f"jobs/{JOB_ID}/output.mp3"}
EVENT = {
    "job_id": JOB_ID,
    "status": "failed",
    "at": 12.5,
    "attempt": 2,
    "error": {"code": "timeout", "message": "too slow"},
}


def body(**fields) -> bytes:
    return json.dumps(fields).encode()


def test_task_round_trips():
    task = ConversionTask(**TASK)
    assert ConversionTask.decode(task.encode()) == task
    assert json.loads(task.encode()) == {**TASK, "version": SCHEMA_VERSION}


def test_event_round_trips_without_empty_fields():
    event = JobEvent.decode(body(**EVENT))
    assert event.status is JobStatus.FAILED and event.error == JobErrorInfo(code="timeout", message="too slow")
    encoded = json.loads(event.encode())
    assert "media" not in encoded and "output_size" not in encoded
    assert JobEvent.decode(event.encode()) == event


@pytest.mark.parametrize("status", list(JobStatus))
def test_event_routing_key_names_the_status(status):
    assert JobEvent(job_id=JOB_ID, status=status).routing_key == f"job.{status.value}"


NOT_JSON = [b"", b"not json", b"{", b"\xff\xfe\x00", b"{'single': 'quotes'}"]
WRONG_SHAPE = [b"[]", b"null", b'"a string"', b"42"]


@pytest.mark.parametrize("raw", NOT_JSON + WRONG_SHAPE)
@pytest.mark.parametrize("schema", [ConversionTask, JobEvent])
def test_non_json_or_non_object_bodies_raise_message_error(schema, raw):
    with pytest.raises(MessageError):
        schema.decode(raw)


@pytest.mark.parametrize(
    "raw",
    [
        body(job_id=JOB_ID, input_key="a"),  # output_key missing
        body(**{**TASK, "input_key": ""}),  # empty key
        body(**{**TASK, "input_key": 7}),  # wrong type
        body(**TASK, priority="high"),  # extra field
        body(**{**TASK, "job_id": JOB_ID.upper()}),  # bad job id
        body(**{**TASK, "job_id": "../../etc/passwd"}),
        body(**{**TASK, "job_id": JOB_ID + "\n"}),
        body(**{**TASK, "job_id": None}),
    ],
)
def test_off_schema_tasks_raise_message_error(raw):
    with pytest.raises(MessageError) as info:
        ConversionTask.decode(raw)
    assert info.value.message.startswith("ConversionTask: ")


@pytest.mark.parametrize(
    "raw",
    [
        body(**{**EVENT, "status": "exploded"}),
        body(**{**EVENT, "attempt": 0}),
        body(**{**EVENT, "attempt": "many"}),
        body(**{**EVENT, "job_id": "x"}),
        body(**{**EVENT, "error": {"code": "x"}}),  # nested field missing
        body(**{**EVENT, "media": "mov"}),  # media must be an object
        body(**EVENT, signature="abc"),  # extra field
    ],
)
def test_off_schema_events_raise_message_error(raw):
    with pytest.raises(MessageError) as info:
        JobEvent.decode(raw)
    assert info.value.message.startswith("JobEvent: ")


def test_message_error_is_a_siphon_error_and_hides_pydantic():
    with pytest.raises(MessageError) as info:
        ConversionTask.decode(b"{}")
    assert isinstance(info.value, SiphonError) and info.value.code == "invalid_message"
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_messages_are_immutable():
    task = ConversionTask(**TASK)
    with pytest.raises(ValueError):
        task.job_id = "f" * 32

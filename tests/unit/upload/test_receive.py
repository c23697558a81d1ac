"""Hashing the upload while it is received, and the output cache key (``services/upload``)."""

from __future__ import annotations

import hashlib
import io
import random

import pytest

from services.upload.app import create_app
from services.upload.intake import Intake, output_cache_key
from services.upload.receive import BODY_READ_BYTES, BODY_TAIL_BYTES, HashingFile, TailApart, content_digest
from shared.broker import Topology
from shared.config import load_settings
from shared.options import ConversionOptions
from shared.storage import LocalStorage
from tests.support.http import MULTIPART_CONTENT_TYPE, field_part, file_part, multipart_body
from tests.unit.fakes import FakeMetadata, FakePublisher, FakeStorage

LIMIT = 4 * BODY_READ_BYTES


def test_the_digest_is_of_what_the_parser_wrote_and_reading_is_the_files(tmp_path):
    storage = LocalStorage(tmp_path)
    staged = HashingFile(storage.staging_file())
    for chunk in (b"abc", b"def" * 1000):
        staged.write(chunk)
    staged.seek(0)
    assert content_digest(staged) == hashlib.sha256(b"abc" + b"def" * 1000).hexdigest()
    assert storage.put_stream("jobs/x/input", staged) == 3003  # still hard-linked from the staging file
    assert (tmp_path / "jobs/x/input").read_bytes() == b"abc" + b"def" * 1000


def test_a_stream_that_was_not_hashed_has_no_digest():
    assert content_digest(io.BytesIO(b"x")) is None


def test_the_cache_key_is_the_content_and_the_options():
    digest = "a" * 64
    plain = output_cache_key(digest, ConversionOptions())
    assert plain.startswith(digest) and plain == output_cache_key(digest, ConversionOptions(format="mp3"))
    assert plain != output_cache_key(digest, ConversionOptions(bitrate=128))
    assert plain != output_cache_key("b" * 64, ConversionOptions())


# --- reading the body ----------------------------------------------------------------------------
@pytest.fixture
def intake() -> Intake:
    return Intake(FakeStorage(), FakeMetadata(), FakePublisher(), Topology(prefix="unit"), max_upload_bytes=LIMIT)


@pytest.fixture
def client(intake):
    return create_app(load_settings(max_upload_bytes=LIMIT), intake=intake).test_client()


def media_bytes(size: int) -> bytes:
    """``size`` bytes that no sniff takes for anything but media (a NUL first, then noise)."""
    return b"\x00" + random.Random(size).randbytes(size - 1)


def test_the_last_bytes_of_a_body_come_in_a_read_of_their_own():
    length = 3 * BODY_READ_BYTES + 100
    stream = TailApart(io.BytesIO(b"x" * length), length)
    reads = []
    while data := stream.read(BODY_READ_BYTES):
        reads.append(len(data))
    assert sum(reads) == length and reads[-1] == BODY_TAIL_BYTES
    assert all(size <= BODY_READ_BYTES for size in reads)


def test_a_body_shorter_than_the_tail_is_read_as_asked():
    stream = TailApart(io.BytesIO(b"x" * 10), 10)
    assert [stream.read(4), stream.read(4), stream.read(4), stream.read(4)] == [b"xxxx", b"xxxx", b"xx", b""]


@pytest.mark.parametrize(
    "size",
    [
        1,
        BODY_TAIL_BYTES - 200,
        BODY_TAIL_BYTES + 1,
        BODY_READ_BYTES - BODY_TAIL_BYTES,
        BODY_READ_BYTES - 150,
        BODY_READ_BYTES,
        2 * BODY_READ_BYTES + 12_345,
    ],
)
def test_a_file_ending_anywhere_in_a_read_is_stored_whole(client, intake, size):
    data = media_bytes(size)
    body = multipart_body([file_part(data, "clip.mp4")])
    response = client.post("/convert", data=body, content_type=MULTIPART_CONTENT_TYPE)
    assert response.status_code == 202, response.get_json()
    job_id = response.get_json()["job_id"]
    assert intake.storage.objects == {f"jobs/{job_id}/input": data}
    assert intake.metadata.jobs[job_id].content_sha256 == hashlib.sha256(data).hexdigest()


def test_fields_after_the_file_part_are_read_too(client, intake):
    data = media_bytes(BODY_READ_BYTES + 999)
    body = multipart_body([file_part(data, "clip.mp4"), field_part("format", "m4a"), field_part("bitrate", "128")])
    response = client.post("/convert", data=body, content_type=MULTIPART_CONTENT_TYPE)
    assert response.status_code == 202, response.get_json()
    job_id = response.get_json()["job_id"]
    assert intake.storage.objects == {f"jobs/{job_id}/input": data}
    assert intake.metadata.jobs[job_id].options == {"format": "m4a", "bitrate": 128}

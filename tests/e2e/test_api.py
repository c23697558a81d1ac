"""The public API's exact contract, over HTTP against real stacks (the issue's "The API" section).

Every error answer is checked to be JSON, never an HTML page or a traceback; every refused upload
is checked to leave nothing behind in storage or Redis.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest
import redis
import requests

from shared.changes import changes_key
from tests.support.http import (
    assert_json_error,
    field_part,
    file_part,
    multipart_body,
    parse_content_disposition,
    post_multipart,
)
from tests.support.media import make_tone_wav, probe_audio
from tests.support.moto import s3_client
from tests.support.net import free_port
from tests.support.stack import REDIS_URL, Stack

pytestmark = pytest.mark.e2e

VIDEO = "opus_in_mp4_stereo_audio_only.mp4"
"""A 5 KB file that converts in a blink into a ~1 s MP3."""

UPLOAD_LIMIT_BYTES = 100_000
JOB_ID = re.compile(r"^[0-9a-f]{32}$")
JOB_KEY = re.compile(r"^jobs/[0-9a-f]{32}/(input|output\.mp3|job\.json)$")
SUBMITTED = "Conversion job submitted successfully."


# --- stacks ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stack(module_stack) -> Stack:
    return module_stack("local")


@pytest.fixture(scope="module")
def limited_stack(module_stack) -> Stack:
    """Uploads limited to 100 000 bytes; only ever sent requests it must refuse."""
    return module_stack("local", workers=0, MAX_UPLOAD_BYTES=str(UPLOAD_LIMIT_BYTES))


@pytest.fixture(scope="module")
def queued_stack(module_stack) -> Stack:
    """No conversion workers, so its jobs stay queued; the same 100 000-byte limit."""
    return module_stack("local", workers=0, MAX_UPLOAD_BYTES=str(UPLOAD_LIMIT_BYTES))


@pytest.fixture(scope="module", params=["local", "s3"])
def converted(request, module_stack, media_dir) -> tuple[Stack, str, bytes]:
    """A completed job on each backend: ``(stack, job_id, the whole MP3)``."""
    stack = module_stack(request.param)
    job_id = submit(stack, media_dir / VIDEO, "Holiday clip.mp4")
    assert stack.wait_for_job(job_id, timeout=30)["status"] == "completed"
    full = stack.download(job_id)
    assert full.status_code == 200
    return stack, job_id, full.content


# --- helpers -----------------------------------------------------------------------------------
def submit(stack: Stack, path, filename: str, **fields: str) -> str:
    response = stack.convert(path, filename, **fields)
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def job_ids_held(stack: Stack) -> set[str]:
    """Ids of the jobs with anything in storage or Redis (a key outside ``jobs/<id>/`` counts as itself)."""
    stored = {key.split("/")[1] if key.startswith("jobs/") else key for key in stack.stored_keys()}
    cached = {key.removeprefix(stack.redis_prefix).removeprefix("job:") for key in stack.redis_keys()}
    return stored | cached


def assert_nothing_held(stack: Stack) -> None:
    """No object and no Redis key, but the change feed: a capped history of what happened, where a
    job rolled back ends with its ``deleted`` change (shared/changes.py)."""
    assert stack.stored_keys() == [], "objects left in storage"
    feed = changes_key(stack.redis_prefix)
    assert [key for key in stack.redis_keys() if key != feed] == [], "keys left in Redis"
    last = {}
    for _, fields in redis.Redis.from_url(REDIS_URL).xrange(feed):
        last[fields[b"job_id"]] = fields[b"kind"]
    assert set(last.values()) <= {b"deleted"}, "the change feed tells of a job that is still there"


def disposition_filename(header: str) -> tuple[str, str]:
    """``(filename, filename*)`` of an attachment's Content-Disposition, the second decoded."""
    kind, params = parse_content_disposition(header)
    assert kind == "attachment" and set(params) == {"filename", "filename*"}, header
    return params["filename"], params["filename*"]


def assert_safe_filename(name: str) -> None:
    assert name and "/" not in name and "\\" not in name and not name.startswith("."), repr(name)
    assert all(unicodedata.category(ch) not in ("Cc", "Cf") for ch in name), repr(name)


def chunks(data: bytes, size: int = 16 * 1024):
    """``data`` as a generator, which requests sends with chunked transfer encoding."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


# --- POST /convert -----------------------------------------------------------------------------
def test_convert_answers_202_with_a_queued_job(queued_stack, media_dir):
    response = queued_stack.convert(media_dir / VIDEO)
    assert response.status_code == 202
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body == {"job_id": body["job_id"], "status": "queued", "message": SUBMITTED}
    assert JOB_ID.match(body["job_id"])


@pytest.mark.parametrize(
    "send",
    [
        pytest.param(lambda url: requests.post(url, files={"video": ("a.mp4", b"abc")}, timeout=30), id="other-part"),
        pytest.param(lambda url: post_multipart(url, multipart_body([field_part("file", "abc")])), id="field-not-file"),
        pytest.param(lambda url: post_multipart(url, multipart_body([])), id="no-parts"),
        pytest.param(lambda url: requests.post(url, data=b"\x00\x00\x00\x18ftypmp42", timeout=30), id="raw-body"),
        pytest.param(lambda url: requests.post(url, json={"file": "x.mp4"}, timeout=30), id="json-body"),
        pytest.param(lambda url: requests.post(url, data={"file": "x.mp4"}, timeout=30), id="urlencoded"),
        pytest.param(lambda url: requests.post(url, timeout=30), id="no-body"),
    ],
)
def test_convert_without_a_file_part_is_400_missing_file(limited_stack, send):
    assert_json_error(send(f"{limited_stack.url}/convert"), 400, "missing_file")
    assert_nothing_held(limited_stack)


def test_empty_file_is_400_empty_file(limited_stack):
    assert_json_error(
        post_multipart(f"{limited_stack.url}/convert", multipart_body([file_part(b"", "a.mp4")])), 400, "empty_file"
    )
    assert_nothing_held(limited_stack)


NOT_MEDIA = {
    # what: (file bytes, what the 415's message says it looks like)
    "text": (b"Shopping list: milk, eggs, a video converter.\n" * 20, "text"),
    "html": (b"<!DOCTYPE html>\n<html><head><title>Holiday</title></head><body>clip</body></html>\n", "an HTML page"),
    "zip": (b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(20_000), "a ZIP archive"),
    "png": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(500), "a PNG image"),
    "elf": (Path("/bin/true").read_bytes()[:50_000], "an executable"),
}


@pytest.mark.parametrize("what", sorted(NOT_MEDIA))
def test_a_file_that_is_clearly_not_media_is_415_not_media_and_leaves_nothing(limited_stack, what):
    data, kind = NOT_MEDIA[what]
    response = post_multipart(f"{limited_stack.url}/convert", multipart_body([file_part(data, "clip.mp4")]))
    assert_json_error(response, 415, "not_media")
    assert response.json()["error"]["message"] == f"The file is not a video or audio file. It looks like {kind}."
    assert_nothing_held(limited_stack)


def test_uploads_right_after_a_not_media_refusal_mid_body_succeed(queued_stack, media_dir):
    """A large ZIP is refused once its first bytes are in, its body unread: the next upload on the
    gateway's connections still goes through."""
    archive = multipart_body([file_part(b"PK\x03\x04" + bytes(UPLOAD_LIMIT_BYTES - 4), "a.mp4")])
    video = multipart_body([file_part((media_dir / VIDEO).read_bytes(), "a.mp4")])
    answers = []
    for _ in range(5):
        answers += [post_multipart(f"{queued_stack.url}/convert", body).status_code for body in (archive, video)]
    assert answers == [415, 202] * 5


@pytest.mark.parametrize("size", [UPLOAD_LIMIT_BYTES + 1, 150_000, 3_000_000])
@pytest.mark.parametrize("transfer", ["content-length", "chunked"])
def test_file_over_the_limit_is_413_and_leaves_nothing(limited_stack, size, transfer):
    body = multipart_body([file_part(b"\x00" * size, "big.mp4")])
    response = post_multipart(f"{limited_stack.url}/convert", body if transfer == "content-length" else chunks(body))
    assert_json_error(response, 413, "file_too_large")
    assert_nothing_held(limited_stack)


def test_file_of_exactly_the_limit_is_accepted(queued_stack):
    """The limit counts the file's bytes, not the multipart framing around them."""
    body = multipart_body([file_part(b"\x00" * UPLOAD_LIMIT_BYTES, "exact.mp4")])
    assert post_multipart(f"{queued_stack.url}/convert", body).status_code == 202


def test_thousands_of_form_parts_are_refused(stack, media_dir):
    before = job_ids_held(stack)
    fields = [field_part(f"f{i}", "x") for i in range(5000)]
    body = multipart_body([*fields, file_part((media_dir / VIDEO).read_bytes(), "a.mp4")])
    response = post_multipart(f"{stack.url}/convert", body)
    assert response.status_code in (400, 413), response.text[:300]
    assert_json_error(response, response.status_code)
    assert job_ids_held(stack) == before


def test_uploads_right_after_a_refused_unread_body_succeed(queued_stack, media_dir):
    """gunicorn closes a connection whose body the upload service refused unread; the gateway must
    not send the next client's (unreplayable, streamed) upload down that dead connection."""
    refused = multipart_body([*(field_part(f"f{i}", "x") for i in range(2000)), file_part(b"x", "a.mp4")])
    video = multipart_body([file_part((media_dir / VIDEO).read_bytes(), "a.mp4")])
    answers = []
    for _ in range(10):
        answers += [post_multipart(f"{queued_stack.url}/convert", body).status_code for body in (refused, video)]
    assert answers == [413, 202] * 10


HOSTILE_NAMES = {
    "path-traversal": ("../../etc/passwd", "passwd.mp3"),
    "nul": ("clip\x00.exe.mp4", "clip.exe.mp3"),
    "rtl-override": ("holiday\u202egnp.mp4", "holidaygnp.mp3"),
    "10kb": ("a" * 10_000 + ".mp4", "a" * 255 + ".mp3"),
    "empty": ("", None),  # None: the job id is the stem
}


@pytest.mark.parametrize("case", sorted(HOSTILE_NAMES))
def test_hostile_file_name_is_only_a_label(stack, media_dir, case):
    raw_name, expected = HOSTILE_NAMES[case]
    response = post_multipart(
        f"{stack.url}/convert", multipart_body([file_part((media_dir / VIDEO).read_bytes(), raw_name)])
    )
    assert response.status_code == 202, response.text[:300]
    job_id = response.json()["job_id"]
    assert stack.wait_for_job(job_id, timeout=30)["status"] == "completed"

    keys = stack.stored_keys()
    assert all(JOB_KEY.match(key) for key in keys), keys
    # The input is deleted once the job ends; a repeat of the same file reuses the first one's MP3 (cached).
    record = stack.job_record(job_id)
    own = [f"jobs/{job_id}/job.json"] + ([] if record["cached"] else [f"jobs/{job_id}/output.mp3"])
    assert [key for key in keys if key.startswith(f"jobs/{job_id}/")] == own
    assert record["output_key"] in keys
    assert not any("passwd" in path.name for path in stack.base_dir.rglob("*"))

    download = stack.download(job_id)
    assert download.status_code == 200
    header = download.headers["Content-Disposition"]
    assert header.isascii() and header.isprintable(), repr(header)
    ascii_name, name = disposition_filename(header)
    assert name == (expected or f"{job_id}.mp3")
    assert_safe_filename(name)
    assert_safe_filename(ascii_name)


@pytest.mark.parametrize(
    ("original", "expected"),
    [
        ("Holiday clip.mp4", "Holiday clip.mp3"),
        ("Été à Paris.final.MOV", "Été à Paris.final.mp3"),
        ("no_extension", "no_extension.mp3"),
    ],
)
def test_download_is_named_after_the_original_stem(stack, media_dir, original, expected):
    job_id = submit(stack, media_dir / VIDEO, original)
    assert stack.wait_for_job(job_id, timeout=30)["status"] == "completed"
    ascii_name, name = disposition_filename(stack.download(job_id).headers["Content-Disposition"])
    assert name == expected
    assert ascii_name == unicodedata.normalize("NFKD", expected).encode("ascii", "ignore").decode()


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_broker_down_is_503_and_leaves_nothing(module_stack, media_dir, backend):
    """RabbitMQ unreachable (a closed loopback port): the stored input and the job record are rolled back."""
    stack = module_stack(
        backend, workers=0, wait_for_consumers=False, AMQP_URL=f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F"
    )
    assert_json_error(stack.convert(media_dir / VIDEO), 503, "broker_unavailable")
    assert_nothing_held(stack)


# --- GET /status -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("job_id", "echoed"),
    [
        pytest.param("0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdef", id="unknown"),
        pytest.param("*", "*", id="star"),
        pytest.param("..%2Fx", None, id="encoded-slash"),
        pytest.param("0123456789ABCDEF0123456789ABCDEF", "0123456789ABCDEF0123456789ABCDEF", id="upper-case"),
        pytest.param("x" * 1024 * 1024, None, id="1mb"),
    ],
)
def test_status_of_an_unknown_or_malformed_id_is_404(stack, job_id, echoed):
    response = requests.get(f"{stack.url}/status/{job_id}", timeout=30)
    assert response.status_code == 404 and response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"job_id", "status", "message"}, body
    assert body["status"] == "not_found" and body["message"] == "Job not found."
    assert isinstance(body["job_id"], str) and len(body["job_id"]) <= 64
    if echoed is not None:
        assert body["job_id"] == echoed


def test_status_of_a_queued_job(queued_stack, media_dir):
    job_id = submit(queued_stack, media_dir / VIDEO, "a.mp4")
    body = queued_stack.status(job_id).json()
    assert set(body) == {"job_id", "status", "message"} and body["job_id"] == job_id
    assert body["status"] == "queued" and body["message"].strip()


# --- GET /download -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    [
        "0123456789abcdef0123456789abcdef.mp3",
        "*.mp3",
        "..%2Fx.mp3",
        "x" * 1024 * 1024 + ".mp3",
        "0123456789abcdef0123456789abcdef",
        "0123456789abcdef0123456789abcdef.wav",
    ],
)
def test_download_of_an_unknown_job_is_404_json(stack, name):
    response = requests.get(f"{stack.url}/download/{name}", timeout=30)
    assert_json_error(response, 404)


def test_download_while_queued_is_409_json(queued_stack, media_dir):
    job_id = submit(queued_stack, media_dir / VIDEO, "a.mp4")
    assert_json_error(queued_stack.download(job_id), 409, "job_not_ready")


def test_download_while_processing_is_409_json(stack, tmp_path):
    """Twenty minutes of tone keep a worker busy long enough to be seen ``processing``."""
    job_id = submit(stack, make_tone_wav(tmp_path / "tone.wav", seconds=1200), "tone.wav")
    body = stack.wait_for_job(job_id, timeout=30, states=("processing", "completed", "failed"))
    download = stack.download(job_id)
    progress = body.pop("progress", 0)  # the worker's progress report, once it has sent one
    assert body == {"job_id": job_id, "status": "processing", "message": "Conversion in progress."}
    assert isinstance(progress, int) and 0 <= progress < 100
    assert_json_error(download, 409, "job_not_ready")
    assert stack.wait_for_job(job_id, timeout=60)["status"] == "completed"


def test_download_is_the_whole_mp3(converted):
    stack, job_id, mp3 = converted
    response = stack.download(job_id)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "audio/mpeg"
    assert response.headers["Accept-Ranges"] == "bytes"
    assert int(response.headers["Content-Length"]) == len(response.content) == len(mp3)
    assert response.content == mp3
    assert disposition_filename(response.headers["Content-Disposition"])[1] == "Holiday clip.mp3"
    assert len(mp3) > 1000 and (mp3[:3] == b"ID3" or mp3[0] == 0xFF)


def test_download_holds_audio(converted, tmp_path):
    _, _, mp3 = converted
    (tmp_path / "a.mp3").write_bytes(mp3)
    facts = probe_audio(tmp_path / "a.mp3")
    assert facts is not None and facts.codec == "mp3" and facts.frames > 0


def test_range_from_the_start_is_206(converted):
    stack, job_id, mp3 = converted
    response = stack.download(job_id, Range="bytes=0-99")
    assert response.status_code == 206
    assert response.headers["Content-Range"] == f"bytes 0-99/{len(mp3)}"
    assert response.headers["Content-Length"] == "100"
    assert response.headers["Content-Type"] == "audio/mpeg"
    assert response.content == mp3[:100]


def test_range_in_the_middle_is_206(converted):
    stack, job_id, mp3 = converted
    response = stack.download(job_id, Range="bytes=500-1499")
    assert response.status_code == 206
    assert response.headers["Content-Range"] == f"bytes 500-1499/{len(mp3)}"
    assert response.content == mp3[500:1500]


def test_suffix_range_is_206(converted):
    stack, job_id, mp3 = converted
    response = stack.download(job_id, Range="bytes=-100")
    assert response.status_code == 206
    assert response.headers["Content-Range"] == f"bytes {len(mp3) - 100}-{len(mp3) - 1}/{len(mp3)}"
    assert response.content == mp3[-100:]


def test_unsatisfiable_range_is_416_json(converted):
    stack, job_id, mp3 = converted
    response = stack.download(job_id, Range=f"bytes={len(mp3)}-{len(mp3) + 100}")
    assert_json_error(response, 416)
    assert response.headers["Content-Range"] == f"bytes */{len(mp3)}"


def test_head_gives_the_headers_without_the_body(converted):
    stack, job_id, mp3 = converted
    response = requests.head(f"{stack.url}/download/{job_id}.mp3", timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "audio/mpeg"
    assert response.headers["Content-Length"] == str(len(mp3))
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.content == b""


# --- a repeated upload (the output cache) ------------------------------------------------------
def delete_behind_siphons_back(stack: Stack, key: str) -> None:
    """Remove an object as a bucket lifecycle rule or an operator would, telling siphon nothing."""
    if stack.backend == "s3":
        s3_client(stack.s3_endpoint).delete_object(Bucket=stack.bucket, Key=key)
    else:
        (stack.storage_dir / key).unlink()


def test_a_cache_hit_answers_as_the_contract_shows_and_is_completed_at_its_first_status(converted, media_dir):
    stack, job_id, mp3 = converted
    response = stack.convert(media_dir / VIDEO, "Holiday clip.mp4")
    assert response.status_code == 202
    body = response.json()
    assert body == {"job_id": body["job_id"], "status": "queued", "message": SUBMITTED, "cached": True}
    assert body["job_id"] != job_id
    status = stack.status(body["job_id"]).json()
    assert status["status"] == "completed" and status["cached"] is True
    assert stack.download(body["job_id"]).content == mp3


def test_a_cache_hit_whose_output_is_gone_is_converted_afresh(converted, media_dir, tmp_path):
    stack, _, _ = converted
    first = submit(stack, media_dir / VIDEO, "gone.mp4", title="Output deleted behind siphon's back")
    assert stack.wait_for_job(first, timeout=30)["status"] == "completed"
    delete_behind_siphons_back(stack, stack.job_record(first)["output_key"])

    again = submit(stack, media_dir / VIDEO, "gone.mp4", title="Output deleted behind siphon's back")
    assert stack.wait_for_job(again, timeout=30)["status"] == "completed"
    record = stack.job_record(again)
    assert not record["cached"] and record["output_key"] == f"jobs/{again}/output.mp3", "converted, not cached"
    download = stack.download(again)
    assert download.status_code == 200
    (tmp_path / "again.mp3").write_bytes(download.content)
    assert probe_audio(tmp_path / "again.mp3").frames > 0

    third = stack.convert(media_dir / VIDEO, "gone.mp4", title="Output deleted behind siphon's back").json()
    assert third["cached"] is True and stack.job_record(third["job_id"])["output_key"] == record["output_key"]
    assert stack.download(third["job_id"]).status_code == 200


# --- every other error -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/convert", 405),
        ("PUT", "/convert", 405),
        ("DELETE", "/status/0123456789abcdef0123456789abcdef", 405),
        ("POST", "/download/0123456789abcdef0123456789abcdef.mp3", 405),
        ("GET", "/no/such/page", 404),
    ],
)
def test_other_errors_are_json(stack, method, path, status):
    assert_json_error(requests.request(method, stack.url + path, timeout=30), status)

"""Both storage backends through one suite: LocalStorage in tmp_path, S3Storage against moto over HTTP."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest

from shared.config import load_settings
from shared.errors import ObjectNotFound, StorageUnavailable
from shared.storage import CHUNK_BYTES, LocalStorage, S3Storage, Storage
from tests.support.moto import CREDENTIALS, create_bucket, s3_client
from tests.support.net import free_port

pytestmark = pytest.mark.integration

DATA = bytes(range(256)) * 2500  # 640 000 bytes: more than two chunks, every offset distinguishable


def s3_storage(endpoint: str, bucket: str, timeout: float = 5) -> S3Storage:
    return S3Storage.from_settings(
        load_settings(
            storage_backend="s3",
            s3_endpoint_url=endpoint,
            s3_bucket=bucket,
            s3_timeout_seconds=timeout,
            aws_access_key_id=CREDENTIALS["aws_access_key_id"],
            aws_secret_access_key=CREDENTIALS["aws_secret_access_key"],
        )
    )


def delete_bucket(endpoint: str, bucket: str) -> None:
    s3 = s3_client(endpoint)
    for obj in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        s3.delete_object(Bucket=bucket, Key=obj["Key"])
    s3.delete_bucket(Bucket=bucket)


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path, run_id) -> Storage:
    """Each backend in turn; the S3 one gets a fresh bucket, deleted after the test."""
    if request.param == "local":
        yield LocalStorage(tmp_path / "storage")
        return
    endpoint = request.getfixturevalue("moto_endpoint")
    bucket = f"siphon-it-{run_id}"
    create_bucket(endpoint, bucket)
    try:
        yield s3_storage(endpoint, bucket)
    finally:
        delete_bucket(endpoint, bucket)


class OneWayStream:
    """A request body as the upload service sees it: ``read`` only, no ``seek`` or ``tell``."""

    def __init__(self, data: bytes):
        self._source = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self._source.read(size if size is not None else -1)


def test_put_stream_then_get_bytes(storage):
    assert storage.put_stream("jobs/a/input", OneWayStream(DATA)) == len(DATA)
    assert storage.get_bytes("jobs/a/input") == DATA
    assert storage.size("jobs/a/input") == len(DATA)


def test_put_stream_of_nothing_stores_an_empty_object(storage):
    assert storage.put_stream("jobs/a/input", OneWayStream(b"")) == 0
    assert storage.size("jobs/a/input") == 0


def test_put_file_then_download(storage, tmp_path):
    source, copy = tmp_path / "source.bin", tmp_path / "copy.bin"
    source.write_bytes(DATA)
    assert storage.put_file("jobs/a/output.mp3", source) == len(DATA)
    assert storage.download("jobs/a/output.mp3", copy) == len(DATA)
    assert copy.read_bytes() == DATA


def test_local_put_file_links_the_file_and_survives_its_deletion(tmp_path):
    storage, source = LocalStorage(tmp_path / "storage"), tmp_path / "output.mp4"
    source.write_bytes(DATA)
    assert storage.put_file("jobs/a/output.mp4", source) == len(DATA)
    stored = storage.local_path("jobs/a/output.mp4")
    assert stored.stat().st_ino == source.stat().st_ino  # the worker's file itself, not a copy
    source.unlink()  # the worker's temp dir goes
    assert stored.read_bytes() == DATA
    assert [p.name for p in stored.parent.iterdir()] == ["output.mp4"]  # no temp link left over


def test_local_put_file_copies_from_another_filesystem(tmp_path):
    other_fs = Path("/dev/shm")  # tmpfs: link(2) from there into tmp_path fails with EXDEV
    if not other_fs.is_dir() or other_fs.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no second filesystem to copy from")
    storage, source = LocalStorage(tmp_path / "storage"), other_fs / f"siphon-test-{time.time_ns()}.bin"
    source.write_bytes(DATA)
    try:
        assert storage.put_file("jobs/a/output.mp4", source) == len(DATA)
        stored = storage.local_path("jobs/a/output.mp4")
        assert stored.stat().st_ino != source.stat().st_ino
        assert stored.read_bytes() == DATA
    finally:
        source.unlink()


def test_put_bytes_overwrites(storage):
    storage.put_bytes("jobs/a/job.json", b'{"v": 1}')
    storage.put_bytes("jobs/a/job.json", b'{"v": 2}')
    assert storage.get_bytes("jobs/a/job.json") == b'{"v": 2}'


@pytest.mark.parametrize(
    ("start", "stop"),
    [
        (0, None),
        (0, 10),
        (1000, 1001),
        (CHUNK_BYTES - 3, CHUNK_BYTES + 3),
        (500_000, None),
        (600_000, 10**9),
    ],
)
def test_stream_yields_the_range_in_bounded_chunks(storage, start, stop):
    storage.put_bytes("jobs/a/output.mp3", DATA)
    chunks = list(storage.stream("jobs/a/output.mp3", start, stop))
    assert b"".join(chunks) == DATA[start:stop]
    assert all(0 < len(chunk) <= CHUNK_BYTES for chunk in chunks)


def test_delete_prefix_removes_one_job_only(storage):
    for key in ("jobs/a/input", "jobs/a/output.mp3", "jobs/a/job.json", "jobs/ab/input", "jobs/b/input"):
        storage.put_bytes(key, b"x")
    storage.delete_prefix("jobs/a/")
    for gone in ("jobs/a/input", "jobs/a/output.mp3", "jobs/a/job.json"):
        with pytest.raises(ObjectNotFound):
            storage.size(gone)
    assert storage.get_bytes("jobs/ab/input") == storage.get_bytes("jobs/b/input") == b"x"


def test_delete_prefix_of_one_key_and_of_nothing(storage):
    storage.put_bytes("jobs/a/job.json", b"{}")
    storage.put_bytes("jobs/a/input", b"v")
    storage.delete_prefix("jobs/a/job.json")
    with pytest.raises(ObjectNotFound):
        storage.get_bytes("jobs/a/job.json")
    assert storage.get_bytes("jobs/a/input") == b"v"
    storage.delete_prefix("jobs/nothing/")
    storage.delete_prefix("jobs/nothing/job.json")


def test_check_passes_on_a_working_backend(storage):
    storage.check()


@pytest.mark.parametrize("operation", ["get_bytes", "size", "download", "stream"])
def test_a_missing_key_is_object_not_found(storage, tmp_path, operation):
    args = {"download": (tmp_path / "out",)}.get(operation, ())
    with pytest.raises(ObjectNotFound):
        getattr(storage, operation)("jobs/missing/input", *args)  # stream: at the call, before any byte


def test_local_storage_refuses_keys_that_escape_its_root(tmp_path):
    storage = LocalStorage(tmp_path / "storage")
    for key in ("../outside", "jobs/../../outside", "/etc/passwd", "jobs//input", "jobs/\0/input"):
        with pytest.raises(ValueError):
            storage.put_bytes(key, b"x")
    assert not (tmp_path / "outside").exists()


def test_s3_with_a_missing_bucket_is_unavailable(moto_endpoint, run_id):
    storage = s3_storage(moto_endpoint, f"no-such-bucket-{run_id}")
    with pytest.raises(StorageUnavailable):
        storage.check()
    with pytest.raises(StorageUnavailable):
        storage.put_bytes("jobs/a/job.json", b"{}")


def test_s3_on_a_closed_port_is_unavailable(tmp_path):
    storage = s3_storage(f"http://127.0.0.1:{free_port()}", "siphon", timeout=0.5)
    (tmp_path / "f").write_bytes(b"x")
    started = time.monotonic()
    for call in (
        storage.check,
        lambda: storage.put_bytes("k", b"x"),
        lambda: storage.get_bytes("k"),
        lambda: storage.put_file("k", Path(tmp_path / "f")),
        lambda: storage.stream("k"),
    ):
        with pytest.raises(StorageUnavailable) as info:
            call()
        assert info.value.status == 503
    assert time.monotonic() - started < 15

"""Storage without copies: staging files stored by hard link, objects read in place (local backend)."""

from __future__ import annotations

import io
import os

import pytest

from shared.config import load_settings
from shared.storage import LocalStorage, S3Storage

KEY = "jobs/0123456789abcdef0123456789abcdef/input"


@pytest.fixture
def storage(tmp_path) -> LocalStorage:
    return LocalStorage(tmp_path / "storage")


def test_a_staging_file_is_stored_by_hard_link(storage):
    with storage.staging_file() as staged:
        staged.write(b"video bytes")
        staged.seek(0)
        assert storage.put_stream(KEY, staged) == len(b"video bytes")
        assert os.stat(staged.name).st_ino == os.stat(storage.local_path(KEY)).st_ino
    assert storage.get_bytes(KEY) == b"video bytes"  # the staging name is gone, the object stays
    assert list((storage.root / ".staging").iterdir()) == []


def test_a_staging_file_read_part_way_is_copied_from_there(storage):
    with storage.staging_file() as staged:
        staged.write(b"headvideo")
        staged.seek(4)
        assert storage.put_stream(KEY, staged) == 5
    assert storage.get_bytes(KEY) == b"video"


def test_other_streams_are_copied(storage):
    assert storage.put_stream(KEY, io.BytesIO(b"abc")) == 3
    assert storage.get_bytes(KEY) == b"abc"


def test_local_path_is_the_stored_file_or_none(storage):
    assert storage.local_path(KEY) is None
    storage.put_bytes(KEY, b"abc")
    assert storage.local_path(KEY).read_bytes() == b"abc"


def test_s3_declares_it_has_neither_local_files_nor_a_staging_area():
    s3 = S3Storage.from_settings(
        load_settings(
            storage_backend="s3",
            s3_endpoint_url="http://127.0.0.1:9",
            aws_access_key_id="unit",
            aws_secret_access_key="unit",
        )
    )
    assert s3.local_path(KEY) is None
    assert s3.staging_file() is None

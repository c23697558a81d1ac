"""Hashing the upload while it is received, and the output cache key (``services/upload``)."""

from __future__ import annotations

import hashlib
import io

from services.upload.intake import output_cache_key
from services.upload.receive import HashingFile, content_digest
from shared.options import ConversionOptions
from shared.storage import LocalStorage


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

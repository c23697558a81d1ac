"""Receiving the multipart body: read in large pieces, write the file part straight into storage.

Two costs of werkzeug's defaults, measured on a 113 MB upload (docs/performance.md):

* it reads the body 64 KiB at a time, and gunicorn's body reader copies whatever it holds beyond
  each read (up to 1 MiB) again on every read: fewer, larger reads (:data:`BODY_READ_BYTES`)
  cut that copying about fourfold;
* it writes the file part to an anonymous temp file, which storage then copies whole. Where the
  backend offers a staging file (the local backend: a temp file on the objects' own file system),
  the part is written there and storing it is a hard link instead of a second copy.

The file part is hashed (SHA-256, for the output cache) as the parser writes it
(:class:`HashingFile`), so the upload is never read a second time just to hash it. Its first
:data:`~shared.sniff.SNIFF_BYTES` are kept and judged as soon as they are in: a file that is
clearly not media (``screen.py``) stops the parse with 415 ``not_media`` before the rest of its
body is read or written, so a 2 GB ZIP costs one read, not a 2 GB temp file.
"""

from __future__ import annotations

import hashlib
from typing import BinaryIO

from flask import Request
from werkzeug.formparser import FormDataParser, MultiPartParser

from services.upload.screen import refuse_if_not_media
from shared.sniff import SNIFF_BYTES
from shared.storage import Storage

BODY_READ_BYTES = 256 * 1024
"""Size of each read from the request body while parsing multipart, bytes. werkzeug refuses (413)
a read that, with what its decoder holds, exceeds ``MAX_FORM_MEMORY_SIZE`` (Flask: 500 000)."""


class LargeReadFormDataParser(FormDataParser):
    """werkzeug's form parser, reading multipart bodies :data:`BODY_READ_BYTES` at a time."""

    def _parse_multipart(self, stream: BinaryIO, mimetype: str, content_length: int | None, options: dict[str, str]):
        boundary = options.get("boundary", "").encode("ascii")
        if not boundary:
            raise ValueError("Missing boundary")
        parser = MultiPartParser(
            stream_factory=self.stream_factory,
            max_form_memory_size=self.max_form_memory_size,
            max_form_parts=self.max_form_parts,
            cls=self.cls,
            buffer_size=BODY_READ_BYTES,
        )
        form, files = parser.parse(stream, boundary, content_length)
        return stream, form, files


class HashingFile:
    """The file the multipart parser writes the upload into, hashing every byte written and
    keeping the first :data:`~shared.sniff.SNIFF_BYTES` of them.

    Everything else (``read``, ``seek``, ``name``, ``fileno``, ...) is the wrapped file's, so
    storage sees the staging file it made and still hard-links it into place.
    """

    def __init__(self, file: BinaryIO):
        self._file = file
        self._sha256 = hashlib.sha256()
        self._head = b""

    def write(self, data: bytes) -> int:
        """Hash and write ``data``; the write that completes the head judges it first.

        Raises:
            RequestRejected: the head shows the file is not media (415 ``not_media``).
        """
        if len(self._head) < SNIFF_BYTES:
            self._head += data[: SNIFF_BYTES - len(self._head)]
            if len(self._head) == SNIFF_BYTES:
                refuse_if_not_media(self._head)
        self._sha256.update(data)
        return self._file.write(data)

    def hexdigest(self) -> str:
        """SHA-256 of everything written, as 64 hex digits."""
        return self._sha256.hexdigest()

    def head(self) -> bytes:
        """The first :data:`~shared.sniff.SNIFF_BYTES` written (all of them for a shorter file)."""
        return self._head

    def __getattr__(self, name: str):
        return getattr(self._file, name)

    def __enter__(self) -> HashingFile:
        return self

    def __exit__(self, *exc_info) -> None:
        self._file.close()


def content_digest(stream: object) -> str | None:
    """SHA-256 of an uploaded file part as it was received, or None if it was not hashed."""
    return stream.hexdigest() if isinstance(stream, HashingFile) else None


def received_head(stream: object) -> bytes | None:
    """The first bytes of an uploaded file part as it was received, or None if they were not kept."""
    return stream.head() if isinstance(stream, HashingFile) else None


def upload_request_class(storage: Storage) -> type[Request]:
    """A Flask request class that parses with large reads and stages files in ``storage``."""

    class UploadRequest(Request):
        form_data_parser_class = LargeReadFormDataParser

        def _get_file_stream(
            self,
            total_content_length: int | None,
            content_type: str | None,
            filename: str | None = None,
            content_length: int | None = None,
        ) -> BinaryIO:
            staged = storage.staging_file()
            if staged is not None:
                return HashingFile(staged)
            return HashingFile(super()._get_file_stream(total_content_length, content_type, filename, content_length))

    return UploadRequest

"""Receiving the uploaded file straight into storage's staging area.

werkzeug parses the multipart body and writes the file part to whatever ``_get_file_stream``
returns (by default an anonymous temp file). Where the storage backend offers a staging file
(the local backend: a temp file on the same file system as the objects), the part is written
there, and storing it afterwards is a hard link instead of a second copy of the whole video.
"""

from __future__ import annotations

from typing import BinaryIO

from flask import Request

from shared.storage import Storage, staging_file


def staging_request_class(storage: Storage) -> type[Request]:
    """A Flask request class that writes uploaded files into ``storage``'s staging area."""

    class StagingRequest(Request):
        def _get_file_stream(self, total_content_length: int | None, content_type: str | None,
                             filename: str | None = None, content_length: int | None = None) -> BinaryIO:
            staged = staging_file(storage)
            if staged is not None:
                return staged
            return super()._get_file_stream(total_content_length, content_type, filename, content_length)

    return StagingRequest

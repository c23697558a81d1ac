"""Receiving the multipart body: read in large pieces, write the file part straight into storage.

The body is parsed with werkzeug's public ``MultiPartParser`` (no private method of werkzeug or
Flask is overridden), set against two costs of werkzeug's defaults, measured on a 113 MB upload
(docs/performance.md):

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
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import MultiPartParser, default_stream_factory
from werkzeug.http import parse_options_header
from werkzeug.wsgi import get_input_stream

from services.upload.screen import refuse_if_not_media
from shared.errors import RequestRejected
from shared.sniff import SNIFF_BYTES
from shared.storage import Storage

BODY_READ_BYTES = 256 * 1024
"""Size of each read from the request body while parsing multipart, bytes. werkzeug refuses (413)
a read that, with what its decoder holds, exceeds ``MAX_FORM_MEMORY_SIZE`` (Flask: 500 000).
gunicorn receives the body in pieces of the same size (``gunicorn.conf.py``: ``BODY_RECV_BYTES``),
so it holds nothing beyond a read to copy again."""


BODY_TAIL_BYTES = 4096
"""The last bytes of a body of known length, handed to the multipart parser on their own, bytes
(:class:`TailApart`). The closing delimiter, ``CRLF--boundary--CRLF``, is at most 78 bytes
(RFC 2046 §5.1.1: a boundary has at most 70 characters)."""


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


class TailApart:
    """A body stream of known ``length`` (bytes) read as asked, except that its last
    :data:`BODY_TAIL_BYTES` come in a read of their own.

    Once werkzeug's decoder sees a boundary in what it holds, it finds it with a regular
    expression run from the start of all it holds (``MultipartDecoder._parse_data``): about
    65 MB/s here, against GB/s for the plain search it runs first, so finding the closing
    boundary at the end of a full :data:`BODY_READ_BYTES` read cost up to 4 ms per upload.
    With the tail apart, the expression runs over the tail alone.
    """

    def __init__(self, stream: BinaryIO, length: int):
        self._stream = stream
        self._left = length

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes, never crossing into the tail from before it; empty at the end."""
        if self._left > BODY_TAIL_BYTES:
            size = min(size, self._left - BODY_TAIL_BYTES)
        data = self._stream.read(size)
        self._left -= len(data)
        return data


def content_digest(stream: object) -> str | None:
    """SHA-256 of an uploaded file part as it was received, or None if it was not hashed."""
    return stream.hexdigest() if isinstance(stream, HashingFile) else None


def received_head(stream: object) -> bytes | None:
    """The first bytes of an uploaded file part as it was received, or None if they were not kept."""
    return stream.head() if isinstance(stream, HashingFile) else None


def parse_upload(req: Request, storage: Storage, max_form_parts: int) -> tuple[MultiDict, MultiDict]:
    """The multipart body of ``req`` as ``(form, files)``, each file part written (and hashed, and
    its head judged) into ``storage``'s staging file, or a temp file where it has none. Only
    werkzeug's public API: its ``MultiPartParser``, given the read size and the stream factory.

    Raises:
        RequestRejected: not multipart, or malformed (400 ``missing_file``); a file part clearly
            not media (415 ``not_media``).
        RequestEntityTooLarge: more than ``max_form_parts`` parts, a field above the form memory
            limit, or a body above ``MAX_CONTENT_LENGTH`` (werkzeug's 413).
    """
    mimetype, options = parse_options_header(req.content_type)
    boundary = options.get("boundary", "").encode("ascii", "replace")
    if mimetype != "multipart/form-data" or not boundary:
        raise RequestRejected("Send the video as a multipart/form-data part named 'file'.", code="missing_file")

    def stream_factory(total_content_length, content_type, filename, content_length=None) -> HashingFile:
        staged = storage.staging_file()
        if staged is None:
            staged = default_stream_factory(total_content_length, content_type, filename, content_length)
        return HashingFile(staged)

    parser = MultiPartParser(
        stream_factory=stream_factory,
        max_form_memory_size=req.max_form_memory_size,
        max_form_parts=max_form_parts,
        buffer_size=BODY_READ_BYTES,
    )
    try:
        return parser.parse(body_stream(req), boundary, req.content_length)
    except ValueError:  # werkzeug's word for a body that is not the multipart it says it is
        raise RequestRejected(
            "The multipart body is malformed; send the video as a part named 'file'.", code="missing_file"
        ) from None


def body_stream(req: Request) -> BinaryIO:
    """The body of ``req`` to parse. With a ``Content-Length`` (at most ``MAX_CONTENT_LENGTH``),
    its last bytes apart (:class:`TailApart`) from the WSGI server's own stream when the server
    ends the body itself (``wsgi.input_terminated``, which gunicorn sets), through werkzeug's
    public :func:`~werkzeug.wsgi.get_input_stream`:
    ``req.stream`` would wrap it in a ``LimitedStream`` capping it at ``MAX_CONTENT_LENGTH``, which
    copies every byte twice more (into a ``bytearray``, then out of it) to guard a limit the
    length already met. Without a ``Content-Length`` (a chunked body) that cap is the guard, so
    the body is ``req.stream``.

    Raises:
        RequestEntityTooLarge: the ``Content-Length`` is above ``MAX_CONTENT_LENGTH`` (werkzeug's 413).
    """
    length = req.content_length
    if length is None:
        return req.stream
    if req.max_content_length is not None and length > req.max_content_length:
        raise RequestEntityTooLarge()
    return TailApart(get_input_stream(req.environ, max_content_length=None), length)

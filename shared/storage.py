"""Object storage behind one small interface, with two backends.

* :class:`LocalStorage` — a directory; the embedded default ``./scripts/up`` uses.
* :class:`S3Storage` — any S3-compatible endpoint through boto3 (AWS, MinIO, Ceph, moto).

Keys are ``/``-separated relative paths made by siphon itself (``shared.jobs``). boto3 and OS
errors stop here: callers see :class:`~shared.errors.StorageUnavailable` (try again later) or
:class:`~shared.errors.ObjectNotFound`.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from shared.config import Settings
from shared.errors import NotSupported, ObjectNotFound, StorageUnavailable

CHUNK_BYTES = 256 * 1024
"""Read size when streaming an object out, bytes."""

LINK_REFUSED = (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES)
"""``link(2)`` errors after which :meth:`LocalStorage.put_file` copies instead: another filesystem,
one without hard links (or forbidding them to this user), or a file with too many links."""

STAGING_DIR = ".staging"
"""Folder under the local backend's root for uploads being received (see ``staging_file``)."""


class Storage(Protocol):
    """What siphon needs of object storage. Sizes are bytes; ranges are inclusive-exclusive."""

    def put_stream(self, key: str, stream: BinaryIO) -> int:
        """Store everything ``stream`` yields under ``key``; return the bytes stored."""

    def put_file(self, key: str, path: Path) -> int:
        """Store the file at ``path`` under ``key``; return its size. The caller may delete ``path``
        afterwards but must not change it: a backend may take the file itself (a hard link)."""

    def put_bytes(self, key: str, data: bytes) -> None:
        """Store a small object (a job manifest)."""

    def get_bytes(self, key: str) -> bytes:
        """Read a small object whole."""

    def download(self, key: str, path: Path) -> int:
        """Copy the object to the local file ``path``; return its size."""

    def stream(self, key: str, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
        """Yield bytes ``[start, stop)`` of the object in chunks of at most :data:`CHUNK_BYTES`."""

    def size(self, key: str) -> int:
        """The object's size."""

    def delete_prefix(self, prefix: str) -> None:
        """Delete every object whose key starts with ``prefix``; absent keys are not an error."""

    def check(self) -> None:
        """Raise :class:`StorageUnavailable` unless the backend answers."""

    def keys(self, prefix: str) -> Iterator[str]:
        """Every key that starts with ``prefix``, in no particular order (for rebuilding indexes)."""

    def local_path(self, key: str) -> Path | None:
        """The object's own file when the backend keeps objects as local files (read it in place,
        never write it); None for a backend that does not, or a missing object."""

    def staging_file(self) -> BinaryIO | None:
        """A temp file that :meth:`put_stream` stores without copying (removed when closed), or
        None when the backend has no such thing (write uploads anywhere, then ``put_stream`` them)."""

    def presign_put(self, key: str, size_bytes: int, expires_seconds: int) -> str:
        """A URL a client can ``PUT`` exactly ``size_bytes`` bytes to (the length is signed), storing
        them as ``key``; valid for ``expires_seconds``. No request is made.

        Raises:
            NotSupported: the backend has no URL a client could reach (local storage).
        """

    # Optional capabilities (use the module functions, which fall back when a backend lacks them):
    #   local_path(key) -> Path | None      the object as a local file, to read in place
    #   staging_file() -> BinaryIO | None   a temp file that put_stream stores without a copy


def _safe_parts(key: str) -> list[str]:
    parts = key.split("/")
    if any(part in ("", ".", "..") or "\0" in part for part in parts):
        raise ValueError(f"invalid storage key {key!r}")
    return parts


class LocalStorage:
    """Objects as files under ``root``; writes go to a temp file then ``os.replace`` (atomic)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*_safe_parts(key.rstrip("/")))

    def _write(self, key: str, copy) -> int:
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
            try:
                with os.fdopen(fd, "wb") as out:
                    copy(out)
                    size = out.tell()
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise StorageUnavailable(f"local storage: {exc.strerror or exc}") from exc
        return size

    def put_stream(self, key: str, stream: BinaryIO) -> int:
        staged = self._staged_path(stream)
        if staged is not None:
            return self._link(key, staged, stream)
        return self._write(key, lambda out: shutil.copyfileobj(stream, out, CHUNK_BYTES))

    def staging_file(self) -> BinaryIO:
        """A new temp file under the root (removed when closed); :meth:`put_stream` of it, read
        from its start, hard-links it into place instead of copying it.

        Raises:
            StorageUnavailable: the staging folder cannot be made or written.
        """
        try:
            staging = self.root / STAGING_DIR
            staging.mkdir(parents=True, exist_ok=True)
            return tempfile.NamedTemporaryFile(dir=staging, prefix="upload-")
        except OSError as exc:
            raise StorageUnavailable(f"local storage: {exc.strerror or exc}") from exc

    def _staged_path(self, stream: BinaryIO) -> Path | None:
        """The path of ``stream`` if it is one of our staging files, still at its start."""
        name = getattr(stream, "name", None)
        if not isinstance(name, str) or Path(name).absolute().parent != (self.root / STAGING_DIR).absolute():
            return None
        return Path(name) if stream.tell() == 0 else None

    def _link(self, key: str, staged: Path, stream: BinaryIO) -> int:
        try:
            stream.flush()
            return self._link_file(key, staged)
        except OSError as exc:
            raise StorageUnavailable(f"local storage: {exc.strerror or exc}") from exc

    def local_path(self, key: str) -> Path | None:
        """The object's own file, for readers that can take a path (ffprobe, ffmpeg); None if absent."""
        path = self._path(key)
        return path if path.is_file() else None

    def put_file(self, key: str, path: Path) -> int:
        """Hard-link ``path`` into place (no copy: a video job's output is tens of MB); copy it
        when it is on another filesystem or the filesystem refuses links."""
        try:
            return self._link_file(key, path)
        except OSError as exc:
            if exc.errno not in LINK_REFUSED:
                raise StorageUnavailable(f"local storage: {exc.strerror or exc}") from exc

        def copy(out):
            with open(path, "rb") as src:
                shutil.copyfileobj(src, out, CHUNK_BYTES)

        return self._write(key, copy)

    def _link_file(self, key: str, path: Path) -> int:
        """Link ``path`` to a temp name beside ``key``'s file, then rename it over that file (atomic).

        Raises:
            OSError: the link failed (``errno`` in :data:`LINK_REFUSED`: use a copy instead).
        """
        target = self._path(key)
        tmp = target.with_name(f".part-{os.urandom(8).hex()}")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(path, tmp)
        try:
            size = os.stat(tmp).st_size
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return size

    def put_bytes(self, key: str, data: bytes) -> None:
        self._write(key, lambda out: out.write(data))

    def _open(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")
        except FileNotFoundError:
            raise ObjectNotFound(f"no object {key!r}") from None
        except OSError as exc:
            raise StorageUnavailable(f"local storage: {exc.strerror or exc}") from exc

    def get_bytes(self, key: str) -> bytes:
        with self._open(key) as src:
            return src.read()

    def download(self, key: str, path: Path) -> int:
        with self._open(key) as src:
            try:
                with open(path, "wb") as out:
                    shutil.copyfileobj(src, out, CHUNK_BYTES)
                    return out.tell()
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise  # the caller's disk, not storage: let the worker report disk_full
                raise StorageUnavailable(f"local storage: {exc.strerror or exc}") from exc

    def stream(self, key: str, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
        src = self._open(key)

        def chunks() -> Iterator[bytes]:
            with src:
                src.seek(start)
                remaining = None if stop is None else stop - start
                while remaining is None or remaining > 0:
                    chunk = src.read(CHUNK_BYTES if remaining is None else min(CHUNK_BYTES, remaining))
                    if not chunk:
                        return
                    if remaining is not None:
                        remaining -= len(chunk)
                    yield chunk

        return chunks()

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            raise ObjectNotFound(f"no object {key!r}") from None

    def delete_prefix(self, prefix: str) -> None:
        path = self._path(prefix)
        if prefix.endswith("/"):
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)

    def keys(self, prefix: str) -> Iterator[str]:
        folder, _, _ = prefix.rpartition("/")
        base = self._path(folder) if folder else self.root
        if not base.is_dir():
            return
        for path in base.rglob("*"):
            key = path.relative_to(self.root).as_posix()
            if path.is_file() and key.startswith(prefix) and not path.name.startswith(".part-"):
                yield key

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            if not os.access(self.root, os.W_OK):
                raise StorageUnavailable(f"local storage: {self.root} is not writable")
        except OSError as exc:
            raise StorageUnavailable(f"local storage: {exc.strerror or exc}") from exc

    def presign_put(self, key: str, size_bytes: int, expires_seconds: int) -> str:
        raise NotSupported(
            "Direct uploads need the S3 storage backend (STORAGE_BACKEND=s3); "
            "with local storage, send the file to POST /convert."
        )


TRANSFER_PART_BYTES = 8 * 1024 * 1024
"""Part size of S3 multipart uploads and ranged downloads, bytes (boto3's default)."""

TRANSFER_CONCURRENCY = 2
"""Parts of one S3 transfer in flight, and parts of a streamed upload read ahead, at once. Each holds
a part in memory, so this bounds what a transfer costs (boto3's defaults, 10 of each, made a 1 GB
upload add 113 MB to the upload service's RSS and its download 75 MB to the worker's)."""

TRANSFER_IO_QUEUE = 16
"""Downloaded chunks (256 KiB each) waiting to be written to disk, at most."""


class S3Storage:
    """Objects in one S3 bucket. Multipart uploads stream (boto3's transfer manager), in bounded memory."""

    def __init__(self, client, bucket: str, presigner=None):
        from boto3.s3.transfer import TransferConfig

        self.client = client
        self.bucket = bucket
        self.transfer = TransferConfig(
            multipart_chunksize=TRANSFER_PART_BYTES,
            max_concurrency=TRANSFER_CONCURRENCY,
            max_io_queue=TRANSFER_IO_QUEUE,
        )
        self.transfer.max_in_memory_upload_chunks = TRANSFER_CONCURRENCY  # s3transfer's, not in boto3's signature
        self.presigner = presigner or client  # signs upload URLs (SigV4, for the endpoint clients reach)

    @classmethod
    def from_settings(cls, s: Settings) -> S3Storage:
        import boto3
        from botocore.config import Config

        client = boto3.client(
            "s3",
            endpoint_url=s.s3_endpoint_url,
            region_name=s.s3_region,
            aws_access_key_id=s.aws_access_key_id,
            aws_secret_access_key=s.aws_secret_access_key,
            config=Config(
                connect_timeout=s.s3_timeout_seconds,
                read_timeout=s.s3_timeout_seconds,
                retries={"max_attempts": 2, "mode": "standard"},
                s3={"addressing_style": "path"},
            ),
        )
        # Signature V4 signs Content-Length (botocore presigns with V2 by default, which does not);
        # it also covers the host, so the URL names the endpoint clients reach.
        presigner = boto3.client(
            "s3",
            endpoint_url=s.s3_public_endpoint_url or s.s3_endpoint_url,
            region_name=s.s3_region,
            aws_access_key_id=s.aws_access_key_id,
            aws_secret_access_key=s.aws_secret_access_key,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )
        return cls(client, s.s3_bucket, presigner)

    def _call(self, what: str, fn, *args, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(*args, **kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise ObjectNotFound(f"no object {what!r}") from None
            raise StorageUnavailable(f"s3 {what}: {code or exc}") from exc
        except BotoCoreError as exc:
            raise StorageUnavailable(f"s3 {what}: {exc}") from exc

    def put_stream(self, key: str, stream: BinaryIO) -> int:
        counter = _CountingReader(stream)
        self._call(key, self.client.upload_fileobj, counter, self.bucket, key, Config=self.transfer)
        return counter.count

    def put_file(self, key: str, path: Path) -> int:
        self._call(key, self.client.upload_file, str(path), self.bucket, key, Config=self.transfer)
        return path.stat().st_size

    def put_bytes(self, key: str, data: bytes) -> None:
        self._call(key, self.client.put_object, Bucket=self.bucket, Key=key, Body=data)

    def get_bytes(self, key: str) -> bytes:
        body = self._call(key, self.client.get_object, Bucket=self.bucket, Key=key)["Body"]
        return self._call(key, body.read)

    def download(self, key: str, path: Path) -> int:
        self._call(key, self.client.download_file, self.bucket, key, str(path), Config=self.transfer)
        return path.stat().st_size

    def stream(self, key: str, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
        byte_range = f"bytes={start}-{'' if stop is None else stop - 1}"
        body = self._call(key, self.client.get_object, Bucket=self.bucket, Key=key, Range=byte_range)["Body"]
        return body.iter_chunks(CHUNK_BYTES)

    def size(self, key: str) -> int:
        return self._call(key, self.client.head_object, Bucket=self.bucket, Key=key)["ContentLength"]

    def delete_prefix(self, prefix: str) -> None:
        if not prefix.endswith("/"):
            self._call(prefix, self.client.delete_object, Bucket=self.bucket, Key=prefix)
            return
        listing = self._call(prefix, self.client.list_objects_v2, Bucket=self.bucket, Prefix=prefix)
        keys = [{"Key": obj["Key"]} for obj in listing.get("Contents", [])]
        if keys:
            self._call(prefix, self.client.delete_objects, Bucket=self.bucket, Delete={"Objects": keys})

    def keys(self, prefix: str) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        pages = self._call(prefix, lambda: list(paginator.paginate(Bucket=self.bucket, Prefix=prefix)))
        for page in pages:
            for obj in page.get("Contents", []):
                yield obj["Key"]

    def local_path(self, key: str) -> None:
        """None: an S3 object is no local file."""
        return None

    def staging_file(self) -> None:
        """None: an upload is streamed to S3 from wherever it was written."""
        return None

    def check(self) -> None:
        try:
            self._call(self.bucket, self.client.head_bucket, Bucket=self.bucket)
        except ObjectNotFound:  # HeadBucket says a missing bucket with a bare 404, like a missing key
            raise StorageUnavailable(f"s3: no bucket {self.bucket!r}") from None

    def presign_put(self, key: str, size_bytes: int, expires_seconds: int) -> str:
        params = {"Bucket": self.bucket, "Key": key, "ContentLength": size_bytes}
        return self._call(
            key, self.presigner.generate_presigned_url, "put_object", Params=params, ExpiresIn=expires_seconds
        )


class _CountingReader:
    """A read-only file wrapper that counts the bytes read through it."""

    def __init__(self, stream: BinaryIO):
        self.stream = stream
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.count += len(data)
        return data


def make_storage(s: Settings) -> Storage:
    """The backend ``STORAGE_BACKEND`` names, configured from ``s`` (no connection is made)."""
    if s.storage_backend == "s3":
        return S3Storage.from_settings(s)
    return LocalStorage(s.storage_dir)

"""Direct uploads: a large file goes from the client straight to S3 through a presigned PUT URL,
and its job is started by id, so the bytes never pass through the gateway or this service.

    POST /uploads {"size": <bytes>}
        → 201 {"upload_id", "upload_url", "method": "PUT", "headers": {"Content-Length"},
               "expires_in", "max_bytes"}
    PUT <upload_url>, exactly <size> bytes (the length is signed: S3 refuses another one)
    POST /convert {"upload_id", "filename"?, <options>...} → 202 {"job_id", "status", "message"}

The upload id is the job id to come: the URL writes ``jobs/<upload_id>/input``, and
``POST /convert`` creates the job there, so the job's files live together as for any other.
Its first 8 hex digits are the URL's expiry (Unix seconds), so siphon enforces it itself: a
``POST /convert`` after it is answered 410 ``upload_expired`` and the file is deleted, whatever the
store did with a late PUT (S3 and MinIO refuse it; moto takes it). A client cannot move that date:
the signed URL writes only under the id it was issued for. The next 8 are random, and the last 16
an HMAC-SHA256 tag of the first 16 and the owner's key name (keyed with a key derived from
``DOWNLOAD_LINK_SECRET``): only the key that asked for the upload, or an admin key, can start it;
any other key is answered 404 ``upload_not_found``, as for an id that was never given out.
Starting it again while its job is queued returns that job (a client may retry a lost answer);
later, or with other options, it is a 409. Only the S3 backend can hand out URLs; with
local storage ``POST /uploads`` answers 501 ``not_supported``.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from collections.abc import Callable, Iterable

from services.upload.intake import Intake, new_job
from services.upload.json_options import options_from_json
from shared.auth import OPEN, Principal
from shared.errors import JobNotFound, ObjectNotFound, RequestRejected
from shared.filenames import clean_filename
from shared.jobs import Job, JobStatus, input_key, is_valid_job_id
from shared.quotas import Quotas

START_FIELDS = ("upload_id", "filename")
"""Fields of a ``POST /convert`` JSON body that are not conversion options."""


UPLOAD_ID_LABEL = b"siphon.upload-id"
"""What the tag key is derived with from the secret, so no other HMAC of siphon's can pass for it."""


def new_upload_id(expires_at: float, owner: str | None = None, secret: bytes = b"") -> str:
    """A fresh upload id, shaped like a job id (32 hex digits): the expiry ``expires_at`` (Unix
    seconds, rounded up) in the first 8, 32 random bits, then the 64-bit tag binding it to ``owner``."""
    head = f"{math.ceil(expires_at):08x}{secrets.token_hex(4)}"
    return head + _owner_tag(head, owner, secret)


def upload_owner(upload_id: str, candidates: Iterable[str | None], secret: bytes = b"") -> str | None:
    """The first of ``candidates`` (key names; None: open mode) the id was issued to.

    Raises:
        LookupError: none of them.
    """
    for owner in candidates:
        if hmac.compare_digest(upload_id[16:], _owner_tag(upload_id[:16], owner, secret)):
            return owner
    raise LookupError(upload_id)


def upload_not_found() -> RequestRejected:
    """The 404 of an upload id with no file, or another key's: the two are answered alike."""
    return RequestRejected(
        "No file was uploaded for this upload_id (or not before its URL expired).", code="upload_not_found", status=404
    )


def _owner_tag(head: str, owner: str | None, secret: bytes) -> str:
    key = hmac.new(secret, UPLOAD_ID_LABEL, hashlib.sha256).digest()
    return hmac.new(key, f"{head}:{owner or ''}".encode(), hashlib.sha256).hexdigest()[:16]


def upload_expiry(upload_id: str) -> int:
    """When the URL of ``upload_id`` (a valid job id) expired or expires, Unix seconds."""
    return int(upload_id[:8], 16)


class DirectUploads:
    """Hands out presigned upload URLs and starts the jobs of finished uploads."""

    def __init__(
        self,
        intake: Intake,
        expiry_seconds: int,
        quotas: Quotas | None = None,
        secret: bytes = b"",
        key_names: Callable[[], Iterable[str]] = tuple,
    ):
        self.intake = intake
        self.expiry_seconds = expiry_seconds
        self.quotas = quotas
        self.secret = secret
        self.key_names = key_names

    def begin(self, body: dict, quota_subject: str | None = None, principal: Principal = OPEN) -> dict:
        """A fresh upload id of ``principal``'s and the URL to PUT the file to; ``size`` is charged to
        ``quota_subject``'s ``QUOTA_UPLOAD_BYTES_PER_DAY`` (when the gateway named one).

        Raises:
            RequestRejected: ``size`` missing or not a whole number above 0 (``invalid_size``), or
                above ``MAX_UPLOAD_BYTES`` (``file_too_large``); both 400, the request itself being
                small (413 would say the request is too large).
            RateLimited: the day's upload bytes of ``quota_subject`` are used up (429).
            NotSupported: the storage backend cannot presign (501).
        """
        size = body.get("size")
        if isinstance(size, float) and size.is_integer():  # JSON does not tell 5 from 5.0
            size = int(size)
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise RequestRejected(
                "Send the file's size in bytes as 'size', a whole number above 0.", code="invalid_size"
            )
        if size > self.intake.max_upload_bytes:
            raise RequestRejected(
                f"The file is larger than the {self.intake.max_upload_bytes}-byte limit.", code="file_too_large"
            )
        if self.quotas is not None and quota_subject is not None:
            self.quotas.charge("upload_bytes", quota_subject, size)
        upload_id = new_upload_id(time.time() + self.expiry_seconds, principal.name, self.secret)
        url = self.intake.storage.presign_put(input_key(upload_id), size, self.expiry_seconds)
        return {
            "upload_id": upload_id,
            "upload_url": url,
            "method": "PUT",
            "headers": {"Content-Length": str(size)},
            "expires_in": self.expiry_seconds,
            "max_bytes": self.intake.max_upload_bytes,
        }

    def start(self, body: dict, quota_subject: str | None = None, principal: Principal = OPEN) -> Job:
        """Queue the conversion of an uploaded file; return its job (the existing one if started
        before), owned by the key that asked for the upload and recording ``quota_subject`` as the
        caller whose unfinished jobs it counts in. Only that key, or an admin, may start it.

        Raises:
            RequestRejected: no ``upload_id`` (400 ``missing_file``, as a multipart body without a file
                part), a malformed one (400 ``invalid_upload_id``), no file uploaded
                under it (404 ``upload_not_found``), a start after the URL expired (410 ``upload_expired``;
                the file is then deleted), a bad option (400 ``invalid_option``), a stored
                file that is empty or too large (400 / 413; the file is then deleted), or a job that
                has left ``queued`` or has other options (409 ``upload_already_started``).
            Unavailable: storage, the metadata service or RabbitMQ is down (503); try again.
        """
        if "upload_id" not in body:
            raise RequestRejected(
                "Send the video as multipart/form-data with a part named 'file', or JSON with "
                "the 'upload_id' of a direct upload (POST /uploads).",
                code="missing_file",
            )
        upload_id = body["upload_id"]
        if not isinstance(upload_id, str) or not is_valid_job_id(upload_id):
            raise RequestRejected("'upload_id' must be the id POST /uploads answered with.", code="invalid_upload_id")
        owner = self._owner(upload_id, principal)
        try:
            size = self.intake.stored_size(input_key(upload_id))
        except ObjectNotFound:
            raise upload_not_found() from None
        except RequestRejected:
            self._discard(upload_id)
            raise
        if time.time() > upload_expiry(upload_id) and self._discard(upload_id):
            raise RequestRejected(
                "The upload URL expired before this upload was started; ask for a new one (POST /uploads).",
                code="upload_expired",
                status=410,
            )
        options = options_from_json({k: v for k, v in body.items() if k not in START_FIELDS}, self.intake.video_codecs)
        filename = body.get("filename")
        job = new_job(upload_id, clean_filename(filename if isinstance(filename, str) else None), size, options, owner)
        job = job.model_copy(update={"quota_subject": quota_subject})
        try:
            job = self.intake.queue_stored(job)
        except RequestRejected as exc:  # duplicate_job_id: started before, with other options
            raise RequestRejected(
                "This upload was started already, with other options.", code="upload_already_started", status=409
            ) from exc
        if job.status is not JobStatus.QUEUED:
            raise RequestRejected(
                f"This upload was started already; its job is {job.status.value} (GET /status/{job.job_id}).",
                code="upload_already_started",
                status=409,
            )
        return job

    def _owner(self, upload_id: str, principal: Principal) -> str | None:
        """Who asked for the upload: the caller, or (for an admin) any key's name.

        Raises:
            RequestRejected: not the caller's, nor an admin's to start (404 ``upload_not_found``).
        """
        candidates: list[str | None] = [principal.name]
        if principal.admin and principal is not OPEN:
            candidates += list(self.key_names())
        try:
            return upload_owner(upload_id, candidates, self.secret)
        except LookupError:
            raise upload_not_found() from None

    def _discard(self, upload_id: str) -> bool:
        """Delete a refused upload's file, unless a job already owns it; whether it was deleted."""
        try:
            self.intake.metadata.get_job(upload_id)
        except JobNotFound:
            self.intake.storage.delete_prefix(input_key(upload_id))
            return True
        return False

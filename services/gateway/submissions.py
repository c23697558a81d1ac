"""Submitting a video: ``POST /convert`` (multipart, streamed on to the upload service; or JSON
naming a direct upload) and ``POST /uploads`` (a presigned URL for a direct upload).

The gateway parses nothing of a multipart body: the upload service is the one place that does. It
only counts bytes, so an oversized body is cut off here with a 413 instead of travelling on.
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from services.gateway.bootstrap import parts
from services.gateway.quotas import quota_headers, rate_limit_headers
from services.gateway.upstream import forwarded_body, read_json_body
from shared.errors import RequestRejected
from shared.http import HTTP_CODES, error_response

submissions = Blueprint("submissions", __name__)


@submissions.post("/convert")
def convert():
    gateway = parts()
    if request.content_length is not None and request.content_length > gateway.body_limit:
        raise RequestRejected(
            f"The upload is larger than the {gateway.settings.max_upload_bytes}-byte limit.",
            code="file_too_large",
            status=413,
        )
    if request.mimetype == "application/json":  # a direct upload: the file is in storage already
        return upload_answer(gateway.upload.post_json("/convert", read_json_body(request.stream), upstream_headers()))
    if request.mimetype != "multipart/form-data":
        raise RequestRejected("Send the video as multipart/form-data with a part named 'file'.", code="missing_file")
    body = forwarded_body(request.stream, request.content_length, gateway.body_limit)
    return upload_answer(gateway.upload.forward(body, request.content_type, upstream_headers()))


@submissions.post("/uploads")
def begin_upload():
    return upload_answer(parts().upload.post_json("/uploads", read_json_body(request.stream), upstream_headers()))


def upload_answer(upstream) -> Response:
    """The upload service's JSON answer, passed on as it is; anything else becomes a JSON error."""
    if upstream.headers.get("Content-Type", "").startswith("application/json"):
        return Response(
            upstream.content,
            status=upstream.status_code,
            mimetype="application/json",
            headers=rate_limit_headers(upstream.headers),
        )
    return error_response(
        upstream.status_code,
        HTTP_CODES.get(upstream.status_code, "upload_error"),
        "The upload service could not take the file.",
    )


def authorization() -> dict[str, str]:
    """The caller's ``Authorization`` header, to pass on to the upload service (which names a
    job's owner from the key itself); empty when the request has none."""
    value = request.headers.get("Authorization")
    return {"Authorization": value} if value else {}


def upstream_headers() -> dict[str, str]:
    """The headers a submission carries to the upload service: the caller's ``Authorization`` and
    the gateway's quota subject (``quotas.py``)."""
    return {**authorization(), **quota_headers()}

"""Raw HTTP for API tests: multipart bodies written byte by byte (so file names keep their NULs,
``../`` and bidi overrides), and the checks every error answer must pass."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from urllib.parse import unquote

import requests

BOUNDARY = b"siphon-test-7f3a9c"
MULTIPART_CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY.decode()}"

TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
DISPOSITION_PARAM = re.compile(rf'\s*;\s*({TOKEN})\s*=\s*("(?:[^"\\]|\\.)*"|{TOKEN})')
EXT_VALUE = re.compile(r"^UTF-8''((?:[!#$&+.^_`|~0-9A-Za-z-]|%[0-9A-Fa-f]{2})*)$", re.IGNORECASE)


def file_part(content: bytes, filename: str | bytes, name: str = "file") -> bytes:
    """A multipart part holding a file; ``filename`` goes into the header exactly as given (UTF-8)."""
    raw_name = filename.encode() if isinstance(filename, str) else filename
    return (
        b'Content-Disposition: form-data; name="' + name.encode() + b'"; filename="' + raw_name + b'"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n" + content
    )


def field_part(name: str, value: str) -> bytes:
    """A plain multipart form field."""
    return f'Content-Disposition: form-data; name="{name}"\r\n\r\n{value}'.encode()


def multipart_body(parts: Iterable[bytes]) -> bytes:
    """``parts`` framed with :data:`BOUNDARY` (send with :data:`MULTIPART_CONTENT_TYPE`)."""
    framed = b"".join(b"--" + BOUNDARY + b"\r\n" + part + b"\r\n" for part in parts)
    return framed + b"--" + BOUNDARY + b"--\r\n"


def post_multipart(url: str, body: bytes | Iterator[bytes], timeout: float = 60) -> requests.Response:
    """POST a prepared multipart body; an iterator is sent with chunked transfer encoding."""
    return requests.post(url, data=body, headers={"Content-Type": MULTIPART_CONTENT_TYPE}, timeout=timeout)


def parse_content_disposition(header: str) -> tuple[str, dict[str, str]]:
    """A Content-Disposition value read strictly by RFC 6266's grammar: its type and parameters,
    with ``filename*`` decoded (RFC 8187, UTF-8) and kept apart from the plain ``filename``.

    Raises:
        AssertionError: the value does not follow the grammar.
    """
    kind, _, rest = header.partition(";")
    assert re.fullmatch(TOKEN, kind.strip()), header
    params, position, rest = {}, 0, ";" + rest if rest else ""
    for match in DISPOSITION_PARAM.finditer(rest):
        assert match.start() == position, f"unparsable at {rest[position:]!r}"
        name, value = match[1].lower(), match[2]
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        if name.endswith("*"):
            encoded = EXT_VALUE.match(value)
            assert encoded, f"{name} is not UTF-8'' percent-encoding: {value!r}"
            value = unquote(encoded[1], errors="strict")
        assert name not in params, f"{name} given twice"
        params[name], position = value, match.end()
    assert position == len(rest.rstrip()), f"unparsable at {rest[position:]!r}"
    return kind.strip().lower(), params


def assert_not_a_page(response: requests.Response) -> None:
    """No HTML and no Python traceback in the body."""
    text = response.text
    assert "<html" not in text.lower() and "<!doctype" not in text.lower(), text[:300]
    assert "Traceback" not in text and 'File "' not in text, text[:300]


def assert_json_error(response: requests.Response, status: int, code: str | None = None) -> dict:
    """The answer is ``status`` with exactly ``{"error": {"code", "message"}}``; return the inner object."""
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert_not_a_page(response)
    assert response.headers.get("Content-Type") == "application/json", response.headers.get("Content-Type")
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    error = body["error"]
    assert isinstance(error["code"], str) and error["code"], body
    assert isinstance(error["message"], str) and error["message"].strip(), body
    if code is not None:
        assert error["code"] == code, body
    return error

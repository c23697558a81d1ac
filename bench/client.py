"""A lean client of siphon's public API, so the numbers measure siphon rather than the client.

The upload is multipart written straight to the socket (``sendfile`` for the file part, so the
client neither reads the video into memory nor copies it); completion is awaited with the
long-poll ``GET /status/<id>?wait=<seconds>`` or, with ``poll_interval`` set, by plain polling.
"""

from __future__ import annotations

import http.client
import json
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

CHUNK_BYTES = 1024 * 1024
"""Read size of the MP3 download, bytes."""

TERMINAL = ("completed", "failed")


class BenchError(Exception):
    """The stack answered something a benchmark run cannot go on from."""


class JobFailed(BenchError):
    """A job ended ``failed`` (its status body is the message)."""


class ApiClient:
    """Talks to the gateway at ``base_url``.

    Args:
        fields: form fields sent with every upload (conversion options, e.g. ``cover=none``).
        wait_seconds: the long-poll's ``wait`` parameter, seconds.
        poll_interval: if above 0, poll ``/status`` this often (seconds) instead of long-polling.
    """

    def __init__(
        self,
        base_url: str,
        wait_seconds: float = 30.0,
        poll_interval: float = 0.0,
        fields: dict[str, str] | None = None,
    ):
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname, parts.port
        self.wait_seconds = wait_seconds
        self.poll_interval = poll_interval
        self.fields = fields or {}

    def connection(self, timeout: float = 900) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout, blocksize=CHUNK_BYTES)

    def submit(self, path: Path) -> str:
        """POST ``path`` to /convert as the ``file`` part (after the ``fields``); return the job id."""
        boundary = uuid.uuid4().hex
        options = "".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
            for name, value in self.fields.items()
        )
        head = (
            f'{options}--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
            f"Content-Type: video/mp4\r\n\r\n"
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        conn = self.connection()
        try:
            conn.putrequest("POST", "/convert")
            conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
            conn.putheader("Content-Length", str(len(head) + path.stat().st_size + len(tail)))
            conn.endheaders()
            conn.sock.sendall(head)
            with open(path, "rb") as f:
                conn.sock.sendfile(f)
            conn.sock.sendall(tail)
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        if response.status != 202:
            raise BenchError(f"POST /convert answered {response.status}: {body[:300]!r}")
        return json.loads(body)["job_id"]

    def wait(self, job_id: str, timeout: float = 900) -> dict:
        """The job's status body once it is completed or failed."""
        deadline = time.monotonic() + timeout
        query = f"?wait={self.wait_seconds:g}" if self.poll_interval <= 0 else ""
        conn = self.connection()
        try:
            while True:
                conn.request("GET", f"/status/{job_id}{query}")
                body = json.loads(conn.getresponse().read())
                if body["status"] in TERMINAL:
                    return body
                if time.monotonic() > deadline:
                    raise BenchError(f"job {job_id} still {body['status']} after {timeout} s")
                if self.poll_interval > 0:
                    time.sleep(self.poll_interval)
        finally:
            conn.close()

    def status(self, job_id: str) -> dict:
        """The job's status body now."""
        conn = self.connection()
        try:
            conn.request("GET", f"/status/{job_id}")
            return json.loads(conn.getresponse().read())
        finally:
            conn.close()

    def cancel(self, job_id: str) -> None:
        """``DELETE /jobs/<id>``; a job already finished (409) is left as it is."""
        conn = self.connection()
        try:
            conn.request("DELETE", f"/jobs/{job_id}")
            conn.getresponse().read()
        finally:
            conn.close()

    def download(self, job_id: str, target: Path, extension: str = "mp3") -> int:
        """Save the job's output (``/download/<job_id>.<extension>``) to ``target``; return its size in bytes."""
        conn = self.connection()
        try:
            conn.request("GET", f"/download/{job_id}.{extension}")
            response = conn.getresponse()
            if response.status != 200:
                raise BenchError(f"GET /download answered {response.status}: {response.read(300)!r}")
            with open(target, "wb") as out:
                while chunk := response.read(CHUNK_BYTES):
                    out.write(chunk)
                return out.tell()
        finally:
            conn.close()

    def convert(self, source: Path, target: Path) -> float:
        """One whole job: POST, wait, download to ``target`` (its suffix is the job's format:
        ``.mp3``, ``.mp4``); return the wall time in seconds.

        Raises:
            JobFailed: the job failed.
            BenchError: the output cache answered it (the benchmark would measure a cache hit).
        """
        started = time.perf_counter()
        job_id = self.submit(source)
        body = self.wait(job_id)
        if body["status"] != "completed":
            raise JobFailed(f"job {job_id} failed: {body}")
        if body.get("cached"):
            raise BenchError(f"job {job_id} was answered from the output cache; every job needs a distinct input")
        self.download(job_id, target, target.suffix.lstrip(".") or "mp3")
        return time.perf_counter() - started

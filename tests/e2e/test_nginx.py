"""The shipped nginx config (``deploy/nginx/siphon.conf``) in front of two gateways, run by Debian's
nginx on loopback: its ``server`` block as shipped, only its upstream servers and listen address
moved to this stack's ports, and nginx's files (pid, logs, temp dirs) under the test's tmp dir.

A video converts through it, uploaded whole or chunked; nginx's body-size limit and the gateway's
answer with JSON; uploads that trickle in wait in nginx (request buffering on) and hold no gateway
connection, so more of them than the gateways take connections stop nobody; with one gateway killed
every request still succeeds through the other, and with both gone nginx answers 503 in JSON.
"""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.net import free_port, wait_until
from tests.support.stack import ROOT, Stack

pytestmark = pytest.mark.e2e

SHIPPED_CONFIG = ROOT / "deploy" / "nginx" / "siphon.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
VIDEO = "ordinary_h264_aac_stereo_48k_8s.mp4"
STACK_UPLOAD_LIMIT_BYTES = 4 * 1024 * 1024
"""The stack's MAX_UPLOAD_BYTES: above every file sent here, far below the shipped nginx limit (2 GiB)."""
GATEWAY_CONNECTIONS = 4
"""WEB_CONNECTIONS of the stack (one gevent process each): the two gateways hold 8 connections at a time."""
SLOW_UPLOADS = 3 * GATEWAY_CONNECTIONS
"""More trickling uploads than the two gateways take connections."""

MAIN_CONFIG = """\
daemon off;
master_process off;  # one process, as the invoking user: no privilege drop, nothing outside {tmp}
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {tmp}/siphon.conf;
}}
"""


def site_config(shipped: str, gateway_ports: list[int], listen_port: int) -> str:
    """The shipped config with each upstream ``server host:port`` replaced, in order, by a loopback
    gateway port (its options kept), and ``listen 80`` by a loopback port."""
    ports = iter(gateway_ports)
    site, servers = re.subn(r"(?m)^(\s*server )[\w.-]+:\d+", lambda m: f"{m.group(1)}127.0.0.1:{next(ports)}", shipped)
    assert servers == len(gateway_ports), f"the shipped upstream has {servers} servers, not {len(gateway_ports)}"
    site, listens = re.subn(r"(?m)^(\s*listen )80;", rf"\g<1>127.0.0.1:{listen_port};", site)
    assert listens == 1, "the shipped server block does not listen on 80"
    return site


def accepts(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def stack(module_stack) -> Stack:
    stack = module_stack(
        workers=1, MAX_UPLOAD_BYTES=str(STACK_UPLOAD_LIMIT_BYTES), WEB_CONNECTIONS=str(GATEWAY_CONNECTIONS)
    )
    stack.start_gateway("gateway-2")
    return stack


@pytest.fixture(scope="module")
def nginx(stack, tmp_path_factory) -> Iterator[str]:
    """nginx on loopback in front of the stack's two gateways; yields its base URL."""
    if not Path(NGINX).exists():
        pytest.fail(f"{NGINX} is missing: Debian's nginx package (scripts/lib.sh installs it)")
    tmp = tmp_path_factory.mktemp("nginx")
    port = free_port()
    (tmp / "siphon.conf").write_text(
        site_config(SHIPPED_CONFIG.read_text(), [stack.ports["gateway"], stack.ports["gateway-2"]], port)
    )
    (tmp / "nginx.conf").write_text(MAIN_CONFIG.format(tmp=tmp))
    argv = [NGINX, "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(tmp / "nginx.conf")]
    checked = subprocess.run([*argv, "-t"], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        wait_until(lambda: accepts(port) or process.poll() is not None, 10, 0.05, "nginx to listen")
        assert process.poll() is None, (tmp / "error.log").read_text()
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGQUIT)  # graceful: finish what is in flight
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def convert_through(nginx: str, path: Path, chunked: bool = False) -> str:
    """POST ``path`` to /convert through nginx (as one body, or chunked from a generator); the job id."""
    if chunked:
        boundary = "siphon-nginx-test"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        data = path.read_bytes()
        chunks = (data[i : i + 64 * 1024] for i in range(0, len(data), 64 * 1024))
        parts = [head, *chunks, f"\r\n--{boundary}--\r\n".encode()]
        response = requests.post(
            f"{nginx}/convert",
            data=iter(parts),
            timeout=60,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
    else:
        with path.open("rb") as f:
            response = requests.post(f"{nginx}/convert", files={"file": (path.name, f)}, timeout=60)
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def wait_through(nginx: str, job_id: str, timeout: float = 60) -> dict:
    def finished():
        body = requests.get(f"{nginx}/status/{job_id}", timeout=10).json()
        return body if body["status"] in ("completed", "failed") else None

    return wait_until(finished, timeout, 0.1, f"job {job_id} through nginx")


def raw_answer(nginx: str, head: str, timeout: float = 10) -> tuple[int, bytes]:
    """Send only a request ``head`` (no body) and read the answer: ``(status, body)``. Stops at the
    answer's end, not at the connection's: nginx lingers on a connection whose body never came."""
    host, port = nginx.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(head.encode())
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < _content_length(answer):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    header, _, body = answer.partition(b"\r\n\r\n")
    return int(header.split(b" ", 2)[1]), body


def _content_length(answer: bytes) -> int:
    found = re.search(rb"(?im)^content-length:\s*(\d+)", answer.partition(b"\r\n\r\n")[0])
    return int(found.group(1)) if found else 0


def upload_head(nginx: str, content_length: int) -> str:
    return (
        f"POST /convert HTTP/1.1\r\nHost: {nginx.removeprefix('http://')}\r\n"
        "Content-Type: multipart/form-data; boundary=x\r\n"
        f"Content-Length: {content_length}\r\nConnection: close\r\n\r\n"
    )


# --- the tests, in order: the last one kills the gateways -----------------------------------------
def test_a_video_converts_through_nginx(nginx, media_dir):
    job_id = convert_through(nginx, media_dir / VIDEO)
    final = wait_through(nginx, job_id)
    assert final["status"] == "completed", final
    assert final["download_url"] == f"{nginx}/download/{job_id}.mp3", "the gateway sees nginx's Host"
    mp3 = requests.get(final["download_url"], timeout=60)
    assert mp3.status_code == 200 and mp3.headers["Content-Type"] == "audio/mpeg"
    assert mp3.content[:3] == b"ID3" or mp3.content[0] == 0xFF
    part = requests.get(final["download_url"], headers={"Range": "bytes=0-99"}, timeout=60)
    assert part.status_code == 206 and part.content == mp3.content[:100]


def test_a_chunked_upload_streams_through(nginx, stack, media_dir):
    job_id = convert_through(nginx, media_dir / VIDEO, chunked=True)
    assert wait_through(nginx, job_id)["status"] == "completed"
    assert stack.job_record(job_id)["input_size"] == (media_dir / VIDEO).stat().st_size


def test_a_body_over_nginxs_limit_is_refused_by_nginx_with_json(nginx):
    status, body = raw_answer(nginx, upload_head(nginx, 3 * 1024**3))  # the shipped limit is 2049m
    assert status == 413
    assert b'"code": "file_too_large"' in body and b"the proxy allows" in body, body


def test_a_body_over_the_gateways_limit_is_refused_by_the_gateway_with_json(nginx):
    # Over the stack's MAX_UPLOAD_BYTES, under nginx's limit: nginx takes it, the gateway refuses it.
    body = b"--x\r\n" + b"\0" * (STACK_UPLOAD_LIMIT_BYTES + 1024 * 1024)
    response = requests.post(
        f"{nginx}/convert", data=body, timeout=60, headers={"Content-Type": "multipart/form-data; boundary=x"}
    )
    assert response.status_code == 413 and response.json()["error"]["code"] == "file_too_large"
    assert f"{STACK_UPLOAD_LIMIT_BYTES}-byte limit" in response.json()["error"]["message"]


def test_slow_uploads_wait_in_nginx_and_hold_no_gateway_connection(nginx, media_dir):
    host, port = nginx.removeprefix("http://").split(":")
    slow = [socket.create_connection((host, int(port)), timeout=10) for _ in range(SLOW_UPLOADS)]
    try:
        for sock in slow:  # the head and the first bytes of a 100 KB body that never comes (within the test)
            sock.sendall(upload_head(nginx, 100_000).encode() + b"--x\r\n")
        time.sleep(0.5)  # nginx has read them all; unbuffered, it would have handed each to a gateway
        started = time.monotonic()
        assert requests.get(f"{nginx}/healthz", timeout=5).status_code == 200
        assert wait_through(nginx, convert_through(nginx, media_dir / VIDEO))["status"] == "completed"
        assert time.monotonic() - started < 10
    finally:
        for sock in slow:
            sock.close()


def test_metrics_are_not_served_to_the_public(nginx):
    response = requests.get(f"{nginx}/metrics", timeout=10)
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_with_one_gateway_killed_every_request_succeeds_through_the_other(nginx, stack, media_dir):
    done = convert_through(nginx, media_dir / VIDEO)
    wait_through(nginx, done)
    stack.signal("gateway", signal.SIGKILL)
    stack.processes["gateway"].wait(10)
    for _ in range(6):  # both upstreams in turn: the dead one is skipped
        assert requests.get(f"{nginx}/status/{done}", timeout=10).json()["status"] == "completed"
    assert wait_through(nginx, convert_through(nginx, media_dir / VIDEO))["status"] == "completed"

    stack.signal("gateway-2", signal.SIGKILL)
    stack.processes["gateway-2"].wait(10)
    response = requests.get(f"{nginx}/status/{done}", timeout=10)
    assert response.status_code == 503 and response.json()["error"]["code"] == "service_unavailable"
